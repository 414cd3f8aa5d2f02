/**
 * Fuzzing the other direction of the wire contract: frames from the broker, as the SDK decodes
 * them, with the history and drain fields (PROTOCOL.md §4.6, §4.7). No broker process: the oracle
 * is the contract itself.
 *
 * - Every valid server frame survives encode → decode unchanged.
 * - Any input (mutated valid frames, frame-shaped values of wrong types, random bytes) either
 *   throws `DecodeError` or decodes to a frame within the limits (offsets safe integers ≥ 0,
 *   epochs of 1..64 chars, flags a byte, a drain delay ≥ 0) that re-encodes to the same frame.
 * - A client fed such input never throws: a malformed frame ends the connection with 1002 and a
 *   badFrame error, anything well-formed (ACKs for unknown ids, stray offsets, DRAIN) keeps it open.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { connect, ErrorCode, type TopicastError } from 'topicast';
import {
  DecodeError, Op, decodeServerFrame, encodeAnyFrame as encodeFrame, encodeMsgpack, type MsgpackValue, type ServerFrame, type SubscribeResult,
} from 'topicast/protocol';
import { FakeNet, flush } from '../unit/sdk/fake-transport.js';

const id = fc.integer({ min: 0, max: 0xffffffff });
const offset = fc.oneof(fc.constantFrom(0, 1, 2 ** 32, Number.MAX_SAFE_INTEGER), fc.integer({ min: 0, max: 2 ** 31 }), fc.maxSafeNat());
const epoch = fc.string({ minLength: 1, maxLength: 64 });
const bytes = fc.uint8Array({ maxLength: 48 });
const topic = fc.string({ minLength: 1, maxLength: 40 });

const subscribeResult: fc.Arbitrary<SubscribeResult> = fc
  .record(
    { retained: fc.nat(), replayed: fc.nat(), epoch, offset, recovered: fc.boolean(), history: fc.nat(), historyComplete: fc.boolean() },
    { requiredKeys: ['retained'], noNullPrototype: true },
  );

const serverFrame: fc.Arbitrary<ServerFrame> = fc.oneof(
  fc.record({ op: fc.constant(Op.ack), id, result: fc.option(subscribeResult, { nil: null }) }, { noNullPrototype: true }),
  fc.record({ op: fc.constant(Op.error), id, code: fc.integer({ min: 1, max: 20 }), message: fc.string({ maxLength: 40 }) }, { noNullPrototype: true }),
  fc.record({ op: fc.constant(Op.delivery), topic, payload: bytes, flags: fc.integer({ min: 0, max: 255 }) }, { noNullPrototype: true }),
  fc.record({ op: fc.constant(Op.delivery), topic, payload: bytes, flags: fc.integer({ min: 0, max: 3 }), offset }, { noNullPrototype: true }),
  fc.record({ op: fc.constant(Op.snapshotEnd), id }, { noNullPrototype: true }),
  fc.record({ op: fc.constant(Op.pong), id }, { noNullPrototype: true }),
  fc.record({ op: fc.constant(Op.drain), info: fc.record({ reconnectAfterMs: offset }, { noNullPrototype: true }) }, { noNullPrototype: true }),
  fc.record({ op: fc.constant(Op.historyMessage), id, topic, payload: bytes, offset, ts: fc.oneof(offset, fc.double({ noNaN: true }).filter((x) => !Object.is(x, -0))) }, { noNullPrototype: true }),
  fc.record({
    op: fc.constant(Op.historyEnd), id,
    info: fc.record({ count: offset, complete: fc.boolean(), more: fc.boolean(), epoch, offset }, { noNullPrototype: true }),
  }, { noNullPrototype: true }),
);

/** MessagePack values of the accepted subset, with the keys of history and drain maps over-represented. */
const { value } = fc.letrec<{ value: MsgpackValue }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constant(null),
    fc.boolean(),
    fc.integer({ min: -(2 ** 31), max: 2 ** 32 }),
    fc.constantFrom(-1, 0.5, 1e300, 2 ** 53 - 1, -(2 ** 53) + 1, 2 ** 60),
    fc.string({ maxLength: 70 }),
    bytes,
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(fc.constantFrom('retained', 'replayed', 'epoch', 'offset', 'recovered', 'reconnectAfterMs', 'count', 'complete', 'more', 'history', 'historyComplete', 'x'), tie('value'), { maxKeys: 5, noNullPrototype: true }),
  ),
}));

/** A known op followed by fields of any shape. */
const frameShaped = fc
  .tuple(fc.constantFrom(Op.ack, Op.delivery, Op.drain, Op.error, Op.snapshotEnd, Op.pong, Op.welcome, Op.historyMessage, Op.historyEnd, 25, 0), fc.array(value, { maxLength: 6 }))
  .map(([op, fields]) => encodeMsgpack([op, ...fields]));

/** A valid frame, then bits flipped, bytes replaced, cut or appended. */
const mutated = fc
  .tuple(serverFrame, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), fc.constantFrom('replace', 'truncate', 'append'))
  .map(([frame, edits, how]) => {
    const b = Uint8Array.from(encodeFrame(frame));
    if (how === 'truncate') return b.subarray(0, edits[0]![0] % b.length);
    if (how === 'append') return Uint8Array.from([...b, ...edits.map(([, v]) => v)]);
    for (const [at, v] of edits) b[at % b.length] = v;
    return b;
  });

const anyInput = fc.oneof(mutated, frameShaped, fc.uint8Array({ maxLength: 64 }), serverFrame.map((f) => encodeFrame(f)));

/** The contract's limits on a decoded frame. */
function withinLimits(f: ServerFrame): void {
  const safe = (n: number | undefined, what: string): void => {
    if (n !== undefined) assert.ok(Number.isSafeInteger(n) && n >= 0, `${what} ${n}`);
  };
  switch (f.op) {
    case Op.delivery:
      assert.ok(Number.isInteger(f.flags) && f.flags >= 0 && f.flags <= 255, `flags ${f.flags}`);
      safe(f.offset, 'delivery offset');
      return;
    case Op.ack:
      if (f.result) {
        safe(f.result.offset, 'ack offset');
        if (f.result.epoch !== undefined) assert.ok(f.result.epoch.length >= 1 && f.result.epoch.length <= 64, `epoch ${JSON.stringify(f.result.epoch)}`);
        if (f.result.recovered !== undefined) assert.equal(typeof f.result.recovered, 'boolean');
      }
      return;
    case Op.drain:
      safe(f.info.reconnectAfterMs, 'reconnectAfterMs');
      return;
    case Op.historyMessage:
      safe(f.offset, 'history offset');
      assert.equal(typeof f.ts, 'number');
      return;
    case Op.historyEnd:
      safe(f.info.count, 'history count');
      safe(f.info.offset, 'history offset');
      assert.ok(f.info.epoch.length >= 1 && f.info.epoch.length <= 64);
      return;
    default:
      return;
  }
}

test('fuzz: every valid server frame survives encode → decode', () => {
  fc.assert(
    fc.property(serverFrame, (f) => {
      assert.deepEqual(decodeServerFrame(encodeFrame(f)), f);
    }),
    { numRuns: 5000 },
  );
});

test('fuzz: any input decodes within the limits, to a fixpoint, or throws DecodeError only', () => {
  let decoded = 0;
  let refused = 0;
  fc.assert(
    fc.property(anyInput, (input) => {
      let f: ServerFrame;
      try {
        f = decodeServerFrame(input);
      } catch (err) {
        assert.ok(err instanceof DecodeError, `${(err as Error).name}: ${(err as Error).message}`);
        refused++;
        return;
      }
      decoded++;
      withinLimits(f);
      if (f.op !== Op.welcome) assert.deepEqual(decodeServerFrame(encodeFrame(f)), f);
    }),
    { numRuns: 20_000 },
  );
  // Both outcomes must be exercised, or the generators have drifted.
  assert.ok(decoded > 1000 && refused > 1000, `decoded ${decoded}, refused ${refused}`);
});

test('fuzz: a client fed any server input never throws; malformed frames close with 1002, well-formed ones keep it open', async () => {
  const inputs = fc.sample(anyInput, { numRuns: 600, seed: 42 });
  let kept = 0;
  let closed = 0;
  for (const input of inputs) {
    const net = new FakeNet();
    const p = connect('ws://fake/ws', { transport: net.transport, codec: 'raw' });
    await flush();
    net.last.accept();
    net.last.auto = true;
    const client = await p;
    const errors: TopicastError[] = [];
    client.on('error', (e) => errors.push(e));
    await client.subscribe('#', () => {});
    let malformed = false;
    try {
      decodeServerFrame(input);
    } catch {
      malformed = true;
    }
    net.last.pushBytes(input);
    await flush();
    if (malformed) {
      closed++;
      assert.equal(client.state, 'closed', 'a malformed frame ends the client (1002 is not retried)');
      assert.equal(net.last.closedWith?.code, 1002);
      assert.ok(errors.some((e) => e.code === ErrorCode.badFrame), 'a badFrame error is reported');
    } else {
      kept++;
      assert.notEqual(client.state, 'closed', `well-formed input ${Buffer.from(input).toString('hex')} kept the client`);
    }
    await client.close();
  }
  assert.ok(kept > 50 && closed > 50, `kept ${kept}, closed ${closed}`);
});
