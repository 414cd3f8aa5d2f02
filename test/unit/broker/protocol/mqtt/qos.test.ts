/** QoS 1 and 2 handshakes both ways, the in-flight window, redelivery and the offline queue. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RawClient, startMqtt } from './harness.js';

async function until(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 200 && !predicate(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(predicate());
}

const pub = (topic: string, payload: string, qos: 0 | 1 | 2, messageId?: number) =>
  ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, dup: false, retain: false, messageId }) as const;

test('inbound QoS 1: PUBACK with the same id; QoS 2: PUBREC, PUBREL, PUBCOMP, routed once even if resent', async () => {
  const h = await startMqtt();
  const { client: sub } = await RawClient.connect(h.port, { clientId: 's' });
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'q/#', qos: 0 }] });
  await sub.next('suback');
  const { client } = await RawClient.connect(h.port, { clientId: 'p' });
  client.send(pub('q/1', 'one', 1, 10));
  assert.equal((await client.next('puback')).messageId, 10); // [MQTT-4.3.2-2]
  client.send(pub('q/2', 'two', 2, 11));
  assert.equal((await client.next('pubrec')).messageId, 11);
  client.send({ ...pub('q/2', 'two', 2, 11), dup: true }); // resent before PUBREL
  assert.equal((await client.next('pubrec')).messageId, 11);
  client.send({ cmd: 'pubrel', messageId: 11 });
  assert.equal((await client.next('pubcomp')).messageId, 11);
  assert.equal((await sub.next('publish')).payload.toString(), 'one');
  assert.equal((await sub.next('publish')).payload.toString(), 'two');
  assert.equal(await sub.none('publish'), true, 'the resent QoS 2 publish was not routed twice'); // [MQTT-4.3.3-10]
});

test('outbound QoS: min(published, granted); QoS 2 goes PUBLISH, PUBREC, PUBREL, PUBCOMP', async () => {
  const h = await startMqtt();
  const { client: sub } = await RawClient.connect(h.port, { clientId: 'sub2' });
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'o/2', qos: 2 }, { topic: 'o/1', qos: 1 }] });
  assert.deepEqual((await sub.next('suback')).granted, [2, 1]);
  const { client } = await RawClient.connect(h.port, { clientId: 'pub2' });
  client.send(pub('o/2', 'x', 2, 1));
  client.send(pub('o/1', 'y', 2, 2));
  const p2 = await sub.next('publish');
  assert.equal(p2.qos, 2);
  const p1 = await sub.next('publish');
  assert.equal(p1.qos, 1); // [MQTT-3.8.4-6]
  sub.send({ cmd: 'puback', messageId: p1.messageId! });
  sub.send({ cmd: 'pubrec', messageId: p2.messageId! });
  assert.equal((await sub.next('pubrel')).messageId, p2.messageId);
  sub.send({ cmd: 'pubcomp', messageId: p2.messageId! });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.protocol.server.sessions.get('sub2')!.inflight.size, 0);
});

test('the in-flight window: at most Receive Maximum unacknowledged, the rest follows each PUBACK', async () => {
  const h = await startMqtt(['--mqtt-max-inflight', '10']);
  const { client: sub } = await RawClient.connect(h.port, { clientId: 'slow', properties: { receiveMaximum: 3 } }, 5);
  sub.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'w', qos: 1 }] });
  await sub.next('suback');
  const { client } = await RawClient.connect(h.port, { clientId: 'fast' });
  for (let i = 1; i <= 8; i++) client.send(pub('w', String(i), 1, i));
  for (let i = 1; i <= 8; i++) await client.next('puback');
  const first: number[] = [];
  for (let i = 0; i < 3; i++) first.push((await sub.next('publish')).messageId!);
  assert.equal(await sub.none('publish', 150), true, 'a fourth message waits for an ack'); // [MQTT-3.3.4-9]
  sub.send({ cmd: 'puback', messageId: first[0]! });
  const fourth = await sub.next('publish');
  assert.equal(fourth.payload.toString(), '4');
  assert.ok(!first.slice(1).includes(fourth.messageId!), 'packet ids in flight are unique');
});

test('persistent session: unacknowledged QoS 1 is resent with DUP on reconnect, QoS 2 resumes at PUBREL, offline messages are queued', async () => {
  const h = await startMqtt();
  const a = await RawClient.connect(h.port, { clientId: 'dev', clean: false });
  a.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'r/#', qos: 2 }] });
  await a.client.next('suback');
  const { client } = await RawClient.connect(h.port, { clientId: 'feeder' });
  client.send(pub('r/1', 'q1', 1, 1));
  client.send(pub('r/2', 'q2', 2, 2));
  const m1 = await a.client.next('publish');
  const m2 = await a.client.next('publish');
  assert.equal(m1.dup, false);
  a.client.send({ cmd: 'pubrec', messageId: m2.messageId! }); // QoS 2 half-way
  await a.client.next('pubrel');
  a.client.destroy(); // no ack for m1, no PUBCOMP for m2
  await a.client.closedPromise;
  await until(() => h.protocol.server.sessions.get('dev')?.link === undefined);
  client.send(pub('r/3', 'offline', 1, 3));
  await client.next('puback');

  const b = await RawClient.connect(h.port, { clientId: 'dev', clean: false });
  assert.equal(b.connack.sessionPresent, true);
  const again = await b.client.next('publish');
  assert.equal(again.dup, true); // [MQTT-3.3.1-1] [MQTT-4.4.0-1]
  assert.equal(again.messageId, m1.messageId);
  assert.equal(again.payload.toString(), 'q1');
  assert.equal((await b.client.next('pubrel')).messageId, m2.messageId); // [MQTT-4.4.0-1] PUBREL, not the PUBLISH again
  const queued = await b.client.next('publish');
  assert.equal(queued.payload.toString(), 'offline');
  assert.equal(queued.dup, false);
});

test('the offline queue is bounded: drop-oldest keeps the newest mqttMaxQueued messages, and counts', async () => {
  const h = await startMqtt(['--mqtt-max-queued', '3']);
  const a = await RawClient.connect(h.port, { clientId: 'away', clean: false });
  a.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'b', qos: 1 }] });
  await a.client.next('suback');
  a.client.send({ cmd: 'disconnect' });
  await a.client.closedPromise;
  await until(() => h.protocol.server.sessions.get('away')?.link === undefined);
  const { client } = await RawClient.connect(h.port, { clientId: 'src' });
  for (let i = 1; i <= 6; i++) client.send(pub('b', String(i), 1, i));
  for (let i = 1; i <= 6; i++) await client.next('puback');
  client.send(pub('b', 'q0', 0)); // QoS 0 is not stored offline [MQTT-3.1.2-5 note]
  const b = await RawClient.connect(h.port, { clientId: 'away', clean: false });
  const got: string[] = [];
  for (let i = 0; i < 3; i++) got.push((await b.client.next('publish')).payload.toString());
  assert.deepEqual(got, ['4', '5', '6']);
  assert.equal(await b.client.none('publish', 100), true);
  assert.equal(h.protocol.server.stats.queueDropped, 3);
});

test('drop-newest keeps the oldest queued messages', async () => {
  const h = await startMqtt(['--mqtt-max-queued', '2', '--mqtt-queue-overflow', 'drop-newest']);
  const a = await RawClient.connect(h.port, { clientId: 'away2', clean: false });
  a.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'b', qos: 1 }] });
  await a.client.next('suback');
  a.client.destroy();
  await a.client.closedPromise;
  await until(() => h.protocol.server.sessions.get('away2')?.link === undefined);
  const { client } = await RawClient.connect(h.port, { clientId: 'src2' });
  for (let i = 1; i <= 4; i++) client.send(pub('b', String(i), 1, i));
  for (let i = 1; i <= 4; i++) await client.next('puback');
  const b = await RawClient.connect(h.port, { clientId: 'away2', clean: false });
  assert.equal((await b.client.next('publish')).payload.toString(), '1');
  assert.equal((await b.client.next('publish')).payload.toString(), '2');
});

test('our Receive Maximum: more QoS 2 publishes awaiting PUBREL than allowed gets DISCONNECT 0x93', async () => {
  const h = await startMqtt(['--mqtt-max-inflight', '2']);
  const { client } = await RawClient.connect(h.port, { clientId: 'greedy' }, 5);
  for (let i = 1; i <= 3; i++) client.send(pub('g', 'x', 2, i));
  assert.equal((await client.next('disconnect')).reasonCode, 0x93);
});

test('packet id 0 on a QoS 1 publish is a protocol error', async () => {
  const h = await startMqtt();
  const { client } = await RawClient.connect(h.port, { clientId: 'zero' }, 5);
  // PUBLISH QoS 1, topic "a", packet id 0, no properties.
  client.write(Buffer.from([0x32, 6, 0, 1, 0x61, 0, 0, 0]));
  assert.equal((await client.next('disconnect')).reasonCode, 0x82);
});
