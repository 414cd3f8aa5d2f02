// deploy/compose/haproxy.cfg in front of real brokers: the shipped file, with only what Docker
// provides rewritten (service names → 127.0.0.1 and free ports, the listen ports). Checks that the
// balancer spreads MQTT and WebSocket clients over the ready nodes, and that a draining node
// (SIGTERM with --drain-ms: /healthz 503) leaves the rotation, so new clients land on the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { connect } from 'topicast';
import { freePort, startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const missing = spawnSync('haproxy', ['-v']).error ? 'haproxy is not installed (Debian package haproxy)' : undefined;
if (missing && process.env.CI) throw new Error(`${missing}; required in CI`);
if (missing) console.log(`# skipping the balancer test: ${missing}`);

/** The shipped config with Docker's names and ports replaced by this test's. */
function localConfig(httpPort: number, mqttPort: number, nodes: BrokerProcess[]): string {
  let cfg = readFileSync(join(ROOT, 'deploy/compose/haproxy.cfg'), 'utf8');
  // compose raises the balancer's open-file limit (ulimits) for 200,000 connections; a test process cannot.
  cfg = cfg.replace(/^(\s*maxconn) \d+$/m, '$1 1000');
  cfg = cfg.replace(/^(\s*bind) :8080$/m, `$1 127.0.0.1:${httpPort}`).replace(/^(\s*bind) :1883$/m, `$1 127.0.0.1:${mqttPort}`);
  nodes.forEach((n, i) => {
    const name = `topicast-${i + 1}`;
    cfg = cfg.replace(new RegExp(`^(\\s*server ${name}) ${name}:8080$`, 'm'), `$1 127.0.0.1:${n.port}`);
    // The MQTT backend checks the same node's HTTP port (`check port 8080` in compose): here each node has its own.
    cfg = cfg.replace(new RegExp(`^(\\s*server ${name}) ${name}:1883$`, 'm'), `$1 127.0.0.1:${n.mqttPort} port ${n.port}`);
  });
  assert.doesNotMatch(cfg, /topicast-\d:\d+/, 'every server line was mapped to a local node');
  return cfg;
}

function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

async function connections(n: BrokerProcess): Promise<number> {
  const r = await fetch(`${n.httpUrl}/healthz`);
  return ((await r.json()) as { connections: number }).connections;
}

test('the compose balancer spreads clients over ready nodes and takes a draining node out of rotation', { skip: missing !== undefined, timeout: 60_000 }, async (t) => {
  const nodes = await Promise.all([1, 2, 3].map(() => startBroker({ args: ['--drain-ms', '8000'] })));
  const [httpPort, mqttPort] = await Promise.all([freePort(), freePort()]);
  const dir = mkdtempSync(join(tmpdir(), 'topicast-haproxy-'));
  const cfgFile = join(dir, 'haproxy.cfg');
  writeFileSync(cfgFile, localConfig(httpPort, mqttPort, nodes));
  const logs: string[] = [];
  const lb = spawn('haproxy', ['-db', '-f', cfgFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  lb.stdout.on('data', (b: Buffer) => logs.push(b.toString()));
  lb.stderr.on('data', (b: Buffer) => logs.push(b.toString()));
  process.once('exit', () => lb.kill('SIGKILL')); // also when the runner's timeout ends the file
  const clients: { end(): void }[] = [];
  t.after(async () => {
    for (const c of clients) c.end();
    if (lb.exitCode === null) {
      lb.kill('SIGTERM');
      await new Promise((r) => lb.once('exit', r));
    }
    rmSync(dir, { recursive: true, force: true });
  });
  // Servers start "up" and are checked every 2 s; wait until the balancer answers on both ports.
  await waitFor(async () => {
    if (lb.exitCode !== null) throw new Error(`haproxy exited: ${logs.join('')}`);
    return fetch(`http://127.0.0.1:${httpPort}/healthz`).then((r) => r.ok, () => false);
  }, 'haproxy forwarding /healthz', 10_000);

  // Bounded: a connection the balancer forwards to a dead node is closed before CONNACK, and
  // mqtt.js without reconnect then neither connects nor fails.
  const mqttClient = async (): Promise<void> => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { reconnectPeriod: 0, connectTimeout: 5000 });
    clients.push({ end: () => c.end(true) });
    await within(new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
      c.once('close', () => reject(new Error('closed before CONNACK')));
    }), 'an MQTT client through the balancer');
  };
  const wsClient = async (): Promise<void> => {
    const c = await within(connect(`ws://127.0.0.1:${httpPort}/ws`, { reconnect: false }), 'an SDK client through the balancer');
    clients.push({ end: () => void c.close() });
  };
  for (let i = 0; i < 3; i++) await mqttClient();
  for (let i = 0; i < 3; i++) await wsClient();
  const spread = await Promise.all(nodes.map(connections));
  assert.equal(spread.reduce((a, b) => a + b, 0), 6);
  assert.ok(spread.every((n) => n >= 1), `least connections reaches every node: ${spread.join(', ')}`);

  // Node 1 drains (SIGTERM with --drain-ms): /healthz 503, so the balancer takes it out after two checks.
  nodes[0]!.kill('SIGTERM');
  await waitFor(async () => (await fetch(`${nodes[0]!.httpUrl}/healthz`).then((r) => r.status, () => 0)) !== 200, 'node 1 to report draining');
  await new Promise((r) => setTimeout(r, 5000)); // fall 2 × inter 2 s, plus a check in flight
  const before = (await Promise.all(nodes.slice(1).map(connections))).reduce((a, b) => a + b, 0);
  for (let i = 0; i < 3; i++) await mqttClient();
  for (let i = 0; i < 3; i++) await wsClient();
  const after = (await Promise.all(nodes.slice(1).map(connections))).reduce((a, b) => a + b, 0);
  assert.equal(after - before, 6, 'every new client landed on a node that is not draining');
});
