// The several-workers-per-machine layout of docs/SCALING.md: a worker joins the bus through a local
// NATS leaf node (`default_js_domain: { $G: topicast }`), the other directly through the cluster's
// server (JetStream domain `topicast`, leaf nodes on a listen port, as in deploy/'s NATS configs).
// Both must be ready (/healthz: bus up, which needs JetStream through the leaf), exchange live
// messages both ways, and a retained value written behind the leaf must reach a late joiner on
// the other side. Without default_js_domain the leaf refuses JetStream requests (the test shows it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { freePort, startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';
import { requireNatsServer } from '../helpers/nats.js';

const run = requireNatsServer();
const dir = mkdtempSync(join(tmpdir(), 'topicast-leaf-'));
const servers: ChildProcess[] = [];
test.after(async () => {
  await Promise.all(servers.map((p) => new Promise<void>((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    p.once('exit', () => resolve());
    p.kill('SIGTERM');
  })));
  rmSync(dir, { recursive: true, force: true });
});

/** nats-server with `conf`; resolves once it accepts clients on `port`. */
async function natsServer(name: string, conf: string, port: number): Promise<void> {
  const file = join(dir, `${name}.conf`);
  writeFileSync(file, conf);
  const logs: string[] = [];
  const p = spawn('nats-server', ['-c', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  servers.push(p);
  process.once('exit', () => p.kill('SIGKILL')); // also when the runner's timeout ends the file
  p.stderr.on('data', (b: Buffer) => logs.push(b.toString()));
  await waitFor(() => {
    if (p.exitCode !== null) throw new Error(`nats-server ${name} exited: ${logs.join('')}`);
    return logs.join('').includes('Server is ready');
  }, `nats-server ${name} ready`, 10_000);
}

async function busUp(b: BrokerProcess): Promise<boolean> {
  const r = await fetch(`${b.httpUrl}/healthz`).catch(() => undefined);
  return r?.status === 200 && ((await r.json()) as { bus?: string }).bus === 'up';
}

function received(client: mqtt.MqttClient, count: number): Promise<string[]> {
  const got: string[] = [];
  return new Promise((resolve) => client.on('message', (topic, payload, packet) => {
    got.push(`${topic}=${payload.toString()}${packet.retain ? ' (retained)' : ''}`);
    if (got.length === count) resolve(got);
  }));
}

test('a worker behind a local NATS leaf node shares live and retained messages with a worker on the cluster', { skip: !run, timeout: 60_000 }, async (t) => {
  const [hubPort, leafnodePort, leafPort, plainLeafPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
  await natsServer('hub', `listen: 127.0.0.1:${hubPort}\nserver_name: hub\njetstream { store_dir: "${join(dir, 'js')}", domain: topicast }\nleafnodes { listen: 127.0.0.1:${leafnodePort} }\n`, hubPort);
  const remote = `leafnodes { remotes: [ { urls: ["nats-leaf://127.0.0.1:${leafnodePort}"] } ] }\n`;
  await natsServer('leaf', `listen: 127.0.0.1:${leafPort}\nserver_name: leaf\ndefault_js_domain: { $G: topicast }\n${remote}`, leafPort);

  const behindLeaf = await startBroker({ args: ['--bus', `nats://127.0.0.1:${leafPort}`, '--node-id', 'worker-1'] });
  const onCluster = await startBroker({ args: ['--bus', `nats://127.0.0.1:${hubPort}`, '--node-id', 'worker-2'] });
  await waitFor(async () => (await busUp(behindLeaf)) && (await busUp(onCluster)), 'both workers ready with the bus up (JetStream reached through the leaf)', 15_000);

  const a = await mqtt.connectAsync(`mqtt://127.0.0.1:${behindLeaf.mqttPort}`, { reconnectPeriod: 0 });
  const b = await mqtt.connectAsync(`mqtt://127.0.0.1:${onCluster.mqttPort}`, { reconnectPeriod: 0 });
  t.after(() => {
    a.end(true);
    b.end(true);
  });
  const atA = received(a, 1);
  const atB = received(b, 1);
  await a.subscribeAsync('cmd/#');
  await b.subscribeAsync('devices/+/temp');
  await a.publishAsync('devices/pi-01/temp', '21.5', { qos: 1 });
  await b.publishAsync('cmd/pi-01', 'reboot', { qos: 1 });
  assert.deepEqual(await atB, ['devices/pi-01/temp=21.5']);
  assert.deepEqual(await atA, ['cmd/pi-01=reboot']);

  // A retained value written behind the leaf is in JetStream: a late joiner on the other worker gets it.
  await a.publishAsync('devices/pi-01/status', 'online', { qos: 1, retain: true });
  const late = await mqtt.connectAsync(`mqtt://127.0.0.1:${onCluster.mqttPort}`, { reconnectPeriod: 0 });
  t.after(() => late.end(true));
  const snapshot = received(late, 1);
  await late.subscribeAsync('devices/+/status');
  assert.deepEqual(await snapshot, ['devices/pi-01/status=online (retained)']);

  // The same leaf without default_js_domain: NATS denies JetStream across it, so a worker stays not ready.
  await natsServer('plain-leaf', `listen: 127.0.0.1:${plainLeafPort}\nserver_name: plain-leaf\n${remote}`, plainLeafPort);
  // (The bus waits out its first JetStream request at start, so the worker may not even listen yet.)
  const withoutDomain = await startBroker({ args: ['--bus', `nats://127.0.0.1:${plainLeafPort}`, '--node-id', 'worker-3'], timeoutMs: 5000 }).catch((err: Error) => err);
  if (withoutDomain instanceof Error) assert.match(withoutDomain.message, /JetStream not ready/);
  else assert.equal(await busUp(withoutDomain), false, 'without default_js_domain the leaf refuses JetStream');
});
