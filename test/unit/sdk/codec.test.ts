import { test } from 'node:test';
import assert from 'node:assert/strict';
import { json, msgpack, raw, text } from 'topicast';
import { decodeMsgpack } from 'topicast/protocol';

test('json round trip and bytes', () => {
  const v = { value: 48.2, unit: '°C', ts: 1700000000000, tags: ['a', null] };
  assert.deepEqual(json.decode(json.encode(v)), v);
  assert.equal(new TextDecoder().decode(json.encode({ x: 1 })), '{"x":1}');
  assert.equal(new TextDecoder().decode(json.encode(undefined)), 'null');
  assert.throws(() => json.decode(new TextEncoder().encode('{nope')));
});

test('text round trip; invalid UTF-8 is an error, not U+FFFD', () => {
  assert.equal(text.decode(text.encode('online ✓')), 'online ✓');
  assert.equal(text.decode(text.encode(42)), '42');
  assert.throws(() => text.decode(new Uint8Array([0xff, 0xfe])));
});

test('raw passes bytes through', () => {
  const b = new Uint8Array([0, 1, 2, 255]);
  assert.equal(raw.encode(b), b);
  assert.deepEqual(raw.encode(b.buffer), b);
  assert.deepEqual(raw.encode(new DataView(b.buffer, 1, 2)), new Uint8Array([1, 2]));
  assert.equal(raw.decode(b), b);
  assert.throws(() => raw.encode('text'), TypeError);
});

test('msgpack round trip; plain MessagePack readable by the strict frame decoder', () => {
  const v = { value: 48.2, n: -7, big: 2 ** 40, ok: true, name: 'pi', list: [1, 'two', null], nested: { a: { b: 1 } } };
  assert.deepEqual(msgpack.decode(msgpack.encode(v)), v);
  assert.deepEqual(decodeMsgpack(msgpack.encode(v)), v); // no msgpackr-only records
  assert.equal(msgpack.decode(msgpack.encode(48.2)), 48.2);
  assert.deepEqual([...msgpack.encode(undefined)], [0xc0]); // nil, not msgpackr's undefined extension
  const bytes = new Uint8Array([1, 2, 3]);
  assert.deepEqual(new Uint8Array(msgpack.decode(msgpack.encode(bytes)) as Uint8Array), bytes);
});

test('an empty payload (a cleared retained value) decodes to undefined, or empty text/bytes', () => {
  const empty = new Uint8Array(0);
  assert.equal(msgpack.decode(empty), undefined);
  assert.equal(json.decode(empty), undefined);
  assert.equal(text.decode(empty), '');
  assert.equal((raw.decode(empty) as Uint8Array).length, 0);
});
