import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createOutboxStats, Flusher, Outbox, type OutboxLimits, type Connection, type SendResult } from '@topicast/broker';

/** A transport whose buffer only empties when the test says so. */
class FakeConn implements Connection {
  readonly remoteAddress = 'test';
  buffered = 0;
  sent: string[] = [];
  writes = 0;
  closed: { code: number; reason: string } | undefined;
  private corked = false;
  send(bytes: Uint8Array): SendResult {
    this.sent.push(new TextDecoder().decode(bytes));
    this.buffered += bytes.length;
    if (!this.corked) this.writes++;
    return 1;
  }
  bufferedBytes(): number {
    return this.buffered;
  }
  cork(fn: () => void): void {
    this.corked = true;
    fn();
    this.corked = false;
    this.writes++;
  }
  close(code: number, reason: string): void {
    this.closed = { code, reason };
  }
  drain(): void {
    this.buffered = 0;
  }
}

function setup(limits: Partial<OutboxLimits> = {}) {
  const queue: (() => void)[] = [];
  const flusher = new Flusher((fn) => queue.push(fn));
  const stats = createOutboxStats();
  const conn = new FakeConn();
  const outbox = new Outbox(conn, { maxBufferedBytes: 10, policy: 'drop', snapshotWindowBytes: 4, maxConflatedTopics: 100, ...limits }, stats, flusher);
  const tick = (): void => {
    while (queue.length) queue.shift()!();
  };
  return { outbox, conn, stats, tick };
}

const b = (s: string): Uint8Array => new TextEncoder().encode(s);
// Every policy and ordering test runs for both ways a delivery is queued: `pushData` (a frame
// reference per delivery: MQTT, SSE) and `pushLive` (a run of the Flusher's log: native WS).
for (const push of ['pushData', 'pushLive'] as const) {
  test(`${push}: a burst is written once per tick, corked, in order`, () => {
    const { outbox, conn, tick } = setup({ maxBufferedBytes: 1000 });
    for (const s of ['a', 'b', 'c']) outbox[push](b(s), 't');
    assert.deepEqual(conn.sent, [], 'nothing is written before the tick');
    tick();
    assert.deepEqual(conn.sent, ['a', 'b', 'c']);
    assert.equal(conn.writes, 1);
  });

  test(`${push}: drop: newest deliveries are dropped and counted once over the limit`, () => {
    const { outbox, conn, stats, tick } = setup({ policy: 'drop' });
    for (const s of ['11111', '22222', '33333']) outbox[push](b(s), 't');
    tick();
    assert.deepEqual(conn.sent, ['11111', '22222']);
    assert.equal(stats.dropped, 1);
  });

  test(`${push}: conflate: keeps the latest per topic while backed up, flushes on drain, never older after newer`, () => {
    const { outbox, conn, stats, tick } = setup({ policy: 'conflate' });
    outbox[push](b('a1xxxxxxx'), 'a');
    tick();
    outbox[push](b('a2xx'), 'a'); // over the limit now: conflated
    outbox[push](b('b1xx'), 'b');
    outbox[push](b('a3xx'), 'a');
    tick();
    assert.deepEqual(conn.sent, ['a1xxxxxxx']);
    conn.drain();
    outbox[push](b('b2'), 'b'); // still conflating: goes to the map, replaces b1
    outbox.flush();
    assert.deepEqual(conn.sent, ['a1xxxxxxx', 'a3xx', 'b2']);
    assert.equal(stats.conflated, 2);
  });

  test(`${push}: disconnect: closes with slow consumer and counts it`, () => {
    const { outbox, conn, stats, tick } = setup({ policy: 'disconnect' });
    outbox[push](b('123456789'), 't');
    tick();
    outbox[push](b('123'), 't');
    assert.equal(conn.closed?.code, 4008);
    assert.equal(stats.slowConsumerDisconnects, 1);
    outbox[push](b('x'), 't');
    tick();
    assert.equal(conn.sent.length, 1, 'nothing is sent after the close');
  });

  test(`${push}: control frames pass the policy but not twice the limit`, () => {
    const { outbox, conn, tick } = setup({ policy: 'drop' });
    outbox[push](b('123456789'), 't');
    tick();
    outbox.pushControl(b('ack'));
    tick();
    assert.deepEqual(conn.sent, ['123456789', 'ack']);
    conn.buffered = 25;
    outbox.pushControl(b('ack2'));
    assert.equal(conn.closed?.code, 4008);
  });

  test(`${push}: a snapshot source is paced by the window, resumes on drain, and keeps later frames behind it`, () => {
    const { outbox, conn, tick } = setup({ maxBufferedBytes: 1000, snapshotWindowBytes: 4 });
    const frames = ['r1', 'r2', 'r3', 'r4', 'r5'];
    outbox.pushControl(b('ack'));
    outbox.pushSource({ next: () => (frames.length ? b(frames.shift()!) : undefined) });
    outbox.pushControl(b('end'));
    outbox[push](b('live'), 't');
    tick();
    assert.deepEqual(conn.sent, ['ack', 'r1']);
    conn.drain();
    outbox.flush();
    assert.deepEqual(conn.sent, ['ack', 'r1', 'r2', 'r3']);
    for (let i = 0; i < 3; i++) {
      conn.drain();
      outbox.flush();
    }
    assert.deepEqual(conn.sent, ['ack', 'r1', 'r2', 'r3', 'r4', 'r5', 'end', 'live']);
  });

  test(`${push}: two snapshot sources in one queue, with frames between and behind them, each paced and kept in order`, () => {
    const { outbox, conn, tick } = setup({ maxBufferedBytes: 1000, snapshotWindowBytes: 4 });
    const source = (names: string[]) => ({ next: () => (names.length ? b(names.shift()!) : undefined) });
    outbox.pushControl(b('ack1'));
    outbox.pushSource(source(['a1', 'a2']));
    outbox[push](b('x'), 't');
    outbox.pushSource(source(['b1']));
    outbox.pushControl(b('end'));
    tick();
    for (let i = 0; i < 5; i++) {
      conn.drain();
      outbox.flush();
    }
    assert.deepEqual(conn.sent, ['ack1', 'a1', 'a2', 'x', 'b1', 'end']);
    // Later traffic (queue made again after a control-only queue was released) still flows in order.
    outbox.pushControl(b('pong'));
    outbox[push](b('y'), 't');
    tick();
    outbox[push](b('z'), 't');
    tick();
    assert.deepEqual(conn.sent.slice(6), ['pong', 'y', 'z']);
  });

  test(`${push}: conflate: a connection backed up before anything was queued flushes its map on drain`, () => {
    const { outbox, conn, stats } = setup({ policy: 'conflate' });
    conn.buffered = 50; // e.g. a snapshot filled the transport
    assert.equal(outbox.pendingBytes(), 50); // the outbox has seen it (it reads the transport near its limit)
    outbox[push](b('v1'), 'a');
    outbox[push](b('v2'), 'a');
    assert.deepEqual(conn.sent, []);
    conn.drain();
    outbox.flush();
    assert.deepEqual(conn.sent, ['v2']);
    assert.equal(stats.conflated, 1);
  });

  test(`${push}: conflate is held to maxBufferedBytes: past it the least recently updated topics go first, counted as dropped`, () => {
    const { outbox, conn, stats } = setup({ policy: 'conflate' });
    conn.buffered = 50; // backed up
    outbox.pendingBytes();
    outbox[push](b('a1xx'), 'a');
    outbox[push](b('b1xx'), 'b');
    outbox[push](b('a2xx'), 'a'); // supersedes a1: a is now the most recent
    assert.equal(stats.conflatedBytes, 8);
    outbox[push](b('c1xx'), 'c'); // 12 > 10: b (least recently updated) goes
    assert.equal(stats.dropped, 1);
    assert.equal(stats.conflatedBytes, 8);
    outbox[push](b('this value alone is over the bound'), 'd');
    assert.equal(stats.dropped, 2);
    conn.drain();
    outbox.flush();
    assert.deepEqual(conn.sent, ['a2xx', 'c1xx']);
    assert.equal(stats.conflatedBytes, 0);
  });

  test(`${push}: conflate: kept values are written while the transport holds less than maxBufferedBytes, the rest on the next drain`, () => {
    const { outbox, conn, stats } = setup({ policy: 'conflate' });
    conn.buffered = 50;
    outbox.pendingBytes();
    outbox[push](b('a1xx'), 'a');
    outbox[push](b('b1xx'), 'b');
    conn.buffered = 7; // drained partly
    outbox.flush();
    assert.deepEqual(conn.sent, ['a1xx'], 'one value reaches the limit');
    assert.equal(stats.conflatedBytes, 4);
    outbox[push](b('b2xx'), 'b'); // still conflating: nothing older may follow it
    conn.drain();
    outbox.flush();
    assert.deepEqual(conn.sent, ['a1xx', 'b2xx']);
    assert.equal(stats.conflatedBytes, 0);
    outbox[push](b('c'), 'c'); // map empty: live again
    outbox.flush();
    assert.deepEqual(conn.sent, ['a1xx', 'b2xx', 'c']);
  });

  test(`${push}: a delivery queue reused across ticks of any size writes every frame once, in order, one corked write per tick`, () => {
    // The queue is emptied by resetting its bounds (not `length = 0`, which frees V8's backing store): bursts
    // smaller, equal and larger than the last, and one past the size a queue is kept at, then more ticks after it.
    const { outbox, conn, tick } = setup({ maxBufferedBytes: 1_000_000 });
    const sizes = [1, 3, 2, 17, 0, 300, 5, 1, 257, 4];
    const expected: string[] = [];
    let n = 0;
    let ticks = 0;
    for (const size of sizes) {
      for (let i = 0; i < size; i++) {
        const s = `m${n++}`;
        expected.push(s);
        outbox[push](b(s), 't');
      }
      tick();
      if (size > 0) ticks++;
      conn.drain();
    }
    assert.deepEqual(conn.sent, expected);
    assert.equal(conn.writes, ticks);
  });

  test(`${push}: a frame held past its tick (conflated, or behind a paced source) is copied out of a shared buffer`, () => {
    // Live native frames are views into one shared slab (protocol/native/fast.ts): whatever the outbox
    // keeps longer than a tick must not keep (or see later writes to) the slab.
    const slab = b('a2xxb1xxLIVE');
    const view = (from: number, to: number): Uint8Array => slab.subarray(from, to);
    const c = setup({ policy: 'conflate' });
    c.outbox[push](b('a1xxxxxxx'), 'a');
    c.tick();
    c.outbox[push](view(0, 4), 'a'); // conflated: held until the connection drains
    c.outbox[push](view(4, 8), 'b');
    slab.set(b('ZZZZZZZZ')); // the slab's bytes are not the outbox's any more
    c.conn.drain();
    c.outbox.flush();
    assert.deepEqual(c.conn.sent, ['a1xxxxxxx', 'a2xx', 'b1xx']);

    const s = setup({ maxBufferedBytes: 1000, snapshotWindowBytes: 4 });
    const frames = ['r1', 'r2', 'r3'];
    s.outbox.pushSource({ next: () => (frames.length ? b(frames.shift()!) : undefined) });
    s.outbox[push](view(8, 12), 't'); // behind the paced source
    slab.set(b('ZZZZ'), 8);
    for (let i = 0; i < 3; i++) {
      s.tick();
      s.conn.drain();
      s.outbox.flush();
    }
    assert.deepEqual(s.conn.sent, ['r1', 'r2', 'r3', 'LIVE']);
  });
}

/** Outboxes sharing one Flusher, as a broker's sessions do; each connection's `onSend` may queue more meanwhile. */
function setupMany(n: number) {
  const queue: (() => void)[] = [];
  const flusher = new Flusher((fn) => queue.push(fn));
  const stats = createOutboxStats();
  const conns = Array.from({ length: n }, () => new FakeConn());
  const outboxes = conns.map((conn) => new Outbox(conn, { maxBufferedBytes: 1_000_000, policy: 'drop', snapshotWindowBytes: 4, maxConflatedTopics: 100 }, stats, flusher));
  const tick = (): void => {
    while (queue.length) queue.shift()!();
  };
  return { flusher, outboxes, conns, stats, tick };
}

test('pushLive: subscribers of the same publishes, each with its own gaps and control frames between, get exactly theirs in order', () => {
  const { outboxes, conns, stats, tick } = setupMany(3);
  const [all, some, late] = outboxes as [Outbox, Outbox, Outbox];
  for (let round = 0; round < 3; round++) {
    for (let m = 0; m < 6; m++) {
      const frame = b(`r${round}m${m}`); // one frame per publish, shared by its subscribers
      all.pushLive(frame, 't');
      if (m % 2 === 0) some.pushLive(frame, 't'); // every other publish: its run breaks each time
      if (m === 3) some.pushControl(b(`ack${round}`));
      if (m >= 4) late.pushLive(frame, 't');
    }
    all.pushControl(b(`pong${round}`));
    all.pushLive(b(`r${round}tail`), 't');
    tick();
  }
  const per = (f: (round: number) => string[]): string[] => [0, 1, 2].flatMap(f);
  assert.deepEqual(conns[0]!.sent, per((r) => [...[0, 1, 2, 3, 4, 5].map((m) => `r${r}m${m}`), `pong${r}`, `r${r}tail`]));
  assert.deepEqual(conns[1]!.sent, per((r) => [`r${r}m0`, `r${r}m2`, `ack${r}`, `r${r}m4`]));
  assert.deepEqual(conns[2]!.sent, per((r) => [`r${r}m4`, `r${r}m5`]));
  assert.deepEqual(conns.map((c) => c.writes), [3, 3, 3], 'one corked write per tick each');
  assert.equal(stats.framesSent, 3 * (8 + 4 + 2));
});

test('pushLive: deliveries queued while a tick is being written go out next tick, in order, and a written tick keeps no frame', () => {
  const { flusher, outboxes, conns, tick } = setupMany(2);
  const [first, second] = outboxes as [Outbox, Outbox];
  const frame = b('p1');
  first.pushLive(frame, 't');
  second.pushLive(frame, 't');
  // While the first outbox is written, a publish reaches both (as a close handler's will would).
  let once = true;
  conns[0]!.send = function (this: FakeConn, bytes: Uint8Array) {
    const result = FakeConn.prototype.send.call(this, bytes);
    if (once) {
      once = false;
      const p2 = b('p2');
      first.pushLive(p2, 't');
      second.pushLive(p2, 't'); // second is still waiting in this batch: p1, then p2 of the new log
    }
    return result;
  };
  tick();
  assert.deepEqual(conns[0]!.sent, ['p1', 'p2']);
  assert.deepEqual(conns[1]!.sent, ['p1', 'p2']);
  tick(); // the log written last tick is this tick's: empty
  assert.ok(flusher.log.every((f) => f === undefined), 'no frame of a written tick is held');
  assert.equal(flusher.logLength, 0);
});

test('pushLive: a subscriber of two overlapping publishes of one frame (a shared-subscription redelivery) gets it twice', () => {
  const { outboxes, conns, tick } = setupMany(1);
  const frame = b('same');
  outboxes[0]!.pushLive(frame, 't');
  outboxes[0]!.pushLive(frame, 't');
  tick();
  assert.deepEqual(conns[0]!.sent, ['same', 'same']);
});
