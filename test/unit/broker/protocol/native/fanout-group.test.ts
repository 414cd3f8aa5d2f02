/**
 * Fan-out groups (broker/src/session/fanout-group.ts) change how deliveries are made, never what a
 * connection receives. Each test runs sessions in twins: A holds one filter (so it is put in its
 * filter's group), B the same filter plus one nobody publishes to (so it never is, and is delivered
 * to one by one as before). Every step happens to both; after it, A must have received exactly what
 * B received — the same frames in the same order, closes included — under every slow-consumer
 * policy, with backpressure, snapshots, subscribe and unsubscribe churn, pings and closes in between.
 * (Readers read and clients close at the ends of turns only: within a turn a group may write
 * earlier than a lone outbox would, the same bytes in the same order.)
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMessage, createNativeProtocol, type Connection, type ConnectionHandler, type SendResult } from '@topicast/broker';
import { decodeServerFrame, encodeFrame, Op, type ServerFrame } from 'topicast/protocol';
import { seededRandom } from '../../../../helpers/random.js';
import { testContext, type Context } from '../mqtt/harness.js';

/** A WebSocket connection in memory: what uWS would write, decoded; its buffer grows with every send until the test drains it. */
class MemoryWs implements Connection {
  readonly remoteAddress = '127.0.0.1';
  readonly frames: string[] = [];
  buffered = 0;
  closed = false;
  handler: ConnectionHandler | undefined;
  send(bytes: Uint8Array): SendResult {
    if (this.closed) return 2;
    this.frames.push(describe(decodeServerFrame(bytes)));
    this.buffered += bytes.length;
    return 1;
  }
  bufferedBytes(): number {
    return this.closed ? 0 : this.buffered;
  }
  cork(fn: () => void): void {
    if (!this.closed) fn();
  }
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.frames.push(`close ${code} ${reason}`);
    this.handler!.onClose(code, reason, false); // uWS calls the close handler from end(), synchronously
  }
}

function describe(f: ServerFrame): string {
  switch (f.op) {
    case Op.delivery: return `delivery ${f.topic} ${Buffer.from(f.payload).toString('hex')} ${f.flags}`;
    case Op.ack: return `ack ${f.id} ${JSON.stringify(f.result)}`;
    case Op.snapshotEnd: return `end ${f.id}`;
    case Op.pong: return `pong ${f.id}`;
    case Op.welcome: return 'welcome';
    default: return JSON.stringify(f);
  }
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface Twin {
  n: number;
  a: { conn: MemoryWs; handler: ConnectionHandler };
  b: { conn: MemoryWs; handler: ConnectionHandler };
  /** B's frames before the common part (its own subscription to a topic nobody publishes on). */
  skip: number;
  id: number;
}

const FILTERS = ['t/a', 't/+', 't/#', 'u/x'];
const TOPICS = ['t/a', 't/b', 'u/x', 't/a/deep'];

async function run(seed: number, policy: string): Promise<{ groupsSeen: number; grouped: number; deliveries: number }> {
  const rnd = seededRandom(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const ctx: Context = testContext(['--slow-consumer-policy', policy, '--max-buffered-bytes', '1024']);
  const protocol = createNativeProtocol(ctx);
  const twins: Twin[] = [];
  let groupsSeen = 0;
  const open = (): { conn: MemoryWs; handler: ConnectionHandler } => {
    const conn = new MemoryWs();
    conn.handler = protocol.open(conn);
    return { conn, handler: conn.handler };
  };
  const both = (t: Twin, fn: (side: { conn: MemoryWs; handler: ConnectionHandler }) => void): void => {
    fn(t.a);
    fn(t.b);
  };
  const send = (side: { handler: ConnectionHandler; conn: MemoryWs }, frame: Parameters<typeof encodeFrame>[0]): void => {
    if (!side.conn.closed) side.handler.onMessage(encodeFrame(frame));
  };
  const addTwin = async (): Promise<void> => {
    const n = twins.length;
    const t: Twin = { n, a: open(), b: open(), skip: 0, id: 10 };
    send(t.b, { op: Op.subscribe, id: 1, filters: [`never/${n}`], options: {} });
    await settle();
    t.skip = t.b.conn.frames.length - 1; // all but WELCOME: ACK 1 and SNAPSHOT_END 1
    t.a.conn.buffered = 0; // the same bytes in flight from here on
    t.b.conn.buffered = 0;
    const filter = pick(FILTERS);
    both(t, (s) => send(s, { op: Op.subscribe, id: t.id, filters: [filter], options: {} }));
    twins.push(t);
  };
  for (let i = 0; i < 6; i++) await addTwin();
  let published = 0;
  for (let step = 0; step < 400; step++) {
    const r = rnd();
    const live = twins.filter((t) => !t.a.conn.closed);
    const t = live.length > 0 ? pick(live) : undefined;
    if (r < 0.55) {
      // A burst of publishes, retained now and then (later subscribes get snapshots).
      const count = 1 + Math.floor(rnd() * 40);
      for (let i = 0; i < count; i++) ctx.router.publish(createMessage(pick(TOPICS), Uint8Array.of(published++ & 0xff, published >> 8), rnd() < 0.05));
    } else if (r < 0.65 && t) {
      // The reader catches up, or part way. Only at the end of a turn: a group may write its frames
      // earlier in a turn than a lone session's outbox (when they could reach the limit), so what a
      // reader has read by the middle of a turn may differ; by its end both wrote everything.
      await settle();
      const free = rnd() < 0.5 ? 0 : Math.floor(rnd() * 1500);
      both(t, (s) => {
        s.conn.buffered = Math.min(s.conn.buffered, free);
        s.handler.onDrain();
      });
    } else if (r < 0.72 && t) {
      const id = ++t.id;
      both(t, (s) => send(s, { op: Op.ping, id }));
    } else if (r < 0.8 && t) {
      // A second filter (A leaves its group, or never had one), or the same one again.
      const filter = pick(FILTERS);
      const id = ++t.id;
      both(t, (s) => send(s, { op: Op.subscribe, id, filters: [filter], options: {} }));
    } else if (r < 0.88 && t) {
      const filter = pick(FILTERS);
      const id = ++t.id;
      both(t, (s) => send(s, { op: Op.unsubscribe, id, filters: [filter] }));
    } else if (r < 0.9 && t) {
      await settle(); // as for draining: what was written before a close depends on when in the turn it comes
      both(t, (s) => s.conn.close(1000, 'bye'));
    } else if (r < 0.93) {
      await addTwin();
    } else {
      await settle(); // the end of a turn: outboxes and groups write
    }
    groupsSeen = Math.max(groupsSeen, protocol.fanout.groups);
  }
  await settle();
  await settle();
  for (const t of twins) {
    assert.deepEqual(t.a.conn.frames, [t.b.conn.frames[0]!, ...t.b.conn.frames.slice(1 + t.skip)], `seed ${seed}, policy ${policy}: twin ${t.n} got other frames grouped than alone`);
  }
  return { groupsSeen, grouped: protocol.fanout.written, deliveries: twins.reduce((sum, t) => sum + t.a.conn.frames.filter((f) => f.startsWith('delivery')).length, 0) };
}

for (const policy of ['drop', 'conflate', 'disconnect']) {
  test(`a grouped session receives exactly what it would alone (${policy}, random steps, 12 seeds)`, async () => {
    let deliveries = 0;
    let grouped = 0;
    let groups = 0;
    for (let seed = 1; seed <= 12; seed++) {
      const r = await run(seed * 7919 + policy.length, policy);
      deliveries += r.deliveries;
      grouped += r.grouped;
      groups = Math.max(groups, r.groupsSeen);
    }
    assert.ok(groups >= 2 && grouped > deliveries / 10, `groups formed (${groups}) and wrote a good part of the deliveries (${grouped} of ${deliveries} to A twins)`);
  });
}

test('a group counts every member: deliveries, subscriptions, and a filter\'s interest never drops to none while sessions move in and out', async () => {
  const ctx = testContext([]);
  const protocol = createNativeProtocol(ctx);
  const interest = new Map<string, number>();
  let lowest = Infinity;
  ctx.router.watchInterest({
    added: (filter) => interest.set(filter, (interest.get(filter) ?? 0) + 1),
    removed: (filter) => {
      const n = interest.get(filter)! - 1;
      interest.set(filter, n);
      if (filter === 'g/#') lowest = Math.min(lowest, n);
    },
  });
  const sessions = Array.from({ length: 5 }, () => {
    const conn = new MemoryWs();
    conn.handler = protocol.open(conn);
    return conn;
  });
  const send = (conn: MemoryWs, frame: Parameters<typeof encodeFrame>[0]): void => conn.handler!.onMessage(encodeFrame(frame));
  sessions.forEach((conn, i) => send(conn, { op: Op.subscribe, id: 1 + i, filters: ['g/#'], options: {} }));
  assert.equal(protocol.fanout.groups, 1);
  assert.equal(ctx.router.subscriptionCount, 5);
  assert.equal(ctx.router.publish(createMessage('g/x', Uint8Array.of(1))).deliveries, 5);
  await settle();
  // One takes a second filter (out of the group, on its own) and then leaves the first, one leaves, one closes; the group lives on with two.
  send(sessions[0]!, { op: Op.subscribe, id: 10, filters: ['h'], options: {} });
  assert.equal(ctx.router.subscriptionCount, 6);
  send(sessions[0]!, { op: Op.unsubscribe, id: 13, filters: ['g/#'] });
  send(sessions[1]!, { op: Op.unsubscribe, id: 11, filters: ['g/#'] });
  sessions[2]!.close(1000, 'bye');
  assert.equal(ctx.router.subscriptionCount, 3); // g/# × 2 in the group, h
  assert.equal(ctx.router.publish(createMessage('g/y', Uint8Array.of(2))).deliveries, 2);
  await settle();
  // The last members go: the last one takes a second filter, so the filter is held on its own throughout.
  sessions[3]!.close(1000, 'bye');
  send(sessions[4]!, { op: Op.subscribe, id: 12, filters: ['h'], options: {} });
  assert.equal(protocol.fanout.groups, 0);
  assert.equal(ctx.router.subscriptionCount, 3); // g/# alone, h × 2
  assert.equal(ctx.router.publish(createMessage('g/z', Uint8Array.of(3))).deliveries, 1);
  assert.ok(lowest > 0, `the interest in g/# stayed held (lowest count ${lowest})`);
  await settle();
  const got = (conn: MemoryWs): string[] => conn.frames.filter((f) => f.startsWith('delivery')).map((f) => f.split(' ')[1]!);
  assert.deepEqual(sessions.map(got), [['g/x'], ['g/x'], ['g/x'], ['g/x', 'g/y'], ['g/x', 'g/y', 'g/z']]);
});
