// deploy/compose replayed without Docker: the three NATS servers run the shipped nats.conf, the
// three Topicast nodes the shipped environment, HAProxy the shipped haproxy.cfg. Only what Docker
// provides is rewritten: service names become 127.0.0.1 with free ports, /data a temp dir, and the
// balancer's connection limit (compose raises its open-file limit; a test process cannot).
// Checks: the JetStream cluster forms and every node is ready with the bus up; clients through the
// balancer reach every node; a message published on one node reaches subscribers on all of them;
// a retained value reaches a late joiner elsewhere; a draining node (SIGTERM, TOPICAST_DRAIN_MS)
// leaves the rotation, so new clients land on the others.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { parse } from 'yaml';
import { connect } from 'topicast';
import { freePort, startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';
import { requireNatsServer } from '../helpers/nats.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const COMPOSE = join(ROOT, 'deploy/compose');
const haveNats = requireNatsServer();
const noHaproxy = spawnSync('haproxy', ['-v']).error ? 'haproxy is not installed (Debian package haproxy)' : undefined;
if (noHaproxy && process.env.CI) throw new Error(`${noHaproxy}; required in CI`);
if (noHaproxy) console.log(`# skipping the compose replay: ${noHaproxy}`);

type Obj = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any -- parsed YAML
const compose = parse(readFileSync(join(COMPOSE, 'compose.yaml'), 'utf8'), { merge: true }) as Obj;
const services = compose.services as Record<string, Obj>;
const natsNames = Object.keys(services).filter((n) => String(services[n]!.image).startsWith('nats:'));
const nodeNames = Object.keys(services).filter((n) => services[n]!.environment?.TOPICAST_BUS !== undefined);

const dir = mkdtempSync(join(tmpdir(), 'topicast-compose-'));
const children: ChildProcess[] = [];
test.after(async () => {
  await Promise.all(children.map((p) => new Promise<void>((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  })));
  rmSync(dir, { recursive: true, force: true });
});

/** Spawns `cmd` and resolves once `ready` matches its output (at once without it); killed at the end of the file. */
async function daemon(cmd: string, args: string[], env: NodeJS.ProcessEnv, ready: RegExp | undefined, what: string): Promise<void> {
  const logs: string[] = [];
  const p = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(p);
  process.once('exit', () => p.kill('SIGKILL')); // also when the runner's timeout ends the file
  p.stdout.on('data', (b: Buffer) => logs.push(b.toString()));
  p.stderr.on('data', (b: Buffer) => logs.push(b.toString()));
  await waitFor(() => {
    if (p.exitCode !== null) throw new Error(`${what} exited: ${logs.join('')}`);
    return ready === undefined || ready.test(logs.join(''));
  }, what, 15_000);
}

function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

async function health(n: BrokerProcess): Promise<{ code: number; bus?: string; connections: number }> {
  const r = await fetch(`${n.httpUrl}/healthz`);
  return { code: r.status, ...((await r.json()) as { bus?: string; connections: number }) };
}

test('compose replayed: 3 NATS servers, 3 nodes and the balancer, as shipped', { skip: !haveNats || noHaproxy !== undefined, timeout: 120_000 }, async (t) => {
  // NATS: each server's ports, then the shipped config with Docker's names and ports mapped.
  const ports = new Map<string, { client: number; cluster: number; http: number; leaf: number }>();
  for (const n of natsNames) ports.set(n, { client: await freePort(), cluster: await freePort(), http: await freePort(), leaf: await freePort() });
  const conf = readFileSync(join(COMPOSE, 'nats.conf'), 'utf8');
  await Promise.all(natsNames.map(async (name) => {
    const p = ports.get(name)!;
    let text = conf
      .replace(/^listen: 0\.0\.0\.0:4222$/m, `listen: 127.0.0.1:${p.client}`)
      .replace(/^http: 0\.0\.0\.0:8222$/m, `http: 127.0.0.1:${p.http}`)
      .replace(/^(\s*)listen: 0\.0\.0\.0:6222$/m, `$1listen: 127.0.0.1:${p.cluster}`)
      .replace(/^(\s*)listen: 0\.0\.0\.0:7422$/m, `$1listen: 127.0.0.1:${p.leaf}`)
      .replace(/store_dir: \/data/, `store_dir: "${join(dir, name)}"`);
    for (const [peer, pp] of ports) text = text.replace(`nats://${peer}:6222`, `nats://127.0.0.1:${pp.cluster}`);
    assert.doesNotMatch(text, /0\.0\.0\.0|nats-\d:|\/data\b/, `${name}: every Docker name and port was mapped`);
    const file = join(dir, `${name}.conf`);
    writeFileSync(file, text);
    await daemon('nats-server', ['-c', file], services[name]!.environment, /Server is ready/, `nats-server ${name}`);
  }));

  // Topicast nodes: the shipped environment, the bus pointed at the mapped servers.
  const nodes = await Promise.all(nodeNames.map(async (name) => {
    const env: Record<string, string> = Object.fromEntries(Object.entries(services[name]!.environment as Obj).map(([k, v]) => [k, String(v)]));
    for (const [peer, pp] of ports) env.TOPICAST_BUS = env.TOPICAST_BUS!.replace(`nats://${peer}:4222`, `nats://127.0.0.1:${pp.client}`);
    assert.doesNotMatch(env.TOPICAST_BUS!, /nats-\d/);
    mkdirSync(join(dir, name));
    env.TOPICAST_DATA = join(dir, name); // the volume
    return startBroker({ env, timeoutMs: 30_000 });
  }));
  let states: unknown[] = [];
  await waitFor(async () => {
    states = await Promise.all(nodes.map(health));
    return states.every((h) => (h as { code: number }).code === 200 && (h as { bus?: string }).bus === 'up');
  }, 'every node ready with the bus up (JetStream cluster formed)', 30_000).catch((err: Error) => {
    throw new Error(`${err.message}: ${JSON.stringify(states)}\n${nodes.map((n) => n.logs.filter((l) => l.includes('"level":4') || l.includes('"level":5')).slice(-4).join('\n')).join('\n--\n')}`);
  });

  // The balancer: the shipped config, servers mapped to the local nodes.
  const [lbHttp, lbMqtt] = [await freePort(), await freePort()];
  let cfg = readFileSync(join(COMPOSE, 'haproxy.cfg'), 'utf8')
    .replace(/^(\s*maxconn) \d+$/m, '$1 1000')
    .replace(/^(\s*bind) :8080$/m, `$1 127.0.0.1:${lbHttp}`)
    .replace(/^(\s*bind) :1883$/m, `$1 127.0.0.1:${lbMqtt}`);
  nodeNames.forEach((name, i) => {
    const n = nodes[i]!;
    cfg = cfg.replace(new RegExp(`^(\\s*server ${name}) ${name}:8080$`, 'm'), `$1 127.0.0.1:${n.port}`);
    // The MQTT backend checks the same node's HTTP port (`check port 8080`): here each node has its own.
    cfg = cfg.replace(new RegExp(`^(\\s*server ${name}) ${name}:1883$`, 'm'), `$1 127.0.0.1:${n.mqttPort} port ${n.port}`);
  });
  assert.doesNotMatch(cfg, /topicast-\d:\d+/, 'every server line was mapped to a local node');
  writeFileSync(join(dir, 'haproxy.cfg'), cfg);
  await daemon('haproxy', ['-db', '-f', join(dir, 'haproxy.cfg')], {}, undefined, 'haproxy'); // no ready line: polled below
  await waitFor(() => fetch(`http://127.0.0.1:${lbHttp}/healthz`).then((r) => r.ok, () => false), 'haproxy forwarding /healthz', 10_000);

  const ends: (() => void)[] = [];
  t.after(() => ends.forEach((e) => e()));
  // Bounded: a connection forwarded to a node that is gone closes before CONNACK, and mqtt.js
  // without reconnect then neither connects nor fails.
  const device = async (): Promise<mqtt.MqttClient> => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${lbMqtt}`, { reconnectPeriod: 0, connectTimeout: 5000 });
    ends.push(() => c.end(true));
    await within(new Promise<void>((resolve, reject) => {
      c.once('connect', () => resolve());
      c.once('error', reject);
      c.once('close', () => reject(new Error('closed before CONNACK')));
    }), 'an MQTT client through the balancer');
    return c;
  };
  const app = async (): Promise<Awaited<ReturnType<typeof connect>>> => {
    const c = await within(connect(`ws://127.0.0.1:${lbHttp}/ws`, { reconnect: false, codec: 'text' }), 'an SDK client through the balancer');
    ends.push(() => void c.close());
    return c;
  };

  // Least connections spreads 6 clients over the 3 nodes; the apps subscribe, one device publishes.
  const apps = [await app(), await app(), await app()];
  const devices = [await device(), await device(), await device()];
  const spread = (await Promise.all(nodes.map(health))).map((h) => h.connections);
  assert.ok(spread.every((n) => n === 2), `two clients on each node: ${spread.join(', ')}`);
  const got: Promise<string>[] = [];
  for (const a of apps) {
    let seen!: (s: string) => void;
    got.push(new Promise((resolve) => (seen = resolve)));
    await a.subscribe('devices/+/temp', (v, meta) => seen(`${meta.topic}=${String(v)}`));
  }
  await devices[0]!.publishAsync('devices/pi-01/temp', '21.5', { qos: 1 });
  assert.deepEqual(await within(Promise.all(got), 'the publish on every node'), ['devices/pi-01/temp=21.5', 'devices/pi-01/temp=21.5', 'devices/pi-01/temp=21.5']);

  // A retained value is in the replicated stream: a late joiner anywhere gets it.
  await devices[1]!.publishAsync('devices/pi-01/status', 'online', { qos: 1, retain: true });
  const late = await app();
  let seenStatus!: (s: string) => void;
  const status = new Promise<string>((resolve) => (seenStatus = resolve));
  await late.subscribe('devices/+/status', (v, meta) => seenStatus(`${String(v)}${meta.retained ? ' (retained)' : ''}`));
  assert.equal(await within(status, 'the retained status'), 'online (retained)');

  // Node 1 drains (docker compose stop: SIGTERM): /healthz 503, the balancer takes it out after two checks.
  nodes[0]!.kill('SIGTERM');
  await waitFor(async () => (await health(nodes[0]!).catch(() => ({ code: 0 }))).code !== 200, 'node 1 to report draining');
  await new Promise((r) => setTimeout(r, 5000)); // fall 2 × inter 2 s, plus a check in flight
  const before = (await Promise.all(nodes.slice(1).map(health))).reduce((s, h) => s + h.connections, 0);
  for (let i = 0; i < 3; i++) await device();
  for (let i = 0; i < 3; i++) await app();
  // Each connect above would have failed on node 1 (its MQTT listener is closed, its /ws answers 503).
  const after = (await Promise.all(nodes.slice(1).map(health))).reduce((s, h) => s + h.connections, 0);
  assert.ok(after - before >= 6, `every new client landed on a node that is not draining (${before} → ${after})`);
});
