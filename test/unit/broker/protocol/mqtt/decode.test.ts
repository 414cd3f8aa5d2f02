/**
 * The PUBLISH fast path (protocol/mqtt/decode.ts) against mqtt-packet, the reference it replaces
 * on the hot path (STYLE.md #11): golden packets decode to the object mqtt-packet gives, field for
 * field; random PUBLISH packets (fast-check) too; and random mutations of them are refused by ours
 * whenever mqtt-packet refuses them, decode equally whenever ours accepts them, and never throw.
 * Ours is stricter in two places only, each with its own test: ill-formed UTF-8 and properties
 * that run past their length.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import mqttPacket from 'mqtt-packet';
import type * as DecodeModule from '../../../../../broker/src/protocol/mqtt/decode.js';
import type * as ReaderModule from '../../../../../broker/src/protocol/mqtt/reader.js';
import type * as EncodeModule from '../../../../../broker/src/protocol/mqtt/encode.js';
import { createMessage } from '@topicast/broker';

// Internal modules of the broker: loaded from its build output (the package exports only the public API).
const dist = new URL('../../../../../../broker/dist/protocol/mqtt/', import.meta.url);
const { decodePublish, decodeOther } = (await import(new URL('decode.js', dist).href)) as typeof DecodeModule;
const { readPackets } = (await import(new URL('reader.js', dist).href)) as typeof ReaderModule;
const { sharedPublish } = (await import(new URL('encode.js', dist).href)) as typeof EncodeModule;

type Version = 4 | 5;

/** mqtt-packet's decode of one whole packet, as a plain object (or its error message). */
function reference(bytes: Buffer, version: Version): Record<string, unknown> | string {
  const parser = mqttPacket.parser({ protocolVersion: version });
  let out: Record<string, unknown> | string = 'no packet';
  parser.on('packet', (p: mqttPacket.Packet) => (out = { ...p }));
  parser.on('error', (e: Error) => (out = typeof out === 'string' ? e.message : out));
  parser.parse(bytes);
  return out;
}

/** Where the body starts: after the first byte and the Remaining Length. */
function bodyAt(bytes: Buffer): number {
  let i = 1;
  while (i < 5 && (bytes[i]! & 0x80) !== 0) i++;
  return i + 1;
}

function ours(bytes: Buffer, version: Version): Record<string, unknown> | string {
  const decoded = decodePublish(bytes, 0, bodyAt(bytes), bytes.length, version);
  return typeof decoded === 'string' ? decoded : { ...decoded };
}

const generate = (p: Omit<mqttPacket.IPublishPacket, 'cmd'>, version: Version): Buffer =>
  mqttPacket.generate({ cmd: 'publish', ...p } as mqttPacket.IPublishPacket, { protocolVersion: version });

const GOLDEN: [string, Version, Omit<mqttPacket.IPublishPacket, 'cmd'>][] = [
  ['3.1.1 QoS 0', 4, { topic: 'devices/pi-01/cpu/temperature', payload: Buffer.from('48.2'), qos: 0, retain: false, dup: false }],
  ['3.1.1 QoS 1 retained', 4, { topic: 'a/b', payload: Buffer.from('x'), qos: 1, messageId: 7, retain: true, dup: false }],
  ['3.1.1 QoS 2 dup', 4, { topic: 'a', payload: Buffer.alloc(300, 1), qos: 2, messageId: 65535, retain: false, dup: true }],
  ['3.1.1 empty payload (deletes a retained value)', 4, { topic: 'r', payload: Buffer.alloc(0), qos: 0, retain: true, dup: false }],
  ['3.1.1 multi-byte UTF-8 topic', 4, { topic: 'température/°C/日本/\uFFFD', payload: Buffer.from([0xff, 0]), qos: 0, retain: false, dup: false }],
  ['3.1.1 payload of 20,000 bytes (three-byte Remaining Length)', 4, { topic: 'big', payload: Buffer.alloc(20_000, 7), qos: 1, messageId: 1, retain: false, dup: false }],
  ['5 no properties', 5, { topic: 't', payload: Buffer.from('v'), qos: 0, retain: false, dup: false }],
  ['5 every PUBLISH property', 5, {
    topic: 'req/1', payload: Buffer.from('{"a":1}'), qos: 1, messageId: 9, retain: false, dup: false,
    properties: {
      payloadFormatIndicator: true, messageExpiryInterval: 3600, topicAlias: 3, responseTopic: 'reply/to',
      correlationData: Buffer.from([1, 2, 3]), userProperties: { a: '1', b: ['2', '3'], 'ü': 'é' }, contentType: 'application/json',
    },
  }],
  ['5 payload format indicator 0, expiry 0', 5, { topic: 't', payload: Buffer.from('v'), qos: 0, retain: false, dup: false, properties: { payloadFormatIndicator: false, messageExpiryInterval: 0 } }],
  ['5 topic alias with an empty topic', 5, { topic: '', payload: Buffer.from('v'), qos: 0, retain: false, dup: false, properties: { topicAlias: 1 } }],
  ['5 subscription identifier (server to client, still decoded)', 5, { topic: 't', payload: Buffer.from('v'), qos: 0, retain: false, dup: false, properties: { subscriptionIdentifier: 268_435_455 } }],
];

for (const [name, version, packet] of GOLDEN) {
  test(`golden PUBLISH: ${name} decodes as mqtt-packet decodes it`, () => {
    const bytes = generate(packet, version);
    const expected = reference(bytes, version);
    assert.equal(typeof expected, 'object', `mqtt-packet parses it: ${String(expected)}`);
    assert.deepEqual(ours(bytes, version), expected);
  });
}

test('golden PUBLISH: the payload is a view into the packet bytes, not a copy', () => {
  const bytes = generate({ topic: 't', payload: Buffer.from('abc'), qos: 0, retain: false, dup: false }, 4);
  const decoded = decodePublish(bytes, 0, 2, bytes.length, 4) as mqttPacket.IPublishPacket;
  assert.equal((decoded.payload as Buffer).buffer, bytes.buffer);
});

test('user properties keep their wire order for forwarding, where the object cannot show it [MQTT-3.3.2-18]', () => {
  // a=1, b=2, a=3: the object groups a's values; the recorded order does not.
  const bytes = generate({ topic: 't', payload: Buffer.from('v'), qos: 0, retain: false, dup: false, properties: { userProperties: { a: ['1', '3'], b: '2' } } }, 5);
  // mqtt-packet writes a, a, b; move the second a after b (same lengths: swap the 8-byte pairs).
  const first = bytes.indexOf(Buffer.from([0x26, 0, 1, 0x61, 0, 1, 0x33]));
  const b = bytes.indexOf(Buffer.from([0x26, 0, 1, 0x62]));
  const pairA3 = Buffer.from(bytes.subarray(first, first + 7));
  bytes.set(bytes.subarray(b, b + 7), first);
  bytes.set(pairA3, b);
  const decoded = decodePublish(bytes, 0, bodyAt(bytes), bytes.length, 5) as mqttPacket.IPublishPacket;
  const up = decoded.properties!.userProperties as Record<string, unknown>;
  assert.deepEqual({ ...up }, { a: ['1', '3'], b: '2' });
  const order = Object.getOwnPropertySymbols(up).map((s) => (up as unknown as Record<symbol, unknown>)[s]);
  assert.deepEqual(order, [[['a', '1'], ['b', '2'], ['a', '3']]]);
});

test('stricter than mqtt-packet: an ill-formed UTF-8 topic is malformed [MQTT-1.5.4-1]; a well-formed U+FFFD is a character', () => {
  const bad = Buffer.from([0x30, 7, 0, 3, 0x61, 0xc0, 0xaf, 0, 0x78]);
  assert.equal(typeof reference(bad, 4), 'object', 'mqtt-packet decodes it (with U+FFFD)');
  assert.equal(ours(bad, 4), 'Cannot parse topic');
  const good = generate({ topic: 'a\uFFFD', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }, 4);
  assert.equal((ours(good, 4) as { topic: string }).topic, 'a\uFFFD');
});

test('stricter than mqtt-packet: ill-formed UTF-8 in a string property or a user property is malformed', () => {
  const cases: NonNullable<mqttPacket.IPublishPacket['properties']>[] = [{ contentType: 'ab' }, { userProperties: { ab: 'x' } }, { userProperties: { x: 'ab' } }, { responseTopic: 'ab' }];
  for (const properties of cases) {
    const bytes = generate({ topic: 't', payload: Buffer.from('v'), qos: 0, retain: false, dup: false, properties }, 5);
    bytes[bytes.indexOf(Buffer.from('ab'))] = 0xff;
    assert.match(ours(bytes, 5) as string, /^Cannot parse property/, JSON.stringify(properties));
  }
});

test('stricter than mqtt-packet: a property running past the property length is malformed (MQTT 5 §2.2.2.1)', () => {
  // topic "t", property length 2 but a Message Expiry Interval takes 5 bytes.
  const bytes = Buffer.from([0x30, 10, 0, 1, 0x74, 2, 0x02, 0, 0, 0, 9, 0x76]);
  assert.equal(ours(bytes, 5), 'Cannot parse property messageExpiryInterval');
});

test('stricter than mqtt-packet: a QoS 1 PUBLISH without its packet identifier is malformed (mqtt-packet reads -1)', () => {
  const bytes = Buffer.from([0x32, 3, 0, 1, 0x74]);
  assert.equal((reference(bytes, 4) as { messageId: number }).messageId, -1);
  assert.equal(ours(bytes, 4), 'Cannot parse messageId');
});

test('what both refuse: QoS 3, a topic cut short, property code 0, an unknown property', () => {
  const cases: [Buffer, Version, string][] = [
    [Buffer.from([0x36, 3, 0, 1, 0x74]), 4, 'Packet must not have both QoS bits set to 1'],
    [Buffer.from([0x30, 3, 0, 5, 0x74]), 4, 'Cannot parse topic'],
    [Buffer.from([0x30, 5, 0, 1, 0x74, 1, 0]), 5, 'Cannot parse property code type'],
    [Buffer.from([0x30, 6, 0, 1, 0x74, 2, 0x7f, 0]), 5, 'Unknown property'],
  ];
  for (const [bytes, version, message] of cases) {
    assert.equal(typeof reference(bytes, version), 'string', `mqtt-packet refuses ${bytes.toString('hex')}`);
    assert.equal(ours(bytes, version), message);
  }
});

test('a repeated user property keeps every value, an empty one too (mqtt-packet drops an empty first value) [MQTT-3.3.2-18]', () => {
  const bytes = generate({ topic: 't', payload: Buffer.from('v'), qos: 0, retain: false, dup: false, properties: { userProperties: { k: ['', 'x'] } } }, 5);
  assert.deepEqual({ ...((reference(bytes, 5) as { properties: { userProperties: object } }).properties.userProperties) }, { k: 'x' });
  assert.deepEqual({ ...((ours(bytes, 5) as { properties: { userProperties: object } }).properties.userProperties) }, { k: ['', 'x'] });
});

test('a repeated property becomes an array that names it (a Protocol Error for the dispatcher, MQTT 5 §2.2.2.2)', () => {
  // Topic Alias given twice: 0x23 0 1, 0x23 0 2.
  const bytes = Buffer.from([0x30, 11, 0, 1, 0x74, 6, 0x23, 0, 1, 0x23, 0, 2, 0x76]);
  const decoded = decodePublish(bytes, 0, 2, bytes.length, 5) as mqttPacket.IPublishPacket;
  assert.deepEqual(decoded.properties!.topicAlias, [1, 2]);
});

const utf8String = fc.string({ unit: 'grapheme', maxLength: 20 });
const publishArb = (version: Version) => fc.record({
  topic: utf8String,
  payload: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
  qos: fc.constantFrom(0 as const, 1 as const, 2 as const),
  messageId: fc.integer({ min: 1, max: 65535 }),
  retain: fc.boolean(),
  dup: fc.boolean(),
  properties: version === 4 ? fc.constant(undefined) : fc.option(fc.record({
    payloadFormatIndicator: fc.boolean(),
    messageExpiryInterval: fc.integer({ min: 0, max: 0xffffffff }),
    topicAlias: fc.integer({ min: 1, max: 65535 }),
    responseTopic: utf8String,
    correlationData: fc.uint8Array({ maxLength: 20 }).map((b) => Buffer.from(b)),
    contentType: utf8String,
    // At least one: mqtt-packet generates a broken packet for an empty user property object.
    // Repeated names with non-empty values: mqtt-packet drops an empty one (see the test below).
    userProperties: fc.dictionary(utf8String, fc.oneof(utf8String, fc.array(utf8String.filter((v) => v !== ''), { minLength: 2, maxLength: 3 })), { minKeys: 1, maxKeys: 3 }),
  }, { requiredKeys: [] }), { nil: undefined }),
}).map((p) => {
  const { messageId, properties, ...rest } = p;
  return { ...rest, ...(p.qos > 0 && { messageId }), ...(properties && Object.keys(properties).length > 0 && { properties }) } as Omit<mqttPacket.IPublishPacket, 'cmd'>;
});

for (const version of [4, 5] as const) {
  test(`random MQTT ${version === 5 ? '5' : '3.1.1'} PUBLISH packets decode as mqtt-packet decodes them`, () => {
    fc.assert(fc.property(publishArb(version), (p) => {
      const bytes = generate(p, version);
      assert.deepEqual(ours(bytes, version), reference(bytes, version));
    }), { numRuns: 500 });
  });

  test(`mutated MQTT ${version === 5 ? '5' : '3.1.1'} PUBLISH packets: refused whenever mqtt-packet refuses, equal whenever accepted, never a throw`, () => {
    const mutation = fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 });
    fc.assert(fc.property(publishArb(version), mutation, fc.nat(), (p, flips, cut) => {
      const generated = generate(p, version);
      const body = bodyAt(generated);
      // Mutate the body only (the framing is the reader's, tested below), sometimes cut it short.
      const bytes = Buffer.from(generated.subarray(0, body + (cut % 3 === 0 ? (cut % (generated.length - body + 1)) : generated.length - body)));
      for (const [at, value] of flips) if (bytes.length > body) bytes[body + (at % (bytes.length - body))] = value;
      bytes[1] = 0; // re-announce the length: the reader frames exactly these bytes
      const framed = Buffer.concat([bytes.subarray(0, 1), lengthBytes(bytes.length - body), bytes.subarray(body)]);
      const mine = ours(framed, version);
      const theirs = reference(framed, version);
      if (typeof theirs === 'string') assert.equal(typeof mine, 'string', `mqtt-packet refuses (${theirs}), ours must too`);
      if (typeof mine === 'object' && !repeats(mine)) assert.deepEqual(mine, theirs);
    }), { numRuns: 2000 });
  });
}

/**
 * Whether a decoded PUBLISH holds a repeated property, where mqtt-packet keeps a first value only
 * when it is truthy (a repeat over 0, false or '' replaces it): ours keeps every value (a
 * Protocol Error for the dispatcher, or user properties forwarded whole).
 */
function repeats(p: Record<string, unknown>): boolean {
  const props = p.properties as Record<string, unknown> | undefined;
  if (props === undefined) return false;
  return Object.entries(props).some(([k, v]) => (k === 'userProperties' ? Object.values(v as object).some(Array.isArray) : Array.isArray(v)));
}

function lengthBytes(n: number): Buffer {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return Buffer.from(out);
}

test('other packets go through mqtt-packet, their strings checked as UTF-8 and their properties read as for PUBLISH', () => {
  const sub = mqttPacket.generate({ cmd: 'subscribe', messageId: 2, subscriptions: [{ topic: 'a/+', qos: 1, nl: true, rap: false, rh: 1 }], properties: { subscriptionIdentifier: 5, userProperties: { k: 'v' } } }, { protocolVersion: 5 });
  const decoded = decodeOther(sub, bodyAt(sub), 5) as mqttPacket.ISubscribePacket;
  assert.deepEqual({ ...decoded }, reference(sub, 5));
  const bad = Buffer.from(sub);
  bad[bad.indexOf(Buffer.from('a/+'))] = 0xc0;
  assert.equal(decodeOther(bad, bodyAt(bad), 5), 'Malformed UTF-8 in topic filter');
  const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 10, clientId: 'ab', properties: { requestProblemInformation: false } }, { protocolVersion: 5 });
  assert.deepEqual({ ...(decodeOther(connect, bodyAt(connect), 4) as object) }, reference(connect, 5));
  const badId = Buffer.from(connect);
  badId[badId.length - 2] = 0xff;
  assert.equal(decodeOther(badId, bodyAt(badId), 4), 'Malformed UTF-8 in client identifier');
});

test('stricter than mqtt-packet: an acknowledgement without its packet identifier is malformed (mqtt-packet reads -1)', () => {
  for (const [bytes, version] of [[Buffer.from([0x62, 1, 0]), 4], [Buffer.from([0x40, 0]), 5], [Buffer.from([0x50, 1, 7]), 4]] as const) {
    assert.equal((reference(Buffer.from(bytes), version) as { messageId: number }).messageId, -1, bytes.toString('hex'));
    assert.equal(decodeOther(Buffer.from(bytes), 2, version), 'Cannot parse messageId', bytes.toString('hex'));
  }
});

test('the reader frames packets across any split of the stream, holds nothing once a packet is complete, and refuses an oversize one before buffering it', () => {
  const packets = [
    generate({ topic: 'a', payload: Buffer.alloc(10, 1), qos: 0, retain: false, dup: false }, 4),
    generate({ topic: 'b', payload: Buffer.alloc(200, 2), qos: 1, messageId: 4, retain: false, dup: false }, 4),
    mqttPacket.generate({ cmd: 'pingreq' }),
    generate({ topic: 'c', payload: Buffer.alloc(20_000, 3), qos: 0, retain: true, dup: false }, 4),
  ];
  const stream = Buffer.concat(packets);
  fc.assert(fc.property(fc.array(fc.integer({ min: 1, max: stream.length }), { maxLength: 6 }), (cuts) => {
    const at = [0, ...[...new Set(cuts)].sort((a, b) => a - b), stream.length];
    const got: Buffer[] = [];
    const sink: ReaderModule.PacketSink = { isOpen: true, partial: undefined, onFramed: (buf, s, _b, e) => void got.push(Buffer.from(buf.subarray(s, e))), onFrameError: () => assert.fail('no error') };
    for (let i = 0; i + 1 < at.length; i++) if (at[i]! < at[i + 1]!) readPackets(Buffer.from(stream.subarray(at[i], at[i + 1])), sink, 1 << 20);
    assert.deepEqual(got, packets);
    assert.equal(sink.partial, undefined);
  }), { numRuns: 300 });
  const errors: string[] = [];
  const sink: ReaderModule.PacketSink = { isOpen: true, partial: undefined, onFramed: () => assert.fail('not framed'), onFrameError: (p, size) => void errors.push(`${p} ${size}`) };
  readPackets(Buffer.from([0x30, 0xe9, 0x07]), sink, 1000); // announces 1,001 + 3 bytes
  readPackets(Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), sink, 1000);
  assert.deepEqual(errors, ['tooLarge 1004', 'malformed 0']);
});

test('a PUBLISH without properties is encoded to the bytes mqtt-packet generates (3.1, 3.1.1, 5; every QoS; 1- to 4-byte lengths)', () => {
  for (const version of [3, 4, 5] as const) {
    for (const qos of [0, 1, 2] as const) {
      for (const retain of [false, true]) {
        for (const length of [0, 5, 200, 20_000, 3_000_000]) {
          for (const topic of ['a', 'température/日本', 'x'.repeat(300)]) {
            const message = createMessage(topic, new Uint8Array(length).fill(7), retain, undefined, qos);
            const ours = Buffer.from(sharedPublish(message, version, qos, retain, 9, false, 0, 'as-published'));
            const expected = mqttPacket.generate({ cmd: 'publish', topic, payload: Buffer.alloc(length, 7), qos, retain, dup: false, ...(qos > 0 && { messageId: 9 }) }, { protocolVersion: version });
            assert.ok(ours.equals(expected), `v${version} QoS ${qos} retain ${retain} ${length} bytes, topic of ${topic.length}`);
          }
        }
      }
    }
  }
});
