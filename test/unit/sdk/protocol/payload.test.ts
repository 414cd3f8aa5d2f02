/**
 * Payload formats (PROTOCOL.md §8): content type names, the untagged rules, and the one
 * MessagePack → JSON conversion MQTT subscribers get — golden cases for every value JSON cannot
 * hold, a property test against msgpackr + JSON.stringify, and a fuzz that it never throws.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { Packr, pack } from 'msgpackr';
import {
  base64, contentTypeFromWire, contentTypeProblem, contentTypeToWire, decodeUntagged, DecodeError, formatOf, mimeEssence, msgpackToJson,
} from 'topicast/protocol';
import { auto, decodePayload, msgpack } from 'topicast';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (b: Uint8Array): string => new TextDecoder().decode(b);
const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

test('formatOf: Topicast types, aliases, parameters and case', () => {
  const cases: [string | undefined, string][] = [
    [undefined, 'unknown'], ['', 'unknown'], [' ; x=1', 'unknown'],
    ['application/msgpack', 'msgpack'], ['application/x-msgpack', 'msgpack'], ['Application/VND.MsgPack', 'msgpack'],
    ['application/json', 'json'], ['application/json; charset=utf-8', 'json'], ['application/senml+json', 'json'],
    ['text/plain', 'text'], ['text/plain; charset=utf-8', 'text'], ['TEXT/CSV', 'text'],
    ['application/octet-stream', 'bytes'], ['image/jpeg', 'other'], ['application/cbor', 'other'],
  ];
  for (const [ct, want] of cases) assert.equal(formatOf(ct), want, String(ct));
  assert.equal(mimeEssence(' Text/Plain ; charset=UTF-8'), 'text/plain');
});

test('content types on the native wire: one byte for ours, the string for others, limits', () => {
  assert.equal(contentTypeToWire('application/msgpack'), 1);
  assert.equal(contentTypeToWire('application/json'), 2);
  assert.equal(contentTypeToWire('text/plain'), 3);
  assert.equal(contentTypeToWire('application/octet-stream'), 4);
  assert.equal(contentTypeToWire('text/plain; charset=utf-8'), 'text/plain; charset=utf-8');
  for (const ct of ['application/msgpack', 'application/json', 'text/plain', 'application/octet-stream', 'text/csv']) {
    assert.equal(contentTypeFromWire(contentTypeToWire(ct)), ct);
  }
  assert.equal(contentTypeFromWire(null), undefined);
  assert.equal(contentTypeFromWire(undefined), undefined);
  for (const bad of [0, 5, 1.5, true, {}, '', 'a\nb', 'x'.repeat(256)]) assert.throws(() => contentTypeFromWire(bad), DecodeError, String(bad));
  assert.equal(contentTypeProblem('text/plain'), undefined);
  assert.match(contentTypeProblem('a\u0000') ?? '', /control/);
});

test('untagged payloads: empty, JSON, text, bytes', () => {
  assert.equal(decodeUntagged(new Uint8Array()), undefined);
  assert.equal(decodeUntagged(utf8('7')), 7);
  assert.equal(decodeUntagged(utf8('48.2')), 48.2);
  assert.equal(decodeUntagged(utf8('-1e3')), -1000);
  assert.equal(decodeUntagged(utf8('true')), true);
  assert.equal(decodeUntagged(utf8('null')), null);
  assert.deepEqual(decodeUntagged(utf8(' {"v":1} \n')), { v: 1 });
  assert.equal(decodeUntagged(utf8('"quoted"')), 'quoted');
  assert.equal(decodeUntagged(utf8('online')), 'online');
  assert.equal(decodeUntagged(utf8('7 apples')), '7 apples');
  assert.equal(decodeUntagged(utf8('nan')), 'nan');
  assert.equal(decodeUntagged(utf8('line 1\r\nline 2\ttab')), 'line 1\r\nline 2\ttab');
  assert.equal(decodeUntagged(utf8('température')), 'température');
  assert.deepEqual(decodeUntagged(hex('ff fe')), hex('ff fe'), 'not UTF-8');
  assert.deepEqual(decodeUntagged(hex('01 02')), hex('01 02'), 'UTF-8 but control characters');
  assert.deepEqual(decodeUntagged(pack(48.2)), pack(48.2), 'MessagePack without a tag stays bytes');
});

test('decodePayload: the tag wins; explicit bad payloads throw', () => {
  assert.equal(decodePayload(utf8('7'), 'text/plain', msgpack.decode), '7');
  assert.equal(decodePayload(utf8('"7"'), 'application/json', msgpack.decode), '7');
  assert.equal(decodePayload(pack('7'), 'application/msgpack', msgpack.decode), '7');
  assert.deepEqual(decodePayload(utf8('7'), 'application/octet-stream', msgpack.decode), utf8('7'));
  assert.deepEqual(decodePayload(utf8('7'), 'image/png', msgpack.decode), utf8('7'));
  assert.equal(decodePayload(new Uint8Array(), 'text/plain', msgpack.decode), undefined);
  assert.throws(() => decodePayload(utf8('{'), 'application/json', msgpack.decode));
  assert.throws(() => decodePayload(hex('ff'), 'text/plain', msgpack.decode));
  assert.throws(() => decodePayload(hex('c1'), 'application/msgpack', msgpack.decode));
  // The auto codec: publishes MessagePack, tagged.
  assert.equal(auto.contentType, 'application/msgpack');
  assert.deepEqual(auto.encode(48.2), pack(48.2));
  assert.equal(auto.decode(utf8('7'), undefined), 7);
});

test('msgpackToJson: golden conversions, including what JSON cannot hold', () => {
  const conv = (b: Uint8Array): [string, string] | undefined => {
    const c = msgpackToJson(b);
    return c && [text(c.payload), c.contentType];
  };
  assert.deepEqual(conv(pack(48.2)), ['48.2', 'application/json']);
  assert.deepEqual(conv(pack(7)), ['7', 'application/json']);
  assert.deepEqual(conv(pack(-3)), ['-3', 'application/json']);
  assert.deepEqual(conv(pack(true)), ['true', 'application/json']);
  assert.deepEqual(conv(pack(null)), ['null', 'application/json']);
  assert.deepEqual(conv(pack({ value: 21.5, unit: '°C', ts: 1700000000000 })), ['{"value":21.5,"unit":"°C","ts":1700000000000}', 'application/json']);
  assert.deepEqual(conv(pack([1, 'a', [true]])), ['[1,"a",[true]]', 'application/json']);
  // A top-level string is its text; top-level bytes stay bytes.
  assert.deepEqual(conv(pack('online')), ['online', 'text/plain']);
  assert.deepEqual(conv(pack('"quoted"')), ['"quoted"', 'text/plain']);
  const bin = msgpackToJson(pack(Uint8Array.of(1, 2, 255)));
  assert.deepEqual([bin?.payload && Uint8Array.from(bin.payload), bin?.contentType], [Uint8Array.of(1, 2, 255), 'application/octet-stream']);
  // Nested bytes → base64; NaN and ±Infinity → null; float32.
  assert.deepEqual(conv(pack({ b: Uint8Array.of(1, 2, 3, 4) })), ['{"b":"AQIDBA=="}', 'application/json']);
  assert.deepEqual(conv(hex('93 cb 7ff8000000000000 cb 7ff0000000000000 cb fff0000000000000')), ['[null,null,null]', 'application/json']);
  assert.deepEqual(conv(hex('ca 3fc00000')), ['1.5', 'application/json']);
  // 64-bit integers keep every digit.
  assert.deepEqual(conv(hex('cf ffffffffffffffff')), ['18446744073709551615', 'application/json']);
  assert.deepEqual(conv(hex('d3 8000000000000000')), ['-9223372036854775808', 'application/json']);
  // Timestamp extension (-1): 32-bit seconds, 64-bit with nanoseconds; other extensions → null.
  assert.deepEqual(conv(hex('d6 ff 00000001')), ['"1970-01-01T00:00:01.000Z"', 'application/json']);
  assert.deepEqual(conv(new Packr({ useRecords: false }).pack(new Date(Date.UTC(2026, 11, 6, 12, 0, 0, 250)))), ['"2026-12-06T12:00:00.250Z"', 'application/json']);
  assert.deepEqual(conv(hex('d4 05 00')), ['null', 'application/json']);
  // Keys that are not strings become their JSON text.
  assert.deepEqual(conv(hex('82 01 a1 61 c0 02')), ['{"1":"a","null":2}', 'application/json']);
  // Not one complete MessagePack value: undefined (sent as published).
  for (const bad of ['', 'c1', 'cb 00', '92 01', '01 02', 'a2 61', 'dd ffffffff', 'df ffffffff', 'a2 ff fe']) {
    assert.equal(msgpackToJson(hex(bad)), undefined, bad);
  }
  // Nesting beyond 64 levels is not converted.
  assert.equal(msgpackToJson(hex('91'.repeat(70) + '01')), undefined);
  assert.ok(msgpackToJson(hex('91'.repeat(60) + '01')));
  assert.equal(base64(utf8('')), '');
  assert.equal(base64(utf8('f')), 'Zg==');
  assert.equal(base64(utf8('fo')), 'Zm8=');
  assert.equal(base64(utf8('foo')), 'Zm9v');
});

// JSON-representable values: what msgpackr packs, JSON.stringify must read back identically.
const jsonValue = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null), fc.boolean(), fc.integer({ min: -(2 ** 31), max: 2 ** 32 }), fc.double({ noNaN: true, noDefaultInfinity: true }),
    fc.string(), fc.array(tie('value'), { maxLength: 4 }), fc.dictionary(fc.string(), tie('value'), { maxKeys: 4 }),
  ),
})).value;

test('msgpackToJson agrees with msgpackr + JSON.stringify on every JSON value', () => {
  const packr = new Packr({ useRecords: false, mapsAsObjects: true });
  fc.assert(fc.property(jsonValue, (v) => {
    const c = msgpackToJson(packr.pack(v));
    assert.ok(c, 'converted');
    if (typeof v === 'string') return assert.equal(text(c.payload), v);
    assert.deepEqual(JSON.parse(text(c.payload)), JSON.parse(JSON.stringify(v)));
  }), { numRuns: 3000 });
});

test('msgpackToJson never throws and always yields valid JSON, text or bytes (fuzz)', () => {
  const packr = new Packr({ useRecords: false });
  fc.assert(fc.property(
    fc.oneof(fc.uint8Array({ maxLength: 64 }), jsonValue.map((v) => {
      const b = packr.pack(v);
      return b;
    }).chain((b) => fc.tuple(fc.constant(b), fc.nat(Math.max(0, b.length - 1)), fc.integer({ min: 0, max: 255 })).map(([x, i, byte]) => {
      const m = Uint8Array.from(x);
      if (m.length > 0) m[i] = byte;
      return m;
    }))),
    (bytes) => {
      const c = msgpackToJson(bytes);
      if (c === undefined) return;
      if (c.contentType === 'application/json') JSON.parse(text(c.payload));
      else if (c.contentType === 'text/plain') new TextDecoder('utf-8', { fatal: true }).decode(c.payload);
      else assert.equal(c.contentType, 'application/octet-stream');
    },
  ), { numRuns: 20000 });
});
