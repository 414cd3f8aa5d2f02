/**
 * Topicast nodes joined through an upstream Mosquitto (`--bus mqtt://127.0.0.1:PORT/ROOT`), real
 * processes and real clients: cross-node delivery once per connection with overlapping filters,
 * retained values set on one node and seen by a late subscriber on another, the will of a device
 * on a node killed with SIGKILL published exactly once by a survivor, and a drained node sending
 * its MQTT 5 clients to another node with DISCONNECT 0x9C and a Server Reference.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import mqtt from 'mqtt';
import { startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';
import { haveMosquitto, startMosquitto, type Mosquitto } from '../helpers/mosquitto.js';

if (!haveMosquitto) console.log('# skipping the MQTT upstream cluster tests: mosquitto not installed');

let mosquitto: Mosquitto | undefined;
const clients: mqtt.MqttClient[] = [];

before(async () => {
  if (haveMosquitto) mosquitto = await startMosquitto();
});
after(() => {
  for (const c of clients) c.end(true);
  mosquitto?.stop();
});

/** A node on the upstream broker, under a root unique to the test. */
function node(root: string, id: string, env: Record<string, string> = {}): Promise<BrokerProcess> {
  return startBroker({ args: ['--bus', `mqtt://127.0.0.1:${mosquitto!.port}/${root}`, '--node-id', id], env });
}

async function client(b: BrokerProcess, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000, ...options });
  clients.push(c);
  return c;
}

function collect(c: mqtt.MqttClient): { topic: string; payload: string; retain: boolean }[] {
  const got: { topic: string; payload: string; retain: boolean }[] = [];
  c.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), retain: packet.retain }));
  return got;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('two nodes on Mosquitto: cross-node once per connection with overlapping filters, a/# gets a, retained seen by a late joiner', { skip: !haveMosquitto, timeout: 60_000 }, async () => {
  const root = `e2e${randomBytes(4).toString('hex')}`;
  const [a, b] = await Promise.all([node(root, 'a'), node(root, 'b')]);
  const sub = await client(a);
  const got = collect(sub);
  await sub.subscribeAsync(['x/#', 'x/+/t', 'x/s/t'], { qos: 1 });
  const pub = await client(b);
  // The bridge subscribes on the bus asynchronously: publish until the first message crosses.
  await waitFor(async () => {
    await pub.publishAsync('x/probe', 'p', { qos: 1 });
    await sleep(50);
    return got.some((m) => m.topic === 'x/probe');
  }, 'the first message across the bus', 10_000);
  got.length = 0;
  await pub.publishAsync('x/s/t', 'once', { qos: 1 });
  await pub.publishAsync('x', 'parent', { qos: 1 });
  await waitFor(() => got.length >= 2, 'two messages', 5000);
  await sleep(300);
  assert.deepEqual(got.map((m) => [m.topic, m.payload]), [['x/s/t', 'once'], ['x', 'parent']], 'each once on a connection holding three matching filters');
  // Mosquitto sent node a one copy per held filter; the adapter kept one (and counted the rest).
  const metrics = await (await fetch(`${a.httpUrl}/metrics`)).text();
  const dropped = Number(/^topicast_bus_mqtt_duplicates_dropped_total (\d+)$/m.exec(metrics)?.[1]);
  assert.ok(dropped >= 2, `duplicates dropped by the adapter: ${dropped}`);

  await pub.publishAsync('r/kept', 'v1', { qos: 1, retain: true });
  await pub.publishAsync('r/kept', 'v2', { qos: 1, retain: true });
  await sleep(200);
  const late = await client(a);
  const lateGot = collect(late);
  await late.subscribeAsync('r/#', { qos: 1 });
  await waitFor(() => lateGot.length >= 1, 'the retained value on the other node', 5000);
  await sleep(200);
  assert.deepEqual(lateGot, [{ topic: 'r/kept', payload: 'v2', retain: true }]);
});

test('kill -9 of a node holding a device: its will is published exactly once by a survivor', { skip: !haveMosquitto, timeout: 60_000 }, async () => {
  const root = `e2e${randomBytes(4).toString('hex')}`;
  const [a, b, c] = await Promise.all([node(root, 'a'), node(root, 'b'), node(root, 'c')]);
  const watchers = await Promise.all([client(a), client(b)]);
  const seen = watchers.map(collect);
  for (const w of watchers) await w.subscribeAsync('devices/+/status', { qos: 1 });
  await client(c, { clientId: 'dev-1', will: { topic: 'devices/dev-1/status', payload: Buffer.from('offline'), qos: 1, retain: true } });
  await sleep(500); // the will reaches the bus (setWill) shortly after CONNACK
  c.kill('SIGKILL');
  // Seen at once by the socket close, then the grace of the MQTT bus (5 s) before the lowest live node claims.
  await waitFor(() => seen.every((s) => s.some((m) => m.payload === 'offline')), 'the will on both survivors', 20_000);
  await sleep(1500);
  for (const s of seen) assert.equal(s.filter((m) => m.payload === 'offline').length, 1, 'published once');
});

test('drain with drainServerReference: MQTT 5 clients of the drained node get 0x9C naming another node and continue there', { skip: !haveMosquitto, timeout: 60_000 }, async () => {
  const root = `e2e${randomBytes(4).toString('hex')}`;
  const a = await node(root, 'a');
  const b = await node(root, 'b', { TOPICAST_DRAIN_MS: '1000', TOPICAST_DRAIN_SERVER_REFERENCE: `127.0.0.1:${a.mqttPort}` });
  const device = await client(b, { clientId: 'moving' });
  const disconnect = new Promise<mqtt.IDisconnectPacket>((resolve) => device.once('disconnect', resolve));
  b.kill('SIGTERM');
  const packet = await disconnect;
  assert.equal(packet.reasonCode, 0x9c);
  const reference = packet.properties?.serverReference;
  assert.equal(reference, `127.0.0.1:${a.mqttPort}`);
  const [host, port] = reference!.split(':');
  const moved = await mqtt.connectAsync(`mqtt://${host}:${port}`, { protocolVersion: 5, clientId: 'moving', reconnectPeriod: 0 });
  clients.push(moved);
  const got = collect(moved);
  await moved.subscribeAsync('after/drain', { qos: 1 });
  const other = await client(a);
  await other.publishAsync('after/drain', 'here', { qos: 1 });
  await waitFor(() => got.length === 1, 'a message on the node the reference named', 5000);
  assert.deepEqual(await b.exited, { code: 0, signal: null });
});
