/**
 * Fuzzing the native protocol against the real broker process (issue 2 "Bad input").
 *
 * Hundreds of connections each send a batch of frames: random valid requests,
 * valid frames with bytes flipped / truncated / extended / spliced, random
 * MessagePack values of wrong shapes, raw random bytes, hand-made nasties
 * (huge declared lengths, deep nesting, ext types, invalid UTF-8), text
 * messages and oversized messages; a few hundred raw sockets abuse the
 * WebSocket framing itself. The oracle is the wire contract's own decoder: a
 * batch with a malformed frame must end in ERROR badFrame + close 1002 right
 * there, a batch without one must be answered in full and keep the connection
 * open. Meanwhile an observer must receive every message of a steady publisher,
 * in order; afterwards the process is alive, /healthz answers and a fresh client
 * works. Seeded: FUZZ_SEED=<n> replays a run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import {
  CloseCode, DecodeError, ErrorCode, Op, decodeClientFrame, encodeFrame, encodeMsgpack,
  type ClientFrame, type MsgpackValue, type SubscribeOptions,
} from 'topicast/protocol';
import { startBroker } from '../helpers/broker.js';
import { bytes, isDelivery, NativeClient, scrapeMetrics, sleep, text, within } from '../helpers/native-client.js';

const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
const MIN_FRAMES = 10_000;
const WORKERS = 12;
const MAX_PAYLOAD = 4096;
/** uws.ts: maxPayloadLength = maxPayloadBytes + maxTopicBytes + 1024 (default maxTopicBytes 1024). */
const WS_LIMIT = MAX_PAYLOAD + 1024 + 1024;

// ---- seeded randomness (mulberry32) -----------------------------------------

let state = SEED >>> 0;
function rand(): number {
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const int = (n: number): number => Math.floor(rand() * n);
const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
const chance = (p: number): boolean => rand() < p;
function randomBytesSeeded(n: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = int(256);
  return b;
}

// ---- generators -------------------------------------------------------------

const LEVELS = ['a', 'b', 'fz', 'devices', 'x', '', '+', '#', '$SYS', '$x', 'é', '日本', '\u0000', ' ', 'a+b', 'c#', 'x'.repeat(300), '\ud800'];
function randomTopic(): string {
  const n = 1 + int(chance(0.05) ? 40 : 5);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(chance(0.7) ? pick(LEVELS.slice(0, 5)) : pick(LEVELS));
  return parts.join('/');
}

function randomId(): number {
  return pick([0, 1, int(1000), 0xffffffff, int(2 ** 32)]);
}

function validFrame(): ClientFrame {
  switch (int(6)) {
    case 0:
      return { op: Op.subscribe, id: randomId(), filters: Array.from({ length: 1 + int(3) }, randomTopic), options: randomSubscribeOptions() };
    case 1:
      return { op: Op.unsubscribe, id: randomId(), filters: Array.from({ length: 1 + int(3) }, randomTopic) };
    case 2:
    case 3:
      return { op: Op.publish, id: randomId(), topic: randomTopic(), payload: randomBytesSeeded(chance(0.05) ? int(MAX_PAYLOAD + 500) : int(64)), flags: chance(0.8) ? int(2) : int(256) };
    case 4:
      return { op: Op.ping, id: randomId() };
    default:
      return { op: Op.will, id: randomId(), will: chance(0.2) ? null : { topic: randomTopic(), payload: randomBytesSeeded(int(32)), retain: chance(0.5) } };
  }
}

/** Subscribe options, resume positions included (PROTOCOL.md §4.6): valid epochs of 1..64 chars, offsets up to 2^53-1. */
function randomSubscribeOptions(): SubscribeOptions {
  const options: SubscribeOptions = {};
  if (chance(0.4)) options.retained = chance(0.5);
  if (chance(0.4)) {
    const epoch = chance(0.5) ? randomEpoch() : pick(['x', 'e'.repeat(64), '日本', randomTopic().slice(0, 64) || 'y']);
    options.resume = { epoch, offset: pick([0, 1, int(1000), 2 ** 32, Number.MAX_SAFE_INTEGER, int(2 ** 31)]) };
  }
  return options;
}

function randomEpoch(): string {
  return Array.from({ length: 1 + int(64) }, () => String.fromCharCode(0x21 + int(0x5d))).join('');
}

function randomValue(depth = 0): MsgpackValue {
  const k = int(depth > 3 ? 7 : 9);
  switch (k) {
    case 0: return null;
    case 1: return chance(0.5);
    case 2: return pick([0, 1, -1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1, -(2 ** 31), -(2 ** 53) + 1, int(100)]);
    case 3: return pick([0.5, -1.25, 1e300, Number.MIN_VALUE, 3.14]);
    case 4: return chance(0.5) ? randomTopic() : String.fromCharCode(...Array.from({ length: int(20) }, () => int(0x3000)));
    case 5: return randomBytesSeeded(int(40));
    case 6: return pick([1, 2, 3, 4, 5, 16, 17, 18, 0, 99]);
    case 7: return Array.from({ length: int(6) }, () => randomValue(depth + 1));
    default: {
      const m: { [key: string]: MsgpackValue } = {};
      for (let i = int(4); i > 0; i--) m[pick(['retained', 'resume', 'topic', 'x', '', 'constructor', 'toString'])] = chance(0.2) ? [randomValue(depth + 1), randomValue(depth + 1)] : randomValue(depth + 1);
      return m;
    }
  }
}

/** Random values shaped like frames: a known op code followed by wrong or missing fields. */
function wrongShape(): Uint8Array {
  const op = pick([1, 2, 3, 4, 5, 16, 18, 21, 0, -1, 6, 255, 1.5]);
  const fields = Array.from({ length: int(6) }, () => randomValue(1));
  return encodeMsgpack([op, ...fields]);
}

function mutate(frame: Uint8Array): Uint8Array {
  const b = Uint8Array.from(frame);
  switch (int(8)) {
    case 0: { // flip 1-3 bits
      for (let i = 1 + int(3); i > 0 && b.length > 0; i--) b[int(b.length)]! ^= 1 << int(8);
      return b;
    }
    case 1: return b.subarray(0, int(b.length)); // truncate (possibly to nothing)
    case 2: return concat(b, randomBytesSeeded(1 + int(8))); // extend
    case 3: { // replace a byte
      if (b.length > 0) b[int(b.length)] = int(256);
      return b;
    }
    case 4: { // insert a byte
      const i = int(b.length + 1);
      return concat(b.subarray(0, i), Uint8Array.of(int(256)), b.subarray(i));
    }
    case 5: { // delete a byte
      const i = int(Math.max(1, b.length));
      return concat(b.subarray(0, i), b.subarray(i + 1));
    }
    case 6: return concat(b, b); // two frames in one message
    default: { // splice the head of one frame onto another's tail
      const other = encodeFrame(validFrame());
      return concat(b.subarray(0, int(b.length + 1)), other.subarray(int(other.length + 1)));
    }
  }
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** `[1, 1, ["#"], {resume: <value>}]` */
function resumeWith(...value: number[]): Uint8Array {
  return Uint8Array.of(0x94, 0x01, 0x01, 0x91, 0xa1, 0x23, 0x81, 0xa6, ...bytes('resume'), ...value);
}

/** Hand-made inputs aimed at decoder limits. */
const NASTIES: Uint8Array[] = [
  new Uint8Array(0),
  Uint8Array.of(0xc1), // never used
  Uint8Array.of(0xdd, 0xff, 0xff, 0xff, 0xff), // array32 of 4 billion
  Uint8Array.of(0x92, 0x03, 0xdb, 0x7f, 0xff, 0xff, 0xff), // str32 of 2 GiB
  Uint8Array.of(0x95, 0x03, 0x01, 0xa1, 0x61, 0xc6, 0xff, 0xff, 0xff, 0xff, 0x00), // bin32 of 4 GiB
  Uint8Array.of(0xdf, 0xff, 0xff, 0xff, 0xff), // map32 of 4 billion
  new Uint8Array(5000).fill(0x91), // 5000 nested arrays
  concat(new Uint8Array(9).fill(0x91), Uint8Array.of(0x04)), // nested 9 deep
  Uint8Array.of(0x92, 0x04, 0xd4, 0x01, 0x02), // fixext1 as id
  Uint8Array.of(0x92, 0x04, 0xc7, 0x00, 0x05), // ext8
  Uint8Array.of(0x92, 0x04, 0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff), // uint64 max
  Uint8Array.of(0x92, 0x04, 0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0), // int64 min
  Uint8Array.of(0x92, 0x04, 0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0), // NaN id
  Uint8Array.of(0x92, 0x04, 0xff), // negative fixint id
  Uint8Array.of(0x95, 0x03, 0x01, 0xa2, 0xc3, 0x28, 0xc4, 0x00, 0x00), // invalid UTF-8 topic
  Uint8Array.of(0x95, 0x03, 0x01, 0xa2, 0xed, 0xa0, 0xc4, 0x00, 0x00), // surrogate in UTF-8
  Uint8Array.of(0x94, 0x01, 0x01, 0x91, 0xa1, 0x23, 0x81, 0xa9, ...bytes('__proto__'), 0xc3), // __proto__ key
  Uint8Array.of(0x94, 0x01, 0x01, 0x91, 0xa1, 0x23, 0x81, 0x01, 0xc3), // integer map key
  Uint8Array.of(0x94, 0x01, 0x01, 0x91, 0xa1, 0x23, 0x81, 0xa8, ...bytes('retained'), 0x01), // retained: 1
  resumeWith(0x92, 0xa1, 0x65, 0xff), // resume offset -1
  resumeWith(0x92, 0xa1, 0x65, 0xcb, 0x43, 0x40, 0, 0, 0, 0, 0, 0), // resume offset 2^53 as a float
  resumeWith(0x92, 0xa1, 0x65, 0xcf, 0, 0x20, 0, 0, 0, 0, 0, 0), // resume offset 2^53 as uint64
  resumeWith(0x92, 0xa1, 0x65, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0), // resume offset 1.5
  resumeWith(0x92, 0xa0, 0x01), // empty epoch
  resumeWith(0x92, 0xd9, 65, ...new Uint8Array(65).fill(0x65), 0x01), // epoch of 65 chars
  resumeWith(0x92, 0x01, 0x01), // epoch as a number
  resumeWith(0x91, 0xa1, 0x65), // resume without its offset
  resumeWith(0x93, 0xa1, 0x65, 0x01, 0x01), // resume with an extra element
  resumeWith(0xc0), // resume: nil
  Uint8Array.of(0x94, 0x01, 0x01, 0x91, 0xa1, 0x23, 0x81, 0xa5, ...bytes('since'), 0x01), // unknown subscribe option
  Uint8Array.of(0x93, 0x05, 0x01, 0x93, 0xa1, 0x61, 0xc4, 0x00, 0x01), // will retain not boolean
  Uint8Array.of(0x93, 0x02, 0x01, 0x90), // unsubscribe with no filters
  Uint8Array.of(0x94, 0x01, 0x01, 0x90, 0x80), // subscribe with no filters
  Uint8Array.of(0x92, 0x04, 0x01, 0xc0), // trailing byte
  Uint8Array.of(0x91), // array missing its element
  Uint8Array.of(0x90), // empty array
  Uint8Array.of(0x81, 0xa1, 0x61, 0x01), // a map, not an array
  Uint8Array.of(0xa4, 0x70, 0x69, 0x6e, 0x67), // a string
];

interface Batch {
  messages: (Uint8Array | string)[];
  /** Index of the first message the broker must reject, or -1. */
  firstBad: number;
  /** The first bad one is beyond the WebSocket limit (dropped by uWS, not decoded). */
  oversize: boolean;
}

/** Classifies with the wire contract's own decoder: what the broker must do. */
function classify(messages: (Uint8Array | string)[], decoderThrew: string[]): Batch {
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i]!;
    const raw = typeof m === 'string' ? bytes(m) : m;
    if (raw.length > WS_LIMIT) return { messages, firstBad: i, oversize: true };
    if (typeof m === 'string') return { messages, firstBad: i, oversize: false }; // text is malformed (PROTOCOL.md §1)
    try {
      decodeClientFrame(raw);
    } catch (err) {
      if (!(err instanceof DecodeError)) decoderThrew.push(`${(err as Error).name}: ${(err as Error).message} on ${Buffer.from(raw.subarray(0, 32)).toString('hex')}`);
      return { messages, firstBad: i, oversize: false };
    }
  }
  return { messages, firstBad: -1, oversize: false };
}

function makeBatch(): (Uint8Array | string)[] {
  const out: (Uint8Array | string)[] = [];
  const valid = int(chance(0.2) ? 60 : 16);
  for (let i = 0; i < valid; i++) out.push(encodeFrame(validFrame()));
  const tail = int(10);
  const bad = (): Uint8Array | string => {
    switch (tail) {
      case 0:
      case 1:
      case 2:
        return mutate(encodeFrame(validFrame()));
      case 3:
      case 4:
        return wrongShape();
      case 5:
        return encodeMsgpack(randomValue());
      case 6:
        return randomBytesSeeded(int(64));
      case 7:
        return pick(NASTIES);
      case 8:
        return chance(0.7) ? pick(['hello', '[4,1]', '\u0092\u0004\u0001', '']) : randomBytesSeeded(WS_LIMIT + 1 + int(4000));
      default:
        return encodeFrame(validFrame()); // no bad frame at all
    }
  };
  // A burst of candidates: the broker stops at the first bad one; the rest are sent anyway.
  for (let i = 1 + int(chance(0.3) ? 20 : 3); i > 0; i--) out.push(bad());
  return out;
}

// ---- raw WebSocket-level abuse --------------------------------------------------

function wsFrame(opcode: number, payload: Uint8Array, opts: { fin?: boolean; rsv?: number; mask?: boolean; len64?: bigint } = {}): Uint8Array {
  const fin = opts.fin ?? true;
  const mask = opts.mask ?? true;
  const head: number[] = [(fin ? 0x80 : 0) | ((opts.rsv ?? 0) << 4) | opcode];
  const m = mask ? 0x80 : 0;
  if (opts.len64 !== undefined) {
    head.push(m | 127);
    for (let i = 7; i >= 0; i--) head.push(Number((opts.len64 >> BigInt(i * 8)) & 0xffn));
  } else if (payload.length < 126) head.push(m | payload.length);
  else if (payload.length < 65536) head.push(m | 126, payload.length >> 8, payload.length & 0xff);
  else {
    head.push(m | 127, 0, 0, 0, 0);
    for (let i = 3; i >= 0; i--) head.push((payload.length >>> (i * 8)) & 0xff);
  }
  const key = mask ? randomBytesSeeded(4) : new Uint8Array(0);
  const body = Uint8Array.from(payload);
  if (mask) for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return concat(Uint8Array.from(head), key, body);
}

function wsAbuse(): Uint8Array {
  const ping = encodeFrame({ op: Op.ping, id: 1 });
  switch (int(12)) {
    case 0: return wsFrame(0x2, ping, { rsv: 1 + int(7) }); // reserved bits
    case 1: return wsFrame(pick([0x3, 0x4, 0x5, 0xb, 0xf]), ping); // reserved opcodes
    case 2: return wsFrame(0x0, ping); // continuation without a start
    case 3: return concat(wsFrame(0x2, ping.subarray(0, 1), { fin: false }), wsFrame(0x2, ping.subarray(1))); // new message inside a fragmented one
    case 4: return concat(wsFrame(0x2, ping.subarray(0, 1), { fin: false }), wsFrame(0x9, randomBytesSeeded(10)), wsFrame(0x0, ping.subarray(1))); // valid: ping between fragments
    case 5: return wsFrame(0x2, ping, { mask: false }); // unmasked client frame
    case 6: return wsFrame(0x9, randomBytesSeeded(126), {}); // control frame too long
    case 7: return wsFrame(0x8, concat(Uint8Array.of(0x03, 0xe7), randomBytesSeeded(4))); // close 999 with junk reason
    case 8: return wsFrame(0x8, Uint8Array.of(0x03)); // close with a 1-byte body
    case 9: return wsFrame(0x2, new Uint8Array(0), { len64: 0x7fffffffffffffffn }); // 2^63 length
    case 10: return wsFrame(0x1, Uint8Array.of(0xff, 0xfe)); // text, invalid UTF-8
    default: return randomBytesSeeded(1 + int(64)); // garbage instead of a frame
  }
}

/** Upgrades by hand, writes `chunks`, waits for the server to close or 0.5 s, then destroys. */
function rawSession(port: number, chunks: Uint8Array[]): Promise<void> {
  return new Promise((resolve) => {
    const s = netConnect(port, '127.0.0.1');
    const key = randomBytes(16).toString('base64');
    let upgraded = false;
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => s.destroy(), 500);
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
    s.on('data', (d: Buffer) => {
      if (upgraded) return;
      buf = Buffer.concat([buf, d]);
      if (buf.indexOf('\r\n\r\n') < 0) return;
      upgraded = true;
      if (!buf.toString('latin1').startsWith('HTTP/1.1 101')) return void s.destroy();
      for (const c of chunks) s.write(c);
    });
    s.write(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: topicast.v1\r\n\r\n`);
  });
}

// ---- the test -------------------------------------------------------------------

test(`fuzz: ≥${MIN_FRAMES} random and mutated frames; the broker answers each batch by the contract, keeps serving others, stays alive (seed ${SEED})`, async (t) => {
  t.diagnostic(`FUZZ_SEED=${SEED}`);
  const broker = await startBroker({ args: ['--max-payload-bytes', String(MAX_PAYLOAD), '--max-publishes-per-sec', '0', '--sys-interval-sec', '0'], mqttOff: true });
  const metrics0 = await scrapeMetrics(broker.httpUrl);

  // The bystanders: a steady publisher and an observer connected throughout.
  const seen: number[] = [];
  const observer = await NativeClient.connect(broker.url, { record: false, onFrame: (f) => f.op === Op.delivery && f.topic === 'watch/seq' && seen.push(Number(text(f.payload))) });
  const sid = observer.id();
  observer.send({ op: Op.subscribe, id: sid, filters: ['watch/#'], options: {} });
  await observer.expect((f) => f.op === Op.snapshotEnd && f.id === sid);
  const steady = await NativeClient.connect(broker.url);
  let published = 0;
  let stopSteady = false;
  const steadyLoop = (async () => {
    while (!stopSteady) {
      await steady.publish('watch/seq', bytes(String(published++)), { ack: false });
      await sleep(5);
    }
  })();

  const decoderThrew: string[] = [];
  const violations: string[] = [];
  let framesSent = 0;
  let framesProcessed = 0;
  let connections = 0;
  let malformedBatches = 0;
  let openBatches = 0;
  const started = Date.now();

  const worker = async (): Promise<void> => {
    while (framesProcessed < MIN_FRAMES && Date.now() - started < 40_000) {
      const batch = classify(makeBatch(), decoderThrew);
      connections++;
      let c: NativeClient;
      try {
        c = await NativeClient.connect(broker.url, { record: true });
      } catch (err) {
        violations.push(`connect failed: ${(err as Error).message}`);
        return;
      }
      const pingId = 0x7fff0000 + (connections & 0xffff);
      for (const m of batch.messages) c.ws.send(m, { binary: typeof m !== 'string' });
      c.send({ op: Op.ping, id: pingId });
      framesSent += batch.messages.length + 1;
      framesProcessed += batch.firstBad < 0 ? batch.messages.length + 1 : batch.firstBad + 1;
      const outcome = await within(
        Promise.race([
          c.closed.then((info) => ({ closed: info })),
          // Rejected at once when the connection closes: then the close above has already won.
          c.expect((f) => f.op === Op.pong && f.id === pingId, 5000).then(() => ({ closed: undefined }), () => c.closed.then((info) => ({ closed: info }))),
        ]),
        5000,
      );
      const label = `batch of ${batch.messages.length}, first bad ${batch.firstBad}${batch.oversize ? ' (oversize)' : ''}`;
      if (!outcome) {
        violations.push(`${label}: neither PONG nor close within 5 s`);
      } else if (batch.firstBad < 0) {
        openBatches++;
        if (outcome.closed) violations.push(`${label}: valid batch but closed with ${JSON.stringify(outcome.closed)}; last frames ${JSON.stringify(c.frames.slice(-2))}`);
      } else if (batch.oversize) {
        if (!outcome.closed) violations.push(`${label}: oversize message accepted`);
      } else {
        malformedBatches++;
        if (!outcome.closed) violations.push(`${label}: malformed frame accepted: ${hex(batch.messages[batch.firstBad]!)}`);
        else {
          if (outcome.closed.code !== CloseCode.protocolError) violations.push(`${label}: closed with ${outcome.closed.code}, not 1002, for ${hex(batch.messages[batch.firstBad]!)}`);
          const err = c.frames.find((f) => f.op === Op.error && f.code === ErrorCode.badFrame && f.id === 0);
          if (!err) violations.push(`${label}: no ERROR badFrame before the close`);
        }
      }
      if (c.undecodable.length > 0) violations.push(`${label}: the broker sent ${c.undecodable.length} undecodable frames`);
      c.terminate();
      if (violations.length > 20) return;
    }
  };
  let rawMs = 0;
  let rawSessions = 0;
  const rawWorker = async (): Promise<void> => {
    for (let i = 0; i < 50; i++) {
      await rawSession(broker.port, Array.from({ length: 1 + int(3) }, wsAbuse));
      rawSessions++;
    }
    rawMs = Math.max(rawMs, Date.now() - started);
  };
  let framesMs = 0;
  await Promise.all([
    Promise.all(Array.from({ length: WORKERS }, worker)).then(() => (framesMs = Date.now() - started)),
    ...Array.from({ length: 4 }, rawWorker),
  ]);
  const fuzzMs = Date.now() - started;

  stopSteady = true;
  await steadyLoop;
  await steady.ping();
  const deadline = Date.now() + 5000;
  while (seen.length < published && Date.now() < deadline) await sleep(10);

  t.diagnostic(`${connections} connections, ${framesSent} frames sent, ${framesProcessed} processed by the broker (${malformedBatches} malformed batches, ${openBatches} all-valid), ${rawSessions} raw WebSocket abuse sessions; frames ${framesMs} ms, raw ${rawMs} ms, total ${fuzzMs} ms`);
  t.diagnostic(`observer received ${seen.length}/${published} steady messages`);

  // The process is alive and healthy.
  assert.equal(broker.proc.exitCode, null, `broker exited: ${broker.logs.slice(-5).join('\n')}`);
  assert.equal(broker.proc.signalCode, null);
  const health = await fetch(`${broker.httpUrl}/healthz`);
  assert.equal(health.status, 200);
  // A fresh client works end to end.
  const fresh = await NativeClient.connect(broker.url);
  const other = await NativeClient.connect(broker.url);
  await fresh.subscribe(['after/fuzz']);
  await other.publish('after/fuzz', bytes('ok'));
  assert.equal(text((await fresh.expect(isDelivery('after/fuzz'))).payload), 'ok');
  // The bystanders saw nothing of it.
  assert.ok(observer.isOpen && steady.isOpen, 'the observer and the steady publisher stayed connected');
  assert.ok(published > 20, `the steady publisher kept publishing (${published})`);
  assert.deepEqual(seen, Array.from({ length: published }, (_, i) => i), 'the observer received every steady message, in order');
  // The contract held for every batch.
  assert.deepEqual(decoderThrew, [], 'decoders throw only DecodeError');
  assert.deepEqual(violations, []);
  assert.ok(framesProcessed >= MIN_FRAMES, `at least ${MIN_FRAMES} frames processed by the broker (${framesProcessed})`);
  const metrics1 = await scrapeMetrics(broker.httpUrl);
  const malformed = (metrics1.get('topicast_malformed_total') ?? 0) - (metrics0.get('topicast_malformed_total') ?? 0);
  assert.ok(malformed >= malformedBatches, `topicast_malformed_total counted ${malformed} for ${malformedBatches} malformed batches`);
  const handlerFailures = broker.logs.filter((l) => l.includes('connection handler failed') || l.includes('uncaught'));
  assert.deepEqual(handlerFailures, [], 'no handler threw');
  await Promise.all([fresh.close(), other.close(), observer.close(), steady.close()]);
});

function hex(m: Uint8Array | string): string {
  return typeof m === 'string' ? `text ${JSON.stringify(m.slice(0, 40))}` : Buffer.from(m.subarray(0, 48)).toString('hex') + (m.length > 48 ? `… (${m.length} bytes)` : '');
}
