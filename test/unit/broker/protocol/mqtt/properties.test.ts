/** SUBSCRIBE options, retained delivery and the MQTT 5 properties devices use. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RawClient, startMqtt } from './harness.js';

const pub = (topic: string, payload: string | Buffer, extra: Record<string, unknown> = {}) =>
  ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 0, dup: false, retain: false, ...extra }) as const;

test('SUBACK codes: granted QoS, 0x80 (3.1.1) / 0x8F (5) for a bad filter or a bad shared filter', async () => {
  const h = await startMqtt();
  const v4 = await RawClient.connect(h.port, { clientId: 's4' });
  v4.client.send({ cmd: 'subscribe', messageId: 7, subscriptions: [{ topic: 'a/#', qos: 2 }, { topic: 'a/#/b', qos: 1 }, { topic: 'x+', qos: 0 }] });
  const s4 = await v4.client.next('suback');
  assert.equal(s4.messageId, 7);
  assert.deepEqual(s4.granted, [2, 0x80, 0x80]);
  const v5 = await RawClient.connect(h.port, { clientId: 's5' }, 5);
  v5.client.send({ cmd: 'subscribe', messageId: 8, subscriptions: [{ topic: 'a/+', qos: 1 }, { topic: 'a/#/b', qos: 1 }, { topic: '$share/g/a', qos: 0 }, { topic: '$share/g+/a', qos: 0 }, { topic: '$share/g', qos: 0 }] });
  assert.deepEqual((await v5.client.next('suback')).granted, [1, 0x8f, 0, 0x8f, 0x8f]);
  v5.client.send({ cmd: 'unsubscribe', messageId: 9, unsubscriptions: ['a/+', 'nope', 'a/#/b'] });
  const un = await v5.client.next('unsuback');
  assert.equal(un.messageId, 9);
  assert.deepEqual(un.granted, [0x00, 0x11, 0x8f]);
});

test('retained on subscribe: flagged retained, at min QoS; empty payload deletes; "#" does not match $ topics', async () => {
  const h = await startMqtt();
  const { client: p } = await RawClient.connect(h.port, { clientId: 'rp' });
  p.send(pub('ret/a', 'A', { retain: true, qos: 1, messageId: 1 }));
  p.send(pub('ret/b', 'B', { retain: true }));
  p.send(pub('ret/b', '', { retain: true })); // [MQTT-3.3.1-10] deletes
  p.send(pub('$own/x', 'S', { retain: true }));
  await p.next('puback');
  const { client: s } = await RawClient.connect(h.port, { clientId: 'rs' });
  s.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '#', qos: 2 }] });
  await s.next('suback');
  const m = await s.next('publish');
  assert.equal(m.topic, 'ret/a');
  assert.equal(m.retain, true); // [MQTT-3.3.1-8]
  assert.equal(m.qos, 1);
  assert.equal(await s.none('publish'), true); // [MQTT-4.7.2-1] no $own/x
  // A live publish to a subscriber is not flagged retained (3.1.1 [MQTT-3.3.1-9]).
  p.send(pub('ret/c', 'C', { retain: true }));
  s.send({ cmd: 'puback', messageId: m.messageId! });
  const live = await s.next('publish');
  assert.equal(live.topic, 'ret/c');
  assert.equal(live.retain, false);
});

test('MQTT 5 retain handling 0/1/2 and retain as published', async () => {
  const h = await startMqtt();
  const { client: p } = await RawClient.connect(h.port, { clientId: 'rhp' }, 5);
  p.send(pub('rh/t', 'v', { retain: true }));
  p.send({ cmd: 'pingreq' });
  await p.next('pingresp');
  const { client: s } = await RawClient.connect(h.port, { clientId: 'rhs' }, 5);
  s.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'rh/t', qos: 0, rh: 2 }] });
  await s.next('suback');
  assert.equal(await s.none('publish', 100), true, 'rh 2: never');
  s.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'rh/+', qos: 0, rh: 1 }] });
  await s.next('suback');
  assert.equal((await s.next('publish')).retain, true, 'rh 1: new subscription');
  s.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'rh/+', qos: 0, rh: 1, rap: true }] });
  await s.next('suback');
  assert.equal(await s.none('publish', 100), true, 'rh 1: existing subscription');
  s.send({ cmd: 'subscribe', messageId: 4, subscriptions: [{ topic: 'rh/t', qos: 0, rh: 0 }] });
  await s.next('suback');
  assert.equal((await s.next('publish')).retain, true, 'rh 0: always');
  // Live: rh/+ has retain-as-published, so the retain flag is kept [MQTT-3.3.1-13].
  p.send(pub('rh/t', 'w', { retain: true }));
  const live = await s.next('publish');
  assert.equal(live.retain, true);
  assert.equal(await s.none('publish', 100), true, 'one delivery for overlapping subscriptions');
});

test('MQTT 5 no local, and overlapping subscriptions: one delivery at the highest QoS with every subscription identifier', async () => {
  const h = await startMqtt();
  const { client: c } = await RawClient.connect(h.port, { clientId: 'nl' }, 5);
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'nl/x', qos: 0, nl: true }] });
  await c.next('suback');
  c.send(pub('nl/x', 'mine'));
  assert.equal(await c.none('publish', 100), true); // [MQTT-3.8.3-3]
  c.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'o/#', qos: 0 }], properties: { subscriptionIdentifier: 5 } });
  c.send({ cmd: 'subscribe', messageId: 3, subscriptions: [{ topic: 'o/+', qos: 1 }], properties: { subscriptionIdentifier: 9 } });
  c.send({ cmd: 'subscribe', messageId: 4, subscriptions: [{ topic: 'o/y', qos: 0 }] });
  await c.next('suback');
  await c.next('suback');
  await c.next('suback');
  const { client: other } = await RawClient.connect(h.port, { clientId: 'nl-other' }, 5);
  other.send(pub('o/y', 'z', { qos: 2, messageId: 1 }));
  const m = await c.next('publish');
  assert.equal(m.qos, 1);
  assert.deepEqual([...[m.properties?.subscriptionIdentifier].flat()].sort(), [5, 9]);
  assert.equal(await c.none('publish', 100), true);
});

test('MQTT 5 properties travel: user properties, content type, response topic, correlation data, payload format, expiry', async () => {
  const h = await startMqtt();
  const { client: s } = await RawClient.connect(h.port, { clientId: 'ps' }, 5);
  s.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'pr', qos: 1 }] });
  await s.next('suback');
  const { client: p } = await RawClient.connect(h.port, { clientId: 'pp' }, 5);
  const properties = {
    payloadFormatIndicator: true, contentType: 'text/plain', responseTopic: 'pr/reply',
    correlationData: Buffer.from([1, 2, 3]), userProperties: { unit: 'C', tags: ['a', 'b'] }, messageExpiryInterval: 60,
  };
  p.send(pub('pr', 'héllo', { qos: 1, messageId: 1, properties }));
  assert.equal((await p.next('puback')).reasonCode ?? 0, 0);
  const m = await s.next('publish');
  assert.equal(m.payload.toString(), 'héllo');
  assert.equal(m.properties?.payloadFormatIndicator, true);
  assert.equal(m.properties?.contentType, 'text/plain');
  assert.equal(m.properties?.responseTopic, 'pr/reply');
  assert.deepEqual([...m.properties!.correlationData!], [1, 2, 3]);
  assert.deepEqual({ ...m.properties?.userProperties }, { unit: 'C', tags: ['a', 'b'] });
  assert.ok(m.properties!.messageExpiryInterval! <= 60 && m.properties!.messageExpiryInterval! >= 59); // [MQTT-3.3.2-6]
});

test('message expiry: an expired queued message is not delivered', async () => {
  const h = await startMqtt();
  const a = await RawClient.connect(h.port, { clientId: 'ex', properties: { sessionExpiryInterval: 60 } }, 5);
  a.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ex', qos: 1 }] });
  await a.client.next('suback');
  a.client.send({ cmd: 'disconnect', reasonCode: 0 });
  await a.client.closedPromise;
  for (let i = 0; i < 100 && h.protocol.server.sessions.get('ex')?.link; i++) await new Promise((r) => setTimeout(r, 10));
  const { client: p } = await RawClient.connect(h.port, { clientId: 'exp' }, 5);
  p.send(pub('ex', 'short', { qos: 1, messageId: 1, properties: { messageExpiryInterval: 1 } }));
  p.send(pub('ex', 'long', { qos: 1, messageId: 2, properties: { messageExpiryInterval: 100 } }));
  p.send(pub('ex/r1', 'gone', { qos: 1, messageId: 3, retain: true, properties: { messageExpiryInterval: 1 } }));
  p.send(pub('ex/r2', 'kept', { qos: 1, messageId: 4, retain: true, properties: { messageExpiryInterval: 100 } }));
  for (let i = 0; i < 4; i++) await p.next('puback');
  await new Promise((r) => setTimeout(r, 1100));
  const { client: late } = await RawClient.connect(h.port, { clientId: 'late' }, 5);
  late.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ex/+', qos: 0 }, { topic: 'ex/#', qos: 1 }] });
  await late.next('suback');
  const retained = [await late.next('publish'), await late.next('publish')];
  assert.deepEqual(retained.map((m) => m.payload.toString()), ['kept', 'kept'], 'expired retained not sent, QoS 0 and QoS 1 paths');
  assert.equal(await late.none('publish', 100), true);
  const b = await RawClient.connect(h.port, { clientId: 'ex', clean: false, properties: { sessionExpiryInterval: 60 } }, 5);
  const m = await b.client.next('publish');
  assert.equal(m.payload.toString(), 'long'); // [MQTT-3.3.2-5]
  assert.ok(m.properties!.messageExpiryInterval! < 100);
  assert.ok(h.protocol.server.stats.expired >= 1);
});

test('payload format indicator with invalid UTF-8: PUBACK 0x99 (QoS 1), DISCONNECT 0x99 (QoS 0)', async () => {
  const h = await startMqtt();
  const { client } = await RawClient.connect(h.port, { clientId: 'pfi' }, 5);
  const bad = Buffer.from([0xff, 0xfe, 0x41]);
  client.send(pub('pf', bad, { qos: 1, messageId: 1, properties: { payloadFormatIndicator: true } }));
  assert.equal((await client.next('puback')).reasonCode, 0x99);
  client.send(pub('pf', bad, { properties: { payloadFormatIndicator: true } }));
  assert.equal((await client.next('disconnect')).reasonCode, 0x99);
});

test('inbound topic aliases: set, then used alone; unknown alias is a protocol error, too large is 0x94', async () => {
  const h = await startMqtt(['--mqtt-max-topic-aliases', '4']);
  const { client: s } = await RawClient.connect(h.port, { clientId: 'tas' }, 5);
  s.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ta/#', qos: 0 }] });
  await s.next('suback');
  const { client: p } = await RawClient.connect(h.port, { clientId: 'tap' }, 5);
  p.send(pub('ta/long/topic', '1', { properties: { topicAlias: 2 } }));
  p.send(pub('', '2', { properties: { topicAlias: 2 } }));
  assert.equal((await s.next('publish')).topic, 'ta/long/topic');
  const second = await s.next('publish');
  assert.equal(second.topic, 'ta/long/topic');
  assert.equal(second.payload.toString(), '2');
  p.send(pub('', '3', { properties: { topicAlias: 3 } }));
  assert.equal((await p.next('disconnect')).reasonCode, 0x82);
  const { client: q } = await RawClient.connect(h.port, { clientId: 'tap2' }, 5);
  q.send(pub('ta/x', '1', { properties: { topicAlias: 5 } }));
  assert.equal((await q.next('disconnect')).reasonCode, 0x94); // [MQTT-3.3.2-10]
});

test('outbound topic aliases within the client maximum; each connection starts afresh', async () => {
  const h = await startMqtt();
  const { client: s } = await RawClient.connect(h.port, { clientId: 'tao', properties: { topicAliasMaximum: 1 } }, 5);
  s.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'al/#', qos: 0 }] });
  await s.next('suback');
  const { client: p } = await RawClient.connect(h.port, { clientId: 'taop' }, 5);
  p.send(pub('al/one', 'a'));
  p.send(pub('al/one', 'b'));
  p.send(pub('al/two', 'c'));
  const a = await s.next('publish');
  const b = await s.next('publish');
  const c = await s.next('publish');
  assert.deepEqual([a.topic, a.properties?.topicAlias], ['al/one', 1]);
  assert.deepEqual([b.topic, b.properties?.topicAlias, b.payload.toString()], ['', 1, 'b']);
  assert.deepEqual([c.topic, c.properties?.topicAlias], ['al/two', undefined]); // [MQTT-3.3.2-9] no alias beyond the maximum
});

test("the client's Maximum Packet Size: larger messages are not sent to it", async () => {
  const h = await startMqtt();
  const { client: s } = await RawClient.connect(h.port, { clientId: 'mps', properties: { maximumPacketSize: 64 } }, 5);
  s.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'm', qos: 1 }] });
  await s.next('suback');
  const { client: p } = await RawClient.connect(h.port, { clientId: 'mpp' }, 5);
  p.send(pub('m', 'x'.repeat(100), { qos: 1, messageId: 1 }));
  p.send(pub('m', 'small', { qos: 1, messageId: 2 }));
  const m = await s.next('publish');
  assert.equal(m.payload.toString(), 'small'); // [MQTT-3.1.2-25]
  assert.equal(h.protocol.server.stats.oversize, 1);
});

test('our Maximum Packet Size: a larger packet gets DISCONNECT 0x95 before it is buffered', async () => {
  const h = await startMqtt(['--max-payload-bytes', '1024', '--max-topic-bytes', '64']);
  const { client, connack } = await RawClient.connect(h.port, { clientId: 'big' }, 5);
  const max = connack.properties!.maximumPacketSize!;
  // Only the fixed header of a PUBLISH announcing max + 10 bytes.
  const len = max + 10;
  const varint: number[] = [];
  for (let n = len; ; ) {
    const b = n & 0x7f;
    n >>= 7;
    varint.push(n > 0 ? b | 0x80 : b);
    if (n === 0) break;
  }
  client.write(Buffer.from([0x30, ...varint]));
  assert.equal((await client.next('disconnect')).reasonCode, 0x95);
  // A whole oversize packet in one write is refused too.
  const whole = await RawClient.connect(h.port, { clientId: 'big2' }, 5);
  whole.client.send(pub('t', Buffer.alloc(max)));
  assert.equal((await whole.client.next('disconnect')).reasonCode, 0x95);
});

test('publish limits: invalid topic (0x90), rate limit (0x97), payload over maxPayloadBytes (0x97)', async () => {
  const h = await startMqtt(['--max-publishes-per-sec', '1', '--publish-burst', '2', '--max-payload-bytes', '16']);
  const { client } = await RawClient.connect(h.port, { clientId: 'lim' }, 5);
  client.send(pub('big', 'x'.repeat(17), { qos: 1, messageId: 1 }));
  assert.equal((await client.next('puback')).reasonCode, 0x97);
  client.send(pub('ok', 'y', { qos: 1, messageId: 2 }));
  assert.equal((await client.next('puback')).reasonCode ?? 0, 0);
  client.send(pub('ok', 'z', { qos: 1, messageId: 3 }));
  assert.equal((await client.next('puback')).reasonCode, 0x97);
  assert.equal(h.ctx.counters.rateLimited, 1);
  const { client: c2 } = await RawClient.connect(h.port, { clientId: 'lim2' }, 5);
  c2.send(pub('a/+', 'w'));
  assert.equal((await c2.next('disconnect')).reasonCode, 0x90); // [MQTT-3.3.2-2]
  const { client: c3 } = await RawClient.connect(h.port, { clientId: 'lim3' });
  c3.send(pub('a/#', 'w'));
  assert.equal(await c3.waitClosed(), true); // 3.1.1: closed
});

test('shared subscriptions: each message goes to one member, round-robin; ordinary subscribers still get all', async () => {
  const h = await startMqtt();
  const members = [];
  for (const [id, v] of [['m1', 5], ['m2', 4]] as const) {
    const { client } = await RawClient.connect(h.port, { clientId: id }, v);
    client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$share/grp/sh/+', qos: 1 }] });
    assert.deepEqual((await client.next('suback')).granted, [1]);
    members.push(client);
  }
  const { client: all } = await RawClient.connect(h.port, { clientId: 'all' }, 5);
  all.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'sh/+', qos: 0 }] });
  await all.next('suback');
  const { client: p } = await RawClient.connect(h.port, { clientId: 'shp' }, 5);
  for (let i = 0; i < 4; i++) p.send(pub('sh/x', String(i)));
  for (let i = 0; i < 4; i++) await all.next('publish');
  const got = [[], []] as string[][];
  for (let m = 0; m < 2; m++) for (let i = 0; i < 2; i++) got[m]!.push((await members[m]!.next('publish')).payload.toString());
  assert.deepEqual(got.flat().sort(), ['0', '1', '2', '3']);
  assert.equal(await members[0]!.none('publish', 50), true);
  // No Local on a shared subscription is a protocol error [MQTT-3.8.3-4].
  members[0]!.send({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: '$share/grp/z', qos: 0, nl: true }] });
  assert.equal((await members[0]!.next('disconnect')).reasonCode, 0x82);
  // Unsubscribing the last member removes the group from the router.
  members[1]!.send({ cmd: 'unsubscribe', messageId: 3, unsubscriptions: ['$share/grp/sh/+'] });
  await members[1]!.next('unsuback');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(h.protocol.server.shared.size, 0);
});

test('$SYS is the broker\'s own: client publishes are refused (MQTT 5 0x87), not routed, not retained', async () => {
  const h = await startMqtt();
  const { client: w } = await RawClient.connect(h.port, { clientId: 'sysw' }, 5);
  w.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: '$SYS/#', qos: 0 }] });
  await w.next('suback');
  const { client } = await RawClient.connect(h.port, { clientId: 'spoof' }, 5);
  client.send(pub('$SYS/broker/version', 'spoofed', { qos: 1, messageId: 1, retain: true }));
  assert.equal((await client.next('puback')).reasonCode, 0x87);
  const v4 = await RawClient.connect(h.port, { clientId: 'spoof4' });
  v4.client.send(pub('$SYS/x', 'spoofed', { qos: 1, messageId: 1 }));
  await v4.client.next('puback'); // 3.1.1: acknowledged, dropped
  assert.equal(await w.none('publish', 100), true);
  assert.equal(h.ctx.router.retained.get('$SYS/broker/version'), undefined);
  const willed = await RawClient.connect(h.port, { clientId: 'sysw2', will: { topic: '$SYS/x', payload: Buffer.from('w'), qos: 0, retain: false } }, 5);
  assert.equal(willed.connack.reasonCode, 0x87);
});

test('ill-formed UTF-8 in a topic or filter is a malformed packet (MQTT 5: DISCONNECT 0x81, 3.1.1: close)', async () => {
  const h = await startMqtt();
  const { client } = await RawClient.connect(h.port, { clientId: 'u8' }, 5);
  // PUBLISH QoS 0, topic "a" + 0xC0 0xAF (an overlong encoding of '/'), no properties, payload "x".
  client.write(Buffer.from([0x30, 7, 0, 3, 0x61, 0xc0, 0xaf, 0, 0x78]));
  assert.equal((await client.next('disconnect')).reasonCode, 0x81);
  const v4 = await RawClient.connect(h.port, { clientId: 'u84' });
  // SUBSCRIBE id 1, filter 0xFF, QoS 0.
  v4.client.write(Buffer.from([0x82, 6, 0, 1, 0, 1, 0xff, 0]));
  assert.equal(await v4.client.waitClosed(), true);
  assert.equal(v4.client.packets.length, 0);
});
