/**
 * Persistent MQTT sessions of the real broker process with `--data DIR` (MQTT.md "Persistent
 * sessions across restarts"), restarted on the same ports and directory, with real clients:
 * mqtt.js 3.1.1 and 5 and `mosquitto_sub -c -i ID -q 1`.
 * - kill -9 right after the last PUBACK/PUBCOMP: every acknowledged QoS 1/2 message reaches every
 *   offline persistent session after the restart, in order, QoS 2 exactly once;
 * - a torn record at the end of the session store (the crash mid-append) is cut off on start-up;
 * - across a graceful restart messages queued before it are delivered after it (mqtt.js and
 *   mosquitto_sub), the subscriptions still deliver without resubscribing, and a session whose
 *   expiry ran out meanwhile is gone.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { freePort, startBroker, type BrokerProcess } from '../helpers/broker.js';

const run = promisify(execFile);
const work = mkdtempSync(join(tmpdir(), 'topicast-mqtt-sessions-'));
after(() => rmSync(work, { recursive: true, force: true }));

const haveMosquitto = await run('sh', ['-c', 'command -v mosquitto_sub']).then(() => true, () => false);
if (!haveMosquitto && process.env.CI) throw new Error('mosquitto-clients are required under CI (apt-get install mosquitto-clients)');
if (!haveMosquitto) console.log('# skipping the mosquitto_sub part: mosquitto_sub not installed');

const N = 200;

interface Connected {
  client: mqtt.MqttClient;
  sessionPresent: boolean;
  /** The first `expect` messages, collected from the start (queued ones may arrive with the CONNACK). */
  messages: Promise<string[]>;
}

async function connect(port: number, options: mqtt.IClientOptions, expect = 0): Promise<Connected> {
  let sessionPresent = false;
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  const messages = expect > 0 ? collect(client, expect) : Promise.resolve([]);
  await new Promise<void>((resolve, reject) => {
    client.once('connect', (connack) => {
      sessionPresent = connack.sessionPresent;
      resolve();
    });
    client.once('error', reject);
  });
  return { client, sessionPresent, messages };
}

/** Collects `count` messages (acknowledging them, as mqtt.js does) or fails after 10 s. */
function collect(client: mqtt.MqttClient, count: number): Promise<string[]> {
  const got: string[] = [];
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`got ${got.length} of ${count}: ${got.slice(-3).join(', ')}`)), 10_000);
    client.on('message', (topic, payload, packet) => {
      got.push(`${topic} ${payload.toString()} q${packet.qos}`);
      if (got.length === count) {
        clearTimeout(t);
        resolve(got);
      }
    });
  });
}

function mosquittoSub(port: number, args: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const proc = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-c', '-i', 'mosq-dev', '-q', '1', '-t', 'plant/#', '-W', '10', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d: string) => (out += d));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('exit', (code) => (code === 0 ? resolve(out.split('\n').filter((l) => l !== '')) : reject(new Error(`mosquitto_sub exited ${code}: ${out}`))));
  });
}

const expected = (from: number, to: number): string[] => Array.from({ length: to - from }, (_, i) => `plant/m${from + i}`);

test('kill -9 then a graceful restart: queued QoS 1/2 messages of offline sessions (mqtt.js 3.1.1 and 5, mosquitto_sub -c) are all delivered, subscriptions keep working', async () => {
  const data = join(work, 'data');
  const ports = { port: await freePort(), mqttPort: await freePort() };
  const start = (): Promise<BrokerProcess> => startBroker({ port: ports.port, args: ['--mqtt-port', String(ports.mqttPort), '--data', data] });
  let broker = await start();

  // Persistent sessions, then offline.
  const js4 = await connect(ports.mqttPort, { clientId: 'js4', clean: false, protocolVersion: 4 });
  await js4.client.subscribeAsync({ 'plant/#': { qos: 1 }, 'alarm/#': { qos: 2 } });
  await js4.client.endAsync();
  const js5 = await connect(ports.mqttPort, { clientId: 'js5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
  await js5.client.subscribeAsync({ 'alarm/#': { qos: 2 } });
  await js5.client.endAsync();
  const short = await connect(ports.mqttPort, { clientId: 'short', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 1 } });
  await short.client.subscribeAsync('plant/#', { qos: 1 });
  await short.client.endAsync();
  const shortLeftAt = Date.now();
  if (haveMosquitto) await mosquittoSub(ports.mqttPort, ['-E']); // subscribes, then leaves its session offline

  const pub = await connect(ports.mqttPort, { clientId: 'feeder', protocolVersion: 5 });
  const acked = await Promise.all([
    ...Array.from({ length: N }, (_, i) => pub.client.publishAsync(`plant/m${i}`, `v${i}`, { qos: 1 })),
    ...Array.from({ length: 20 }, (_, i) => pub.client.publishAsync(`alarm/a${i}`, `x${i}`, { qos: 2 })),
  ]);
  assert.equal(acked.length, N + 20);
  broker.kill('SIGKILL'); // right after the last acknowledgement
  await broker.exited;
  pub.client.end(true);

  // The crash left a record half-written at the end of the session store.
  const sessions = join(data, 'sessions');
  const segment = readdirSync(sessions).filter((n) => n.startsWith('log-')).sort().at(-1)!;
  appendFileSync(join(sessions, segment), Buffer.from([0x40, 0, 0, 0, 9, 9, 9]));

  broker = await start();
  assert.ok(broker.logs.some((l) => l.includes('"MQTT session store loaded"') && /"truncatedBytes":7\b/.test(l)), 'the torn tail was cut off');
  const back4 = await connect(ports.mqttPort, { clientId: 'js4', clean: false, protocolVersion: 4 }, N + 20);
  assert.equal(back4.sessionPresent, true);
  const got4 = await back4.messages;
  assert.deepEqual(got4.filter((l) => l.startsWith('plant/')).map((l) => l.split(' ')[0]), expected(0, N), 'every acknowledged QoS 1 message, in order');
  assert.deepEqual(got4.filter((l) => l.startsWith('alarm/')), Array.from({ length: 20 }, (_, i) => `alarm/a${i} x${i} q2`));
  const back5 = await connect(ports.mqttPort, { clientId: 'js5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } }, 20);
  assert.equal(back5.sessionPresent, true);
  assert.deepEqual(await back5.messages, Array.from({ length: 20 }, (_, i) => `alarm/a${i} x${i} q2`), 'QoS 2 exactly once, in order');
  if (haveMosquitto) {
    const lines = await mosquittoSub(ports.mqttPort, ['-C', String(N)]);
    assert.deepEqual(lines, Array.from({ length: N }, (_, i) => `v${i}`));
  }

  // Graceful restart: messages queued for the offline sessions before it are delivered after it,
  // and the subscriptions keep delivering new ones without a resubscribe.
  await back4.client.endAsync();
  await back5.client.endAsync();
  const pub1 = await connect(ports.mqttPort, { clientId: 'feeder1', protocolVersion: 4 });
  for (let i = 0; i < 5; i++) await pub1.client.publishAsync(`plant/g${i}`, `g${i}`, { qos: 1 });
  await pub1.client.endAsync();
  await broker.stop();
  await new Promise((r) => setTimeout(r, Math.max(0, shortLeftAt + 1200 - Date.now()))); // 'short' expires while the broker is down
  broker = await start();
  const again4 = await connect(ports.mqttPort, { clientId: 'js4', clean: false, protocolVersion: 4 }, 7);
  const again5 = await connect(ports.mqttPort, { clientId: 'js5', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } }, 1);
  assert.deepEqual([again4.sessionPresent, again5.sessionPresent], [true, true]);
  const pub2 = await connect(ports.mqttPort, { clientId: 'feeder2', protocolVersion: 4 });
  await pub2.client.publishAsync('plant/live', 'after restart', { qos: 1 });
  await pub2.client.publishAsync('alarm/live', 'after restart', { qos: 2 });
  const queuedBefore = Array.from({ length: 5 }, (_, i) => `plant/g${i} g${i} q1`);
  assert.deepEqual(await again4.messages, [...queuedBefore, 'plant/live after restart q1', 'alarm/live after restart q2'], 'no resubscribe needed');
  assert.deepEqual(await again5.messages, ['alarm/live after restart q2']);
  await Promise.all([again4.client.endAsync(), again5.client.endAsync(), pub2.client.endAsync()]);
  if (haveMosquitto) {
    assert.deepEqual(await mosquittoSub(ports.mqttPort, ['-C', '6']), ['g0', 'g1', 'g2', 'g3', 'g4', 'after restart'], 'mosquitto_sub -c: queued across the graceful restart');
  }

  // 'short' had a 1 s expiry from its disconnect: it ran out while the broker was down.
  const gone = await connect(ports.mqttPort, { clientId: 'short', clean: false, protocolVersion: 5, properties: { sessionExpiryInterval: 1 } });
  assert.equal(gone.sessionPresent, false, 'the expired session is gone');
  await gone.client.endAsync();
  await broker.stop();
});
