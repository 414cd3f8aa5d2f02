/**
 * Scale-out composition end to end, in one process: real brokers (startBroker: uWebSockets.js,
 * native, MQTT, HTTP) joined by the in-memory bus, with real clients (ws frames, mqtt.js, fetch).
 * Proves the protocol hooks (snapshot wait, wills, acknowledged publishes), the outage policy as
 * clients see it, readiness and the figures. The NATS and MQTT-upstream adapters have their own
 * multi-process suites.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import mqtt from 'mqtt';
import { CloseCode, ErrorCode, Op } from 'topicast/protocol';
import { loadConfig, startBroker, type RunningBroker } from '@topicast/broker';
import type * as MemoryBusModule from '../../../../broker/src/cluster/memory-bus.js';
import { bytes, isDelivery, NativeClient, scrapeMetrics, sleep, text } from '../../../helpers/native-client.js';
import { freePort, waitFor } from '../../../helpers/broker.js';

const { MemoryBusHub } = (await import(new URL('../../../../../broker/dist/cluster/memory-bus.js', import.meta.url).href)) as typeof MemoryBusModule;
type Hub = InstanceType<typeof MemoryBusHub>;
type Bus = ReturnType<Hub['createNode']>;

const silent = { level: 'silent', info() {}, warn() {}, error() {}, debug() {}, trace() {}, fatal() {}, child() { return silent; } };

interface Node {
  broker: RunningBroker;
  bus: Bus;
  http: string;
  ws: string;
  mqtt: string;
}

const running: RunningBroker[] = [];
const mqttClients: mqtt.MqttClient[] = [];
after(async () => {
  for (const c of mqttClients) c.end(true);
  await Promise.all(running.map((b) => b.shutdown()));
});

async function node(hub: Hub, id: string, args: string[] = []): Promise<Node> {
  const config = loadConfig(['--host', '127.0.0.1', '--port', '0', '--mqtt-port', String(await freePort()), '--log-level', 'silent', '--sys-interval-sec', '0', '--bus-linger-ms', '100', ...args], {});
  const bus = hub.createNode(id);
  const broker = await startBroker(config, silent as never, { bus });
  running.push(broker);
  return { broker, bus, http: `http://127.0.0.1:${broker.port}`, ws: `ws://127.0.0.1:${broker.port}/ws`, mqtt: `mqtt://127.0.0.1:${broker.mqttPort}` };
}

/** A slow engine: each retained snapshot of `bus` takes `delayMs` longer. */
function slowSnapshots(bus: Bus, delayMs: number): void {
  const retained = bus.retained.bind(bus);
  bus.retained = async (filter) => {
    const entries = await retained(filter);
    await sleep(delayMs);
    return entries;
  };
}

async function mqttClient(url: string, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 5, reconnectPeriod: 0, ...options });
  mqttClients.push(c);
  return c;
}

test('cross-node delivery once over every protocol, with overlapping filters', async () => {
  const hub = new MemoryBusHub();
  const [a, b] = [await node(hub, 'a'), await node(hub, 'b')];
  const onA = await NativeClient.connect(a.ws);
  await onA.subscribe(['x/#', 'x/+/t', '+/y/t']);
  const onB = await mqttClient(b.mqtt);
  const gotB: string[] = [];
  onB.on('message', (topic, payload) => gotB.push(`${topic}=${payload.toString()}`));
  await onB.subscribeAsync(['x/#', 'x/y/+'], { qos: 1 });

  const pubB = await mqttClient(b.mqtt);
  await pubB.publishAsync('x/y/t', 'mqtt qos1', { qos: 1 });
  const res = await fetch(`${b.http}/api/publish/x/y/t`, { method: 'POST', body: 'http' });
  assert.equal(res.status, 200);
  const pubA = await NativeClient.connect(a.ws);
  assert.equal((await pubA.publish('x/y/t', bytes('native acked')))?.op, Op.ack);
  await pubA.publish('x/y/t', bytes('native fire-and-forget'), { ack: false });

  const all = ['mqtt qos1', 'http', 'native acked', 'native fire-and-forget'];
  await waitFor(() => onA.deliveries('x/y/t').length >= 4 && gotB.length >= 4, 'every message on both nodes');
  await sleep(100);
  assert.deepEqual(onA.deliveries('x/y/t').map((d) => text(d.payload)).sort(), [...all].sort(), 'native subscriber on a: each once');
  assert.deepEqual(gotB.sort(), all.map((v) => `x/y/t=${v}`).sort(), 'MQTT subscriber on b: each once');
});

test('a subscription on a filter not mirrored yet waits for the bus snapshot; later frames wait behind it', async () => {
  const hub = new MemoryBusHub();
  const [a, b] = [await node(hub, 'a'), await node(hub, 'b')];
  const pub = await NativeClient.connect(a.ws);
  await pub.publish('dev/1/status', bytes('online'), { retain: true });
  await pub.publish('dev/2/status', bytes('online'), { retain: true });
  slowSnapshots(b.bus, 150);
  const sub = await NativeClient.connect(b.ws);
  const sent = sub.subscribeRaw(['dev/+/status']);
  const pingId = sub.id();
  sub.send({ op: Op.ping, id: pingId });
  const ack = await sent;
  assert.equal(ack.op, Op.ack);
  assert.equal(ack.op === Op.ack && ack.result?.retained, 2, 'the snapshot holds the values set on the other node');
  await sub.expect((f) => f.op === Op.pong && f.id === pingId, 5000, 'PONG');
  const order = sub.frames.map((f) => (f.op === Op.ack ? 'ack' : f.op === Op.delivery ? 'retained' : f.op === Op.snapshotEnd ? 'end' : f.op === Op.pong ? 'pong' : 'other'));
  assert.deepEqual(order.filter((o) => o !== 'other'), ['ack', 'retained', 'retained', 'end', 'pong'], 'the PING sent after the SUBSCRIBE is answered after it');

  const m = await mqttClient(b.mqtt);
  const got: string[] = [];
  m.on('message', (topic, payload, packet) => got.push(`${topic}=${payload.toString()}${packet.retain ? ' (retained)' : ''}`));
  await m.subscribeAsync('dev/#', { qos: 1 });
  await waitFor(() => got.length >= 2, 'MQTT retained snapshot');
  assert.deepEqual(got.sort(), ['dev/1/status=online (retained)', 'dev/2/status=online (retained)']);
  await pub.publish('dev/1/status', bytes('offline'), { retain: true });
  await sub.expect(isDelivery('dev/1/status', 'offline'), 5000);

  // MQTT: a PUBLISH sent right after a SUBSCRIBE that waits is handled after it, so it is delivered.
  const own = await mqttClient(b.mqtt);
  const ownGot: string[] = [];
  own.on('message', (topic, payload) => ownGot.push(`${topic}=${payload.toString()}`));
  const subscribed = own.subscribeAsync('hold/#', { qos: 1 });
  const published = own.publishAsync('hold/x', 'after subscribe', { qos: 1 });
  await Promise.all([subscribed, published]);
  await waitFor(() => ownGot.length >= 1, 'the publish held behind the SUBSCRIBE');
  assert.deepEqual(ownGot, ['hold/x=after subscribe']);
});

test('a client that floods frames while its SUBSCRIBE waits is closed as rate-limited; holding them is bounded', async () => {
  const hub = new MemoryBusHub();
  const b = await node(hub, 'b');
  slowSnapshots(b.bus, 300);
  const calm = await NativeClient.connect(b.ws);
  const flood = await NativeClient.connect(b.ws);
  void flood.subscribeRaw(['f/native/#']).catch(() => {});
  for (let i = 0; i < 1001; i++) flood.send({ op: Op.ping, id: flood.id() });
  const closed = await flood.closed;
  assert.equal(closed.code, CloseCode.rateLimited, 'native: closed with 4029 (retry later)');
  assert.ok(flood.frames.some((f) => f.op === Op.error && f.code === ErrorCode.rateLimited), 'native: ERROR rateLimited says why');

  const m = await mqttClient(b.mqtt);
  const disconnected = new Promise<number | undefined>((resolve) => m.on('disconnect', (packet) => resolve(packet.reasonCode)));
  void m.subscribeAsync('f/mqtt/#', { qos: 1 }).catch(() => {});
  for (let i = 0; i < 1001; i++) m.publish('f/mqtt/x', 'flood', { qos: 0 });
  assert.equal(await disconnected, 0x96, 'MQTT 5: DISCONNECT 0x96 (message rate too high)');

  await calm.ping(); // the others keep working
});

test('wills: a node dies; each will of its native and MQTT connections is published once, on another node', async () => {
  const hub = new MemoryBusHub();
  const [a, b, c] = [await node(hub, 'a'), await node(hub, 'b'), await node(hub, 'c')];
  const watchB = await NativeClient.connect(b.ws);
  await watchB.subscribe(['status/#']);
  const watchC = await mqttClient(c.mqtt);
  const onC: string[] = [];
  watchC.on('message', (topic, payload) => onC.push(`${topic}=${payload.toString()}`));
  await watchC.subscribeAsync('status/#', { qos: 1 });

  const native = await NativeClient.connect(a.ws);
  await native.setWill('status/native', bytes('offline'), true);
  const device = await mqttClient(a.mqtt, { will: { topic: 'status/mqtt', payload: Buffer.from('offline'), qos: 1, retain: true } });
  const clean = await NativeClient.connect(a.ws);
  await clean.setWill('status/clean', bytes('offline'));
  await clean.close(); // a clean close clears its will everywhere
  await sleep(50);
  hub.kill('a'); // node a is gone from the cluster; its connections are cut without a word
  native.terminate();
  device.stream.destroy();
  await waitFor(() => watchB.deliveries().length >= 2 && onC.length >= 2, 'both wills on b and c');
  await sleep(200);
  assert.deepEqual(watchB.deliveries().map((d) => `${d.topic}=${text(d.payload)}`).sort(), ['status/mqtt=offline', 'status/native=offline']);
  assert.deepEqual(onC.sort(), ['status/mqtt=offline', 'status/native=offline']);
  const mb = await scrapeMetrics(b.http);
  const mc = await scrapeMetrics(c.http);
  assert.equal((mb.get('topicast_bus_orphan_wills_total') ?? 0) + (mc.get('topicast_bus_orphan_wills_total') ?? 0), 2, 'claimed once each');
});

test('outage: local delivery, drops and refusals with a retry hint, readiness, replay, figures', async () => {
  const hub = new MemoryBusHub();
  const [a, b] = [await node(hub, 'a', ['--bus-buffer-messages', '2', '--bus-retry-after-sec', '7']), await node(hub, 'b')];
  const local = await NativeClient.connect(a.ws);
  await local.subscribe(['o/#']);
  const remote = await NativeClient.connect(b.ws);
  await remote.subscribe(['o/#']);
  assert.equal((await fetch(`${a.http}/healthz`)).status, 200);
  const sys = await local.subscribe(['$SYS/broker/cluster/#']);
  const state = sys.retained.find((d) => d.topic === '$SYS/broker/cluster/state');
  assert.equal(state && text(state.payload), '2', '$SYS repeats the bus figures (2 = up)');

  hub.setDown(true);
  const health = await fetch(`${a.http}/healthz`);
  assert.equal(health.status, 503, 'not ready while the bus is down');
  assert.equal(((await health.json()) as { bus: string }).bus, 'down');
  const live = await fetch(`${a.http}/healthz?live`);
  assert.equal(live.status, 200, 'alive while not ready: a bus outage must not get nodes restarted');
  assert.equal(((await live.json()) as { status: string }).status, 'alive');

  const pub = await NativeClient.connect(a.ws);
  await pub.publish('o/q0', bytes('local only'), { ack: false });
  await local.expect(isDelivery('o/q0', 'local only'), 5000);
  const first = pub.publish('o/1', bytes('buffered 1'));
  const second = pub.publish('o/r', bytes('retained'), { retain: true });
  const refused = await pub.publish('o/2', bytes('over the bound'));
  assert.equal(refused?.op, Op.error);
  assert.ok(refused?.op === Op.error && refused.code === ErrorCode.unavailable);
  assert.match(refused?.op === Op.error ? refused.message : '', /retry in 7 s/);
  const m = await mqttClient(a.mqtt);
  await assert.rejects(m.publishAsync('o/3', 'mqtt', { qos: 1 }), (err: Error & { code?: number }) => err.code === 0x97, 'MQTT 5: PUBACK quota exceeded');
  const http = await fetch(`${a.http}/api/publish/o/4`, { method: 'POST', body: 'x' });
  assert.equal(http.status, 503);
  assert.equal(http.headers.get('retry-after'), '7');
  await local.expect(isDelivery('o/3', 'mqtt'), 5000);
  await sleep(50);
  assert.equal(remote.deliveries().length, 0, 'nothing crossed while down');
  const during = await scrapeMetrics(a.http);
  assert.equal(during.get('topicast_bus_state'), 0);
  assert.equal(during.get('topicast_bus_dropped_total'), 1);
  assert.equal(during.get('topicast_bus_buffered'), 2);
  assert.equal(during.get('topicast_bus_refused_total'), 3);

  hub.setDown(false);
  assert.equal((await first)?.op, Op.ack, 'acknowledged once the bus took it');
  assert.equal((await second)?.op, Op.ack);
  await remote.expect(isDelivery('o/1', 'buffered 1'), 5000);
  await remote.expect(isDelivery('o/r', 'retained'), 5000);
  assert.equal((await fetch(`${a.http}/healthz`)).status, 200, 'ready again');
  const afterwards = await scrapeMetrics(a.http);
  assert.equal(afterwards.get('topicast_bus_replayed_total'), 2);
  assert.equal(afterwards.get('topicast_bus_buffered'), 0);
  assert.equal(afterwards.get('topicast_bus_state'), 2);
  // A late joiner on b sees the replayed retained value.
  const late = await NativeClient.connect(b.ws);
  const snap = await late.subscribe(['o/r']);
  assert.deepEqual(snap.retained.map((d) => text(d.payload)), ['retained']);
});

test('a filter a client may not subscribe to never becomes interest on the bus', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'topicast-cluster-'));
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, JSON.stringify({ tokens: [{ token: 'dev-secret', sub: 'd1', subscribe: ['devices/{sub}/cmd/#'] }] }));
  const hub = new MemoryBusHub();
  const a = await node(hub, 'a', ['--auth-token-file', tokens, '--auth-anonymous', 'false']);
  const c = await mqttClient(a.mqtt, { username: 'd1', password: 'dev-secret' });
  await assert.rejects(c.subscribeAsync('#', { qos: 0 }), /Not authorized/, 'SUBACK 0x87');
  assert.equal((await scrapeMetrics(a.http)).get('topicast_bus_filters'), 0, 'no bus interest for a denied filter');
  await c.subscribeAsync('devices/d1/cmd/#', { qos: 0 });
  assert.equal((await scrapeMetrics(a.http)).get('topicast_bus_filters'), 1);
});
