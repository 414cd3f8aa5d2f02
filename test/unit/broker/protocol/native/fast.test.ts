/**
 * The native fast paths (broker/src/protocol/native/fast.ts) against the codec they stand in for:
 * a plain DELIVERY written byte for byte as `encodeDelivery` writes it, a plain PUBLISH read as
 * `decodeClientFrame` reads it, and every other input declined (left to the codec), malformed
 * frames and mutations of valid ones included.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeClientFrame, encodeDelivery, encodeFrame, Op, type ClientFrame } from 'topicast/protocol';
import type * as FastModule from '../../../../../broker/src/protocol/native/fast.js';

const dist = new URL('../../../../../../broker/dist/', import.meta.url);
const { readPlainPublish, writePlainDelivery } = (await import(new URL('protocol/native/fast.js', dist).href)) as typeof FastModule;

const bytesOf = (n: number, seed = 7) => Uint8Array.from({ length: n }, (_, i) => (i * 31 + seed) & 0xff);
const TOPIC_LENGTHS = [1, 10, 11, 85, 86, 300, 21845, 21846];
const PAYLOAD_LENGTHS = [0, 1, 64, 255, 256, 65535, 65536];
const topicOf = (n: number) => Array.from({ length: n }, (_, i) => 'abcdefghij/klmnop'[i % 17]).join('');

test('a plain DELIVERY is written byte for byte as encodeDelivery writes it', () => {
  for (const t of TOPIC_LENGTHS) {
    for (const p of PAYLOAD_LENGTHS) {
      for (const flags of [0, 1, 2, 3]) {
        const topic = topicOf(t);
        const payload = bytesOf(p);
        assert.deepEqual(writePlainDelivery(topic, payload, flags), encodeDelivery(topic, payload, flags), `topic ${t} chars, payload ${p} bytes, flags ${flags}`);
      }
    }
  }
});

test('a DELIVERY the fast path cannot write is left to the codec', () => {
  assert.equal(writePlainDelivery('caf\u00e9', bytesOf(4), 0), undefined, 'non-ASCII topic');
  assert.equal(writePlainDelivery('a/\u{1F600}', bytesOf(4), 0), undefined, 'astral topic');
  assert.equal(writePlainDelivery('a/b', bytesOf(4), 0x80), undefined, 'flags past a fixint');
});

test('a plain PUBLISH is read as decodeClientFrame reads it, its payload a copy', () => {
  const ids = [0, 1, 127, 128, 255, 256, 65535, 65536, 0x7fffffff, 0x80000000, 0xffffffff];
  for (const id of ids) {
    for (const t of [1, 10, 11, 85, 86, 300]) {
      for (const p of PAYLOAD_LENGTHS) {
        for (const flags of [0, 1]) {
          const bytes = encodeFrame({ op: Op.publish, id, topic: topicOf(t), payload: bytesOf(p, id & 0xff), flags });
          const fast = readPlainPublish(bytes, undefined);
          assert.notEqual(fast, undefined, `id ${id}, topic ${t}, payload ${p}, flags ${flags}`);
          assert.deepEqual(fast, decodeClientFrame(bytes));
          const copy = (fast as Extract<ClientFrame, { op: typeof Op.publish }>).payload;
          if (p > 0) {
            bytes[bytes.length - 2]! ^= 0xff; // the last payload byte, in the transport's buffer
            assert.notEqual(copy[p - 1], bytes[bytes.length - 2], 'the payload does not alias the input');
          }
        }
      }
    }
  }
});

test('a repeated topic reuses the string read before; a different one is read afresh', () => {
  const first = readPlainPublish(encodeFrame({ op: Op.publish, id: 0, topic: 'bench/fanout', payload: bytesOf(3), flags: 0 }), undefined) as { topic: string };
  const again = readPlainPublish(encodeFrame({ op: Op.publish, id: 9, topic: 'bench/fanout', payload: bytesOf(5), flags: 1 }), first.topic) as { topic: string };
  assert.equal(again.topic, 'bench/fanout');
  assert.equal(Object.is(again.topic, first.topic), true);
  const other = readPlainPublish(encodeFrame({ op: Op.publish, id: 0, topic: 'bench/fanouT', payload: bytesOf(3), flags: 0 }), first.topic) as { topic: string };
  assert.equal(other.topic, 'bench/fanouT');
});

test('everything but the plain PUBLISH is declined, so the codec reads it (and refuses what is malformed)', () => {
  const plain = encodeFrame({ op: Op.publish, id: 5, topic: 'a/b', payload: bytesOf(8), flags: 0 });
  const declined: [string, Uint8Array][] = [
    ['non-ASCII topic', encodeFrame({ op: Op.publish, id: 5, topic: 'caf\u00e9', payload: bytesOf(8), flags: 0 })],
    ['content type (six fields)', encodeFrame({ op: Op.publish, id: 5, topic: 'a/b', payload: bytesOf(8), flags: 0, contentType: 'application/json' })],
    ['reply properties', encodeFrame({ op: Op.publish, id: 5, topic: 'a/b', payload: bytesOf(8), flags: 0, reply: { responseTopic: 'r' } })],
    ['reserved flag bit', Uint8Array.from([...plain.subarray(0, -1), 2])],
    ['trailing byte', Uint8Array.from([...plain, 0])],
    ['truncated', plain.subarray(0, -1)],
    ['another op', encodeFrame({ op: Op.ping, id: 5 })],
    ['a 64-bit id', Uint8Array.from([0x95, 3, 0xcf, 0, 0, 0, 0, 0, 0, 0, 5, 0xa1, 0x61, 0xc4, 0, 0])],
    ['a negative id', Uint8Array.from([0x95, 3, 0xff, 0xa1, 0x61, 0xc4, 0, 0])],
    ['topic not a str', Uint8Array.from([0x95, 3, 0, 0x01, 0xc4, 0, 0])],
    ['payload not a bin', Uint8Array.from([0x95, 3, 0, 0xa1, 0x61, 0xa0, 0])],
    ['empty', new Uint8Array(0)],
  ];
  for (const [what, bytes] of declined) assert.equal(readPlainPublish(bytes, undefined), undefined, what);
});

test('mutations of a valid PUBLISH: whatever the fast path reads, the codec reads the same', () => {
  let state = 12345;
  const rnd = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) & 0x7fffffff;
    return state % n;
  };
  const base = encodeFrame({ op: Op.publish, id: 300, topic: 'devices/7/temp', payload: bytesOf(20), flags: 1 });
  let read = 0;
  for (let k = 0; k < 20_000; k++) {
    const b = Uint8Array.from(base);
    const edits = 1 + rnd(3);
    for (let e = 0; e < edits; e++) b[rnd(b.length)] = rnd(4) === 0 ? rnd(256) : b[rnd(b.length)]! + rnd(3) - 1;
    const cut = rnd(8) === 0 ? b.subarray(0, rnd(b.length)) : b;
    const fast = readPlainPublish(cut, undefined);
    if (fast === undefined) continue;
    read++;
    assert.deepEqual(fast, decodeClientFrame(cut), Buffer.from(cut).toString('hex'));
  }
  assert.ok(read > 1000, `the fast path read ${read} of the mutations`);
});
