/**
 * The QoS 0 fan-in fast paths (issue 16): a plain QoS 0 PUBLISH is forwarded as read when those are
 * exactly the bytes its subscribers would be sent, and a client's repeated topic is reused without
 * decoding it again. Both must be invisible: every subscriber gets the canonical encoding, and a
 * topic that differs in any byte is decoded and checked as before.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { MemoryConnection, RawClient, encode, settle, startMqtt, type Harness } from './harness.js';

/** An in-memory subscriber that keeps every byte string the broker sends it. */
class BytesConnection extends MemoryConnection {
  readonly sent: Buffer[] = [];
  override send(bytes: Uint8Array): ReturnType<MemoryConnection['send']> {
    this.sent.push(Buffer.from(bytes));
    return super.send(bytes);
  }
}

async function subscriber(h: Harness, version: 4 | 5, filter: string): Promise<BytesConnection> {
  const conn = new BytesConnection(version);
  const handler = h.protocol.open(conn);
  handler.onMessage(encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 0, clientId: `s${version}${filter}` }, version));
  await settle();
  handler.onMessage(encode({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 0 }] }, version));
  await settle();
  conn.sent.length = 0;
  return conn;
}

/** What encode.ts writes for a live QoS 0 delivery of (topic, payload) at `version`. */
const canonical = (topic: string, payload: Buffer, version: 4 | 5): Buffer =>
  mqttPacket.generate({ cmd: 'publish', topic, payload, qos: 0, dup: false, retain: false }, { protocolVersion: version });

/** A QoS 0 PUBLISH written by hand: `lengthBytes` for the Remaining Length (overlong when more than needed), `props` the MQTT 5 property section. */
function publish(topic: string, payload: Buffer, o: { first?: number; lengthBytes?: number; props?: number[] } = {}): Buffer {
  const t = Buffer.from(topic);
  const body = Buffer.concat([Buffer.from([t.length >> 8, t.length & 0xff]), t, Buffer.from(o.props ?? []), payload]);
  const length: number[] = [];
  let n = body.length;
  const count = o.lengthBytes ?? (n < 128 ? 1 : n < 16_384 ? 2 : 3);
  for (let i = 0; i < count; i++) {
    length.push((n % 128) | (i < count - 1 ? 0x80 : 0));
    n = Math.floor(n / 128);
  }
  return Buffer.concat([Buffer.from([o.first ?? 0x30, ...length]), body]);
}

test('a QoS 0 PUBLISH reaches 3.1.1 and MQTT 5 subscribers in their canonical encoding, whether or not it was read in that form', async () => {
  const h = await startMqtt();
  const s4 = await subscriber(h, 4, 'p/#');
  const s5 = await subscriber(h, 5, 'p/#');
  const { client: p4 } = await RawClient.connect(h.port, { clientId: 'p4' });
  const { client: p5 } = await RawClient.connect(h.port, { clientId: 'p5' }, 5);
  const small = Buffer.alloc(10, 7);
  const large = Buffer.alloc(300, 9); // a two-byte Remaining Length
  const cases: [RawClient, Buffer, string, Buffer][] = [
    [p4, publish('p/a', small), 'p/a', small],
    [p4, publish('p/b', large), 'p/b', large],
    [p4, publish('p/c', small, { lengthBytes: 3 }), 'p/c', small], // overlong Remaining Length
    [p5, publish('p/d', small, { props: [0] }), 'p/d', small],
    [p5, publish('p/e', large, { props: [0] }), 'p/e', large],
    [p5, publish('p/f', small, { props: [0x80, 0] }), 'p/f', small], // overlong property length
  ];
  for (const [client, bytes] of cases) client.write(bytes);
  const expected = cases.length;
  for (let i = 0; i < 200 && (s4.sent.length < expected || s5.sent.length < expected); i++) await new Promise((r) => setTimeout(r, 10));
  // Two publishers: their messages may interleave either way, so compared as sets.
  const sorted = (list: Buffer[]): Buffer[] => [...list].sort(Buffer.compare);
  assert.deepEqual(sorted(s4.sent), sorted(cases.map(([, , topic, payload]) => canonical(topic, payload, 4))));
  assert.deepEqual(sorted(s5.sent), sorted(cases.map(([, , topic, payload]) => canonical(topic, payload, 5))));
});

test('a client\'s repeated topic is reused only for the same bytes: a different topic of the same length, a non-ASCII one and an invalid one are each decoded and checked', async () => {
  const h = await startMqtt();
  const sub = await subscriber(h, 4, '#');
  const { client } = await RawClient.connect(h.port, { clientId: 'repeat' });
  const topics = ['r/ab', 'r/ab', 'r/ac', 'r/é', 'r/é', 'r/ab'];
  for (const topic of topics) client.write(publish(topic, Buffer.from(topic)));
  for (let i = 0; i < 200 && sub.sent.length < topics.length; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(sub.of('publish').map((p) => [p.topic, p.payload.toString()]), topics.map((t) => [t, t]));
  // Same length as the last topic, one byte apart: a wildcard is no topic name [MQTT-3.3.2-2].
  client.write(publish('r/+b', Buffer.from('x')));
  assert.equal(await client.waitClosed(), true);
  // Ill-formed UTF-8 after a good topic of the same length [MQTT-1.5.4-1].
  const { client: other } = await RawClient.connect(h.port, { clientId: 'repeat2' });
  other.write(publish('r/ab', Buffer.from('y')));
  const bad = publish('r/ab', Buffer.from('z'));
  bad[bad.length - 2] = 0xff; // the topic's last byte
  other.write(bad);
  assert.equal(await other.waitClosed(), true);
  await settle();
  assert.deepEqual(sub.of('publish').map((p) => p.topic), [...topics, 'r/ab']);
});
