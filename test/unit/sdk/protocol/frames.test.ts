/**
 * Golden frames (STYLE.md #11): each frame kind parsed from annotated bytes,
 * encoded back to the same bytes, and each shape rule rejected.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  DecodeError, Op, decodeClientFrame, decodeServerFrame, encodeAnyFrame as encodeFrame, encodeMsgpack, isRetryable, CloseCode, type Frame, type MsgpackValue,
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
  // Payload formats (PROTOCOL.md §8.1): Topicast's own content types as one byte, others as the string.
  // 96 = array(6); ... 01 = application/msgpack
  { name: 'publish, MessagePack', bytes: '96 03 00 a3 612f62 c4 02 0102 01 01', frame: { op: Op.publish, id: 0, topic: 'a/b', payload: new Uint8Array([1, 2]), flags: 1, contentType: 'application/msgpack' }, side: 'client' },
  // a8 "text/csv"
  { name: 'publish, other type', bytes: '96 03 00 a3 612f62 c4 02 0102 00 a8 746578742f637376', frame: { op: Op.publish, id: 0, topic: 'a/b', payload: new Uint8Array([1, 2]), flags: 0, contentType: 'text/csv' }, side: 'client' },
  // will [topic, payload, retain, 03 = text/plain]
  { name: 'will with a type', bytes: '93 05 01 94 a1 73 c4 01 00 c3 03', frame: { op: Op.will, id: 1, will: { topic: 's', payload: new Uint8Array([0]), retain: true, contentType: 'text/plain' } }, side: 'client' },
  // delivery: nil offset, 02 = application/json
  { name: 'delivery, JSON, no offset', bytes: '96 12 a1 74 c4 01 2a 00 c0 02', frame: { op: Op.delivery, topic: 't', payload: new Uint8Array([42]), flags: 0, contentType: 'application/json' }, side: 'server' },
  // delivery: offset 5, 04 = application/octet-stream
  { name: 'delivery, bytes, offset', bytes: '96 12 a1 74 c4 01 2a 00 05 04', frame: { op: Op.delivery, topic: 't', payload: new Uint8Array([42]), flags: 0, offset: 5, contentType: 'application/octet-stream' }, side: 'server' },
  // Request/reply (PROTOCOL.md §9): a map {responseTopic, correlationData} as the seventh element.
  // 97 = array(7); c0 = no content type; 82 {d9 0d "responseTopic" (str8: the encoder sizes for 3 bytes per char) a3 "r/1", af "correlationData" c4 02 0001}
  {
    name: 'publish, request',
    bytes: '97 03 05 a3 612f62 c4 01 07 00 c0 82 d9 0d 726573706f6e7365546f706963 a3 722f31 d9 0f 636f7272656c6174696f6e44617461 c4 02 0001',
    frame: { op: Op.publish, id: 5, topic: 'a/b', payload: new Uint8Array([7]), flags: 0, reply: { responseTopic: 'r/1', correlationData: new Uint8Array([0, 1]) } },
    side: 'client',
  },
  // an answer: msgpack content type, correlation data only
  {
    name: 'publish, answer',
    bytes: '97 03 00 a3 722f31 c4 01 07 00 01 81 d9 0f 636f7272656c6174696f6e44617461 c4 02 0001',
    frame: { op: Op.publish, id: 0, topic: 'r/1', payload: new Uint8Array([7]), flags: 0, contentType: 'application/msgpack', reply: { correlationData: new Uint8Array([0, 1]) } },
    side: 'client',
  },
  // delivery: nil offset, 02 = JSON, {responseTopic: "r/1"}
  {
    name: 'delivery, request',
    bytes: '97 12 a1 74 c4 01 2a 00 c0 02 81 d9 0d 726573706f6e7365546f706963 a3 722f31',
    frame: { op: Op.delivery, topic: 't', payload: new Uint8Array([42]), flags: 0, contentType: 'application/json', reply: { responseTopic: 'r/1' } },
    side: 'server',
  },
  // History and drain (PROTOCOL.md §4.6, §4.7).
  // options {resume: ["e1", 42]}: 81 a6 "resume" 92 a2 "e1" 2a
  { name: 'subscribe with resume', bytes: '94 01 07 91 a1 61 81 a6 726573756d65 92 a2 6531 2a', frame: { op: Op.subscribe, id: 7, filters: ['a'], options: { resume: { epoch: 'e1', offset: 42 } } }, side: 'client' },
  // both options, in encoder order; the largest safe offset 2^53-1 as uint64 (cf)
  {
    name: 'subscribe without retained, resume at 2^53-1',
    bytes: '94 01 07 91 a1 61 82 a8 72657461696e6564 c2 a6 726573756d65 92 a2 6531 cf 001fffffffffffff',
    frame: { op: Op.subscribe, id: 7, filters: ['a'], options: { retained: false, resume: { epoch: 'e1', offset: Number.MAX_SAFE_INTEGER } } },
    side: 'client',
  },
  // {retained:0, replayed:3, epoch:"e1", offset:300, recovered:true}
  {
    name: 'subscribe ack, recovered',
    bytes: '93 10 07 85 a8 72657461696e6564 00 a8 7265706c61796564 03 a5 65706f6368 a2 6531 a6 6f6666736574 cd 012c a9 7265636f7665726564 c3',
    frame: { op: Op.ack, id: 7, result: { retained: 0, replayed: 3, epoch: 'e1', offset: 300, recovered: true } },
    side: 'server',
  },
  // a fresh subscription on a broker with history: {retained:2, epoch:"e1", offset:0}
  { name: 'subscribe ack with a position', bytes: '93 10 07 83 a8 72657461696e6564 02 a5 65706f6368 a2 6531 a6 6f6666736574 00', frame: { op: Op.ack, id: 7, result: { retained: 2, epoch: 'e1', offset: 0 } }, side: 'server' },
  { name: 'subscribe ack, not recovered', bytes: '93 10 07 82 a8 72657461696e6564 01 a9 7265636f7665726564 c2', frame: { op: Op.ack, id: 7, result: { retained: 1, recovered: false } }, side: 'server' },
  // 95: five fields; flags 02 = replayed; offset 300
  { name: 'delivery with offset', bytes: '95 12 a1 74 c4 01 2a 02 cd 012c', frame: { op: Op.delivery, topic: 't', payload: new Uint8Array([42]), flags: 2, offset: 300 }, side: 'server' },
  { name: 'delivery with offset 0', bytes: '95 12 a1 74 c4 00 00 00', frame: { op: Op.delivery, topic: 't', payload: new Uint8Array(0), flags: 0, offset: 0 }, side: 'server' },
  // 92 16 {reconnectAfterMs: 1500}: d9 10 = str8 of 16 (the encoder sizes headers for 3 bytes per char: 48 > 31)
  { name: 'drain', bytes: '92 16 81 d9 10 7265636f6e6e65637441667465724d73 cd 05dc', frame: { op: Op.drain, info: { reconnectAfterMs: 1500 } }, side: 'server' },
  { name: 'pong', bytes: '92 14 07', frame: { op: Op.pong, id: 7 }, side: 'server' },
  // History queries (PROTOCOL.md §4.8). 94 06 07 "a/#" {limit: 10, newestFirst: true} (d9 0b: str8, see drain)
  {
    name: 'history', bytes: '94 06 07 a3 612f23 82 a5 6c696d6974 0a d9 0b 6e65776573744669727374 c3',
    frame: { op: Op.history, id: 7, filter: 'a/#', options: { limit: 10, newestFirst: true } }, side: 'client',
  },
  // 96 17 id "t" bin(2a) offset 300, ts 1700000000000 as uint64 (cf)
  {
    name: 'history message', bytes: '96 17 07 a1 74 c4 01 2a cd 012c cf 0000018bcfe56800',
    frame: { op: Op.historyMessage, id: 7, topic: 't', payload: new Uint8Array([42]), offset: 300, ts: 1_700_000_000_000 }, side: 'server',
  },
  // 93 18 id {count: 1, complete: false, more: true, epoch: "e1", offset: 300}
  {
    name: 'history end', bytes: '93 18 07 85 a5 636f756e74 01 a8 636f6d706c657465 c2 a4 6d6f7265 c3 a5 65706f6368 a2 6531 a6 6f6666736574 cd 012c',
    frame: { op: Op.historyEnd, id: 7, info: { count: 1, complete: false, more: true, epoch: 'e1', offset: 300 } }, side: 'server',
  },
  // subscribe options {history: {limit: 5}}
  { name: 'subscribe with a history prefill', bytes: '94 01 07 91 a1 61 81 a7 686973746f7279 81 a5 6c696d6974 05', frame: { op: Op.subscribe, id: 7, filters: ['a'], options: { history: { limit: 5 } } }, side: 'client' },
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

/** `[1, 1, ["a"], {resume: <value>}]` */
const resume = (value: string): string => `94 01 01 91 a1 61 81 a6 726573756d65 ${value}`;

test('subscribe resume limits (PROTOCOL.md §4.6)', () => {
  const bad: [string, string, RegExp][] = [
    ['negative offset', resume('92 a2 6531 ff'), /resume offset must be a non-negative integer/],
    ['float offset', resume('92 a2 6531 cb 3ff8000000000000'), /resume offset/],
    ['offset 2^53 as float (not a safe integer)', resume('92 a2 6531 cb 4340000000000000'), /resume offset/],
    ['offset 2^53 as uint64', resume('92 a2 6531 cf 0020000000000000'), /./],
    ['offset as string', resume('92 a2 6531 a1 31'), /resume offset/],
    ['offset missing', resume('91 a2 6531'), /resume must be \[epoch/],
    ['extra element', resume('93 a2 6531 01 01'), /resume must be \[epoch/],
    ['not an array', resume('a2 6531'), /resume must be \[epoch/],
    ['nil', resume('c0'), /resume must be \[epoch/],
    ['empty epoch', resume('92 a0 01'), /resume must be \[epoch/],
    ['epoch of 65 chars', resume(`92 d9 41 ${'65'.repeat(65)} 01`), /resume must be \[epoch/],
    ['epoch as number', resume('92 01 01'), /resume must be \[epoch/],
    ['epoch as bin', resume('92 c4 01 65 01'), /resume must be \[epoch/],
    ['unknown option', '94 01 01 91 a1 61 81 a5 73696e6365 01', /unknown subscribe option "since"/],
    ['unknown option beside resume', '94 01 01 91 a1 61 82 a6 726573756d65 92 a2 6531 01 a1 78 c3', /unknown subscribe option "x"/],
  ];
  for (const [what, h, message] of bad) assert.throws(() => decodeClientFrame(hex(h)), (e: unknown) => e instanceof DecodeError && message.test(e.message), what);
  // The limits themselves are accepted: an epoch of 64 chars, offset 0.
  assert.deepEqual(decodeClientFrame(hex(resume(`92 d9 40 ${'65'.repeat(64)} 00`))), { op: Op.subscribe, id: 1, filters: ['a'], options: { resume: { epoch: 'e'.repeat(64), offset: 0 } } });
});

test('history request limits (PROTOCOL.md §4.8): known keys, integers ≥ 0, limit ≥ 1, a boolean order, an epoch', () => {
  const history = (options: MsgpackValue, filter: MsgpackValue = 'a/#'): Uint8Array => encodeMsgpack([Op.history, 1, filter, options]);
  const bad: [string, Uint8Array, RegExp][] = [
    ['options not a map', history([1]), /history options must be a map/],
    ['options nil', history(null), /history options must be a map/],
    ['unknown key', history({ since: 1 }), /unknown history options key "since"/],
    ['limit 0', history({ limit: 0 }), /limit must be at least 1/],
    ['negative sinceMs', history({ sinceMs: -1 }), /sinceMs must be a non-negative integer/],
    ['float untilMs', history({ untilMs: 1.5 }), /untilMs must be a non-negative integer/],
    ['fromOffset as string', history({ fromOffset: '1' }), /fromOffset must be a non-negative integer/],
    ['newestFirst not a boolean', history({ newestFirst: 1 }), /newestFirst must be a boolean/],
    ['empty epoch', history({ epoch: '' }), /epoch must be a string of 1..64 chars/],
    ['filter not a string', history({}, 1), /history filter must be a string/],
    ['missing options', encodeMsgpack([Op.history, 1, 'a']), /op 6 takes 3..3 fields/],
    ['prefill with a window bound it does not take', encodeMsgpack([Op.subscribe, 1, ['a'], { history: { untilMs: 5 } }]), /unknown subscribe option history key "untilMs"/],
  ];
  for (const [what, bytes, message] of bad) assert.throws(() => decodeClientFrame(bytes), (e: unknown) => e instanceof DecodeError && message.test(e.message), what);
  assert.deepEqual(decodeClientFrame(history({ limit: 1, sinceMs: 0, untilMs: 2 ** 53 - 1, fromOffset: 0, toOffset: 9, newestFirst: false, epoch: 'e'.repeat(64) })), {
    op: Op.history, id: 1, filter: 'a/#', options: { limit: 1, sinceMs: 0, untilMs: 2 ** 53 - 1, fromOffset: 0, toOffset: 9, newestFirst: false, epoch: 'e'.repeat(64) },
  });
  // The server's answer frames: a HISTORY_END without its booleans or epoch is malformed.
  assert.throws(() => decodeServerFrame(encodeMsgpack([Op.historyEnd, 1, { count: 1, more: false, epoch: 'e', offset: 1 }])), /bad history end/);
  assert.throws(() => decodeServerFrame(encodeMsgpack([Op.historyMessage, 1, 't', new Uint8Array(0), -1, 5])), /offset must be a non-negative integer/);
});

test('ack, delivery and drain limits (PROTOCOL.md §4.6, §4.7)', () => {
  const str = (s: string): string => `${(0xa0 + s.length).toString(16)} ${Buffer.from(s).toString('hex')}`;
  const ack = (key: string, value: string): string => `93 10 07 82 a8 72657461696e6564 00 ${str(key)} ${value}`;
  const bad: [string, string, RegExp][] = [
    ['ack negative offset', ack('offset', 'ff'), /offset must be a non-negative integer/],
    ['ack float offset', ack('offset', 'cb 3ff8000000000000'), /offset must be a non-negative integer/],
    ['ack offset beyond 2^53 (float)', ack('offset', 'cb 4370000000000000'), /offset must be a non-negative integer/],
    ['ack offset 2^53 as uint64', ack('offset', 'cf 0020000000000000'), /./],
    ['ack empty epoch', ack('epoch', 'a0'), /epoch must be a string of 1\.\.64 chars/],
    ['ack epoch of 65 chars', ack('epoch', `d9 41 ${'65'.repeat(65)}`), /epoch must be a string of 1\.\.64 chars/],
    ['ack epoch as number', ack('epoch', '01'), /epoch must be a string/],
    ['ack recovered as number', ack('recovered', '01'), /recovered must be a boolean/],
    ['ack replayed as string', ack('replayed', 'a1 31'), /replayed count must be a number/],
    ['delivery negative offset', '95 12 a1 74 c4 01 2a 00 ff', /delivery offset must be a non-negative integer/],
    ['delivery float offset', '95 12 a1 74 c4 01 2a 00 cb 3ff8000000000000', /delivery offset/],
    ['delivery offset 2^53 as float', '95 12 a1 74 c4 01 2a 00 cb 4340000000000000', /delivery offset/],
    ['delivery offset as string', '95 12 a1 74 c4 01 2a 00 a1 31', /delivery offset/],
    ['drain without a map', '92 16 c0', /drain must carry a map/],
    ['drain with an array', '92 16 91 01', /drain must carry a map/],
    ['drain without reconnectAfterMs', '92 16 80', /reconnectAfterMs must be a non-negative integer/],
    ['drain negative delay', `92 16 81 ${str('reconnectAfterMs')} ff`, /reconnectAfterMs/],
    ['drain fractional delay', `92 16 81 ${str('reconnectAfterMs')} cb 3ff8000000000000`, /reconnectAfterMs/],
    ['drain missing its map', '91 16', /takes at least 1 fields/],
  ];
  for (const [what, h, message] of bad) assert.throws(() => decodeServerFrame(hex(h)), (e: unknown) => e instanceof DecodeError && message.test(e.message), what);
  // Appended fields stay tolerated (PROTOCOL.md §7): after the content type, and in the drain map.
  assert.deepEqual(decodeServerFrame(hex('97 12 a1 74 c4 01 2a 02 05 01 c3')), { op: Op.delivery, topic: 't', payload: new Uint8Array([42]), flags: 2, offset: 5, contentType: 'application/msgpack' });
  assert.deepEqual(decodeServerFrame(hex(`93 16 82 ${str('reconnectAfterMs')} 00 ${str('x')} 01 c0`)), { op: Op.drain, info: { reconnectAfterMs: 0 } });
  // A nil offset is the same as none (a later broker may fill the fifth field only sometimes).
  assert.deepEqual(decodeServerFrame(hex('95 12 a1 74 c4 01 2a 00 c0')), { op: Op.delivery, topic: 't', payload: new Uint8Array([42]), flags: 0 });
});

test('content type field limits (PROTOCOL.md §8.1)', () => {
  const bad: [string, string, RegExp][] = [
    ['code 0', '96 03 00 a1 61 c4 00 00 00', /content type code must be 1\.\.4/],
    ['code 5', '96 03 00 a1 61 c4 00 00 05', /content type code must be 1\.\.4/],
    ['float code', '96 03 00 a1 61 c4 00 00 cb 3ff8000000000000', /content type code/],
    ['a boolean', '96 03 00 a1 61 c4 00 00 c3', /content type must be a code or a string/],
    ['bytes', '96 03 00 a1 61 c4 00 00 c4 01 61', /content type must be a code or a string/],
    ['empty string', '96 03 00 a1 61 c4 00 00 a0', /content type is empty/],
    ['control character', '96 03 00 a1 61 c4 00 00 a2 610a', /control character/],
    ['256 characters', `96 03 00 a1 61 c4 00 00 da 0100 ${'61'.repeat(256)}`, /longer than 255/],
    ['an eighth field', '98 03 00 a1 61 c4 00 00 01 c0 c0', /takes 4\.\.6 fields/],
    ['will type as boolean', '93 05 01 94 a1 73 c4 01 00 c3 c3', /content type must be a code or a string/],
  ];
  for (const [what, h, message] of bad) assert.throws(() => decodeClientFrame(hex(h)), (e: unknown) => e instanceof DecodeError && message.test(e.message), what);
  assert.throws(() => decodeServerFrame(hex('96 12 a1 74 c4 01 2a 00 c0 09')), DecodeError);
  // 255 characters is the longest accepted.
  const long = 'x'.repeat(255);
  const f = decodeClientFrame(encodeFrame({ op: Op.publish, id: 1, topic: 'a', payload: new Uint8Array(), flags: 0, contentType: long }));
  assert.equal(f.op === Op.publish ? f.contentType : undefined, long);
});

test('request/reply field limits (PROTOCOL.md §9)', () => {
  const str = (t: string) => `${(0xa0 + t.length).toString(16)} ${Buffer.from(t).toString('hex')}`;
  const bad: [string, string, RegExp][] = [
    ['not a map', '97 03 00 a1 61 c4 00 00 c0 c3', /reply properties must be a map/],
    ['unknown key', `97 03 00 a1 61 c4 00 00 c0 81 ${str('x')} 01`, /unknown reply property "x"/],
    ['empty response topic', `97 03 00 a1 61 c4 00 00 c0 81 ${str('responseTopic')} a0`, /responseTopic must be a non-empty string/],
    ['response topic as bin', `97 03 00 a1 61 c4 00 00 c0 81 ${str('responseTopic')} c4 01 61`, /responseTopic must be a non-empty string/],
    ['correlation data as string', `97 03 00 a1 61 c4 00 00 c0 81 ${str('correlationData')} a1 61`, /correlationData must be bin of at most 65535 bytes/],
    ['correlation data too long', `97 03 00 a1 61 c4 00 00 c0 81 ${str('correlationData')} c6 00010000 ${'00'.repeat(65536)}`, /correlationData must be bin of at most 65535 bytes/],
  ];
  for (const [what, h, message] of bad) assert.throws(() => decodeClientFrame(hex(h)), (e: unknown) => e instanceof DecodeError && message.test(e.message), what);
  // An empty map is no properties; a broker's map may hold keys this client does not know (§7).
  assert.equal((decodeClientFrame(hex('97 03 00 a1 61 c4 00 00 c0 80')) as { reply?: unknown }).reply, undefined);
  assert.deepEqual(decodeServerFrame(hex(`97 12 a1 74 c4 00 00 c0 c0 82 ${str('later')} 01 ${str('responseTopic')} ${str('r')}`)), { op: Op.delivery, topic: 't', payload: new Uint8Array(0), flags: 0, reply: { responseTopic: 'r' } });
  // The largest correlation data round-trips.
  const big = new Uint8Array(65535).fill(7);
  const f = decodeClientFrame(encodeFrame({ op: Op.publish, id: 1, topic: 'a', payload: new Uint8Array(), flags: 0, reply: { correlationData: big } }));
  assert.deepEqual(f.op === Op.publish ? f.reply : undefined, { correlationData: big });
});

test('isRetryable: transient closes retry, policy and protocol errors do not', () => {
  for (const c of [CloseCode.goingAway, CloseCode.internalError, CloseCode.tryAgainLater, CloseCode.slowConsumer, 1006]) assert.equal(isRetryable(c), true, String(c));
  for (const c of [CloseCode.normal, CloseCode.protocolError, CloseCode.policyViolation, CloseCode.messageTooBig, CloseCode.notAuthorized]) assert.equal(isRetryable(c), false, String(c));
});

test('server frames tolerate appended fields (forward compatibility, PROTOCOL.md §7)', () => {
  assert.deepEqual(decodeServerFrame(hex('95 12 a1 74 c4 01 2a 01 c0')), { op: Op.delivery, topic: 't', payload: new Uint8Array([42]), flags: 1 });
  assert.throws(() => decodeServerFrame(hex('93 12 a1 74 c4 01 2a')), DecodeError, 'but not missing ones');
});
