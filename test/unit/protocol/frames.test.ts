/**
 * Golden frames (STYLE.md #11): each frame kind parsed from annotated bytes,
 * encoded back to the same bytes, and each shape rule rejected.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DecodeError, Op, decodeClientFrame, decodeServerFrame, encodeFrame, isRetryable, CloseCode, type Frame,
} from 'topicast/protocol';

const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s.replace(/\s+/g, ''), 'hex'));

const GOLDEN: { name: string; bytes: string; frame: Frame; side: 'client' | 'server' }[] = [
  // 94 = array(4); 01 = subscribe; 07 = id 7; 91 a1 61 = ["a"]; 80 = {}
  { name: 'subscribe', bytes: '94 01 07 91 a1 61 80', frame: { op: Op.subscribe, id: 7, filters: ['a'], options: {} }, side: 'client' },
  // options {retained:false}: 81 a8 "retained" c2
  { name: 'subscribe without retained', bytes: '94 01 07 91 a1 61 81 a8 72657461696e6564 c2', frame: { op: Op.subscribe, id: 7, filters: ['a'], options: { retained: false } }, side: 'client' },
  { name: 'unsubscribe', bytes: '93 02 08 92 a1 61 a3 622f23', frame: { op: Op.unsubscribe, id: 8, filters: ['a', 'b/#'] }, side: 'client' },
  // 95 = array(5); 03 publish; 00 no ack; a3 "a/b"; c4 02 0102 = bin; 01 = retain
  { name: 'publish', bytes: '95 03 00 a3 612f62 c4 02 0102 01', frame: { op: Op.publish, id: 0, topic: 'a/b', payload: new Uint8Array([1, 2]), flags: 1 }, side: 'client' },
  { name: 'ping', bytes: '92 04 cc ff', frame: { op: Op.ping, id: 255 }, side: 'client' },
  { name: 'will set', bytes: '93 05 01 93 a1 73 c4 01 00 c3', frame: { op: Op.will, id: 1, will: { topic: 's', payload: new Uint8Array([0]), retain: true } }, side: 'client' },
  { name: 'will clear', bytes: '93 05 02 c0', frame: { op: Op.will, id: 2, will: null }, side: 'client' },
  { name: 'ack', bytes: '93 10 07 c0', frame: { op: Op.ack, id: 7, result: null }, side: 'server' },
  { name: 'subscribe ack', bytes: '93 10 07 81 a8 72657461696e6564 05', frame: { op: Op.ack, id: 7, result: { retained: 5 } }, side: 'server' },
  { name: 'error', bytes: '94 11 07 02 a1 78', frame: { op: Op.error, id: 7, code: 2, message: 'x' }, side: 'server' },
  { name: 'delivery', bytes: '94 12 a1 74 c4 01 2a 01', frame: { op: Op.delivery, topic: 't', payload: new Uint8Array([42]), flags: 1 }, side: 'server' },
  { name: 'snapshot end', bytes: '92 13 07', frame: { op: Op.snapshotEnd, id: 7 }, side: 'server' },
  { name: 'pong', bytes: '92 14 07', frame: { op: Op.pong, id: 7 }, side: 'server' },
];

for (const g of GOLDEN) {
  test(`golden ${g.name}: parse, encode, round trip`, () => {
    const bytes = hex(g.bytes);
    const decoded = g.side === 'client' ? decodeClientFrame(bytes) : decodeServerFrame(bytes);
    assert.deepEqual(decoded, g.frame);
    assert.deepEqual(Buffer.from(encodeFrame(g.frame)).toString('hex'), Buffer.from(bytes).toString('hex'));
  });
}

test('welcome round trip', () => {
  const f: Frame = { op: Op.welcome, info: { version: 1, server: 'topicast/0.1.0', maxPayloadBytes: 1024, idleTimeoutSec: 120 } };
  assert.deepEqual(decodeServerFrame(encodeFrame(f)), f);
});

test('client frame shape rules', () => {
  const bad: [string, string][] = [
    ['not an array', '01'],
    ['empty array', '90'],
    ['unknown op', '92 63 01'],
    ['server op from client', '92 14 01'],
    ['negative id', '92 04 ff'],
    ['float id', '92 04 cb 3ff8000000000000'],
    ['subscribe with no filters', '94 01 01 90 80'],
    ['subscribe filter not string', '94 01 01 91 01 80'],
    ['subscribe options not map', '94 01 01 91 a1 61 91 01'],
    ['subscribe retained not bool', '94 01 01 91 a1 61 81 a8 72657461696e6564 01'],
    ['publish payload as string', '95 03 00 a1 61 a1 62 00'],
    ['publish topic as bin', '95 03 00 c4 01 61 c4 00 00'],
    ['publish flags out of range', '95 03 00 a1 61 c4 00 cd 0100'],
    ['publish missing flags', '94 03 00 a1 61 c4 00'],
    ['publish extra field', '96 03 00 a1 61 c4 00 00 00'],
    ['will wrong shape', '93 05 01 92 a1 73 c4 00'],
  ];
  for (const [what, h] of bad) assert.throws(() => decodeClientFrame(hex(h)), DecodeError, what);
});

test('isRetryable: transient closes retry, policy and protocol errors do not', () => {
  for (const c of [CloseCode.goingAway, CloseCode.internalError, CloseCode.tryAgainLater, CloseCode.slowConsumer, 1006]) assert.equal(isRetryable(c), true, String(c));
  for (const c of [CloseCode.normal, CloseCode.protocolError, CloseCode.policyViolation, CloseCode.messageTooBig, CloseCode.notAuthorized]) assert.equal(isRetryable(c), false, String(c));
});

test('server frames tolerate appended fields (forward compatibility, PROTOCOL.md §7)', () => {
  assert.deepEqual(decodeServerFrame(hex('95 12 a1 74 c4 01 2a 01 c0')), { op: Op.delivery, topic: 't', payload: new Uint8Array([42]), flags: 1 });
  assert.throws(() => decodeServerFrame(hex('93 12 a1 74 c4 01 2a')), DecodeError, 'but not missing ones');
});
