/**
 * History positions and resume (PROTOCOL.md §4.6) against a fake broker: a subscription's
 * position follows the ACK and its deliveries, duplicates at or below it are skipped, a
 * reconnect resubscribes from it, and the application learns `recovered` each time.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Client, type MessageMeta, type ResumeOutcome, type Subscription } from 'topicast';
import { Flag, Op, type ClientFrame, type SubscribeResult } from 'topicast/protocol';
import { FakeNet, flush, type FakeSocket } from './fake-transport.js';

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
type SubscribeFrame = Extract<ClientFrame, { op: typeof Op.subscribe }>;

async function opened(net: FakeNet): Promise<Client> {
  const p = connect(['ws://a/ws', 'ws://b/ws'], { transport: net.transport, codec: 'json', reconnect: { minDelayMs: 0, maxDelayMs: 0 } });
  await flush();
  net.last.accept();
  return p;
}

/** Subscribes and plays the broker's ACK (and SNAPSHOT_END); returns the subscription and its SUBSCRIBE frame. */
async function subscribed(
  net: FakeNet,
  client: Client,
  filter: string,
  result: SubscribeResult,
  got: [string, unknown, MessageMeta][],
  options: Parameters<Client['subscribe']>[2] = {},
): Promise<{ sub: Subscription<unknown>; frame: SubscribeFrame }> {
  const p = client.subscribe(filter, (v, m) => got.push([filter, v, m]), options);
  await flush();
  const frame = net.last.framesOf(Op.subscribe).at(-1)!;
  net.last.push({ op: Op.ack, id: frame.id, result });
  if (result.retained + (result.replayed ?? 0) > 0) return { sub: await p, frame };
  net.last.push({ op: Op.snapshotEnd, id: frame.id });
  return { sub: await p, frame };
}

function deliver(sock: FakeSocket, topic: string, value: unknown, offset?: number, flags = 0): void {
  sock.push(offset === undefined ? { op: Op.delivery, topic, payload: enc(value), flags } : { op: Op.delivery, topic, payload: enc(value), flags, offset });
}

/** Drops the link and opens the next one (the fake's reconnect delay is 0). */
async function reconnect(net: FakeNet): Promise<FakeSocket> {
  const before = net.sockets.length;
  net.last.drop(1006);
  for (let i = 0; i < 50 && net.sockets.length === before; i++) await new Promise((r) => setTimeout(r, 1));
  assert.equal(net.sockets.length, before + 1, 'a new connection attempt');
  net.last.accept();
  await flush();
  return net.last;
}

const summary = (got: [string, unknown, MessageMeta][]): string[] =>
  got.map(([f, v, m]) => `${f} ${m.topic}=${String(v)}${m.offset === undefined ? '' : `@${m.offset}`}${m.replayed ? ' replayed' : ''}${m.retained ? ' retained' : ''}`);

test('position: starts at the ACK, moves with each delivery, skips offsets it has; meta carries offset and replayed', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const got: [string, unknown, MessageMeta][] = [];
  const { sub } = await subscribed(net, client, 'h/#', { retained: 0, epoch: 'E1', offset: 10 }, got);
  assert.deepEqual(sub.position, { epoch: 'E1', offset: 10 });
  assert.equal(sub.recovered, undefined, 'a first subscribe is no resume');
  deliver(net.last, 'h/a', 1, 11);
  deliver(net.last, 'h/b', 2, 13);
  deliver(net.last, 'h/a', 3, 13); // a duplicate
  deliver(net.last, 'h/a', 4, 12); // below the position
  deliver(net.last, 'h/c', 5); // a topic without history: delivered, position unchanged
  assert.deepEqual(summary(got), ['h/# h/a=1@11', 'h/# h/b=2@13', 'h/# h/c=5']);
  assert.deepEqual(sub.position, { epoch: 'E1', offset: 13 });
  // The position is a copy: the application may keep it.
  const kept = sub.position!;
  deliver(net.last, 'h/a', 6, 14);
  assert.deepEqual(kept, { epoch: 'E1', offset: 13 });
  assert.deepEqual(sub.position, { epoch: 'E1', offset: 14 });
  // Iterators see the same meta.
  const it = client.subscribe('h/x');
  await flush();
  const f = net.last.framesOf(Op.subscribe).at(-1)!;
  net.last.push({ op: Op.ack, id: f.id, result: { retained: 0, epoch: 'E1', offset: 14 } });
  net.last.push({ op: Op.snapshotEnd, id: f.id });
  await it;
  deliver(net.last, 'h/x', 7, 15, Flag.replayed);
  const { value: m } = await it[Symbol.asyncIterator]().next();
  assert.deepEqual({ topic: m.topic, value: m.value, offset: m.offset, replayed: m.replayed, retained: m.retained }, { topic: 'h/x', value: 7, offset: 15, replayed: true, retained: false });
  await client.close();
});

test('reconnect: each subscription resubscribes from its own position, keeping retained:false; recovered:true replays then goes live', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const got: [string, unknown, MessageMeta][] = [];
  const { sub } = await subscribed(net, client, 'h/#', { retained: 0, epoch: 'E1', offset: 10 }, got, { retained: false });
  deliver(net.last, 'h/a', 1, 12);
  const outcomes: ResumeOutcome[] = [];
  const states: string[] = [];
  sub.on('resumed', (o) => outcomes.push(o));
  sub.on('state', (s) => states.push(s));
  assert.equal(net.last.url, 'ws://a/ws');

  const sock = await reconnect(net);
  assert.equal(sock.url, 'ws://b/ws');
  const [frame] = sock.framesOf(Op.subscribe);
  assert.deepEqual(frame?.filters, ['h/#']);
  assert.deepEqual(frame?.options, { retained: false, resume: { epoch: 'E1', offset: 12 } });

  sock.push({ op: Op.ack, id: frame!.id, result: { retained: 0, replayed: 2, epoch: 'E1', offset: 20, recovered: true } });
  assert.deepEqual(outcomes, [{ recovered: true, replayed: 2 }]);
  assert.equal(sub.recovered, true);
  assert.equal(sub.state, 'snapshot', 'the replay is the snapshot phase');
  deliver(sock, 'h/a', 2, 15, Flag.replayed);
  deliver(sock, 'h/b', 3, 18, Flag.replayed);
  assert.deepEqual(sub.position, { epoch: 'E1', offset: 18 });
  sock.push({ op: Op.snapshotEnd, id: frame!.id });
  assert.equal(sub.state, 'live');
  assert.deepEqual(sub.position, { epoch: 'E1', offset: 20 }, 'everything up to the ACK offset was replayed');
  deliver(sock, 'h/a', 4, 21);
  assert.deepEqual(summary(got), ['h/# h/a=1@12', 'h/# h/a=2@15 replayed', 'h/# h/b=3@18 replayed', 'h/# h/a=4@21']);
  assert.deepEqual(states, ['subscribing', 'snapshot', 'live']);
  await client.close();
});

test('recovered:false: the app is told, the fresh retained snapshot follows, the position restarts in the new epoch', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const got: [string, unknown, MessageMeta][] = [];
  const { sub } = await subscribed(net, client, 'h/#', { retained: 0, epoch: 'E1', offset: 10 }, got);
  const outcomes: ResumeOutcome[] = [];
  sub.on('resumed', (o) => {
    outcomes.push(o);
    got.push(['resumed', o.recovered, { topic: '', retained: false, payload: new Uint8Array(), replayed: false, offset: undefined, contentType: undefined }]);
  });
  const sock = await reconnect(net);
  const [frame] = sock.framesOf(Op.subscribe);
  assert.deepEqual(frame?.options, { resume: { epoch: 'E1', offset: 10 } });
  // The broker restarted without its history: a new epoch, nothing replayed, the retained snapshot instead.
  sock.push({ op: Op.ack, id: frame!.id, result: { retained: 1, epoch: 'E2', offset: 3, recovered: false } });
  deliver(sock, 'h/a', 'kept', undefined, Flag.retain);
  sock.push({ op: Op.snapshotEnd, id: frame!.id });
  deliver(sock, 'h/a', 'new', 4);
  assert.deepEqual(outcomes, [{ recovered: false, replayed: 0 }]);
  assert.equal(sub.recovered, false);
  assert.deepEqual(got.map(([f, v]) => `${f}:${String(v)}`), ['resumed:false', 'h/#:kept', 'h/#:new'], 'told before the snapshot');
  assert.deepEqual(sub.position, { epoch: 'E2', offset: 4 });
  // A broker without history (no epoch in the ACK): no position, the next reconnect resubscribes plainly and says so.
  const sock2 = await reconnect(net);
  const [f2] = sock2.framesOf(Op.subscribe);
  assert.deepEqual(f2?.options, { resume: { epoch: 'E2', offset: 4 } });
  sock2.push({ op: Op.ack, id: f2!.id, result: { retained: 0, recovered: false } });
  assert.equal(sub.position, undefined);
  const sock3 = await reconnect(net);
  const [f3] = sock3.framesOf(Op.subscribe);
  assert.deepEqual(f3?.options, {});
  sock3.push({ op: Op.ack, id: f3!.id, result: { retained: 0 } });
  assert.deepEqual(outcomes.map((o) => o.recovered), [false, false, false], 'every resubscribe reports its outcome');
  await client.close();
});

test('overlapping resumed subscriptions: separate requests per position, each replayed message reaches each subscription once, in order', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const got: [string, unknown, MessageMeta][] = [];
  // b ('a/b') at 9, all ('a/#') at 11: different positions, so two resume requests.
  const { sub: b } = await subscribed(net, client, 'a/b', { retained: 0, epoch: 'E', offset: 8 }, got);
  deliver(net.last, 'a/b', 'b9', 9);
  const { sub: all } = await subscribed(net, client, 'a/#', { retained: 0, epoch: 'E', offset: 10 }, got);
  deliver(net.last, 'a/c', 'c11', 11);
  assert.deepEqual([b.position?.offset, all.position?.offset], [9, 11]);
  got.length = 0;

  // Published while away: 12 a/b, 13 a/c, 14 a/b.
  const sock = await reconnect(net);
  const frames = sock.framesOf(Op.subscribe);
  assert.deepEqual(frames.map((f) => [f.filters[0], f.options.resume?.offset]), [['a/b', 9], ['a/#', 11]]);
  const [fb, fall] = frames;
  sock.push({ op: Op.ack, id: fb!.id, result: { retained: 0, replayed: 2, epoch: 'E', offset: 14, recovered: true } });
  deliver(sock, 'a/b', 'b12', 12, Flag.replayed);
  deliver(sock, 'a/b', 'b14', 14, Flag.replayed);
  sock.push({ op: Op.snapshotEnd, id: fb!.id });
  sock.push({ op: Op.ack, id: fall!.id, result: { retained: 0, replayed: 3, epoch: 'E', offset: 14, recovered: true } });
  deliver(sock, 'a/b', 'b12', 12, Flag.replayed); // the same message again, for the second request
  deliver(sock, 'a/c', 'c13', 13, Flag.replayed);
  deliver(sock, 'a/b', 'b14', 14, Flag.replayed);
  sock.push({ op: Op.snapshotEnd, id: fall!.id });
  deliver(sock, 'a/b', 'b15', 15);
  assert.deepEqual(summary(got), [
    'a/b a/b=b12@12 replayed',
    'a/b a/b=b14@14 replayed',
    'a/# a/b=b12@12 replayed',
    'a/# a/c=c13@13 replayed',
    'a/# a/b=b14@14 replayed',
    'a/b a/b=b15@15',
    'a/# a/b=b15@15',
  ]);
  assert.deepEqual([b.position?.offset, all.position?.offset], [15, 15]);
  assert.deepEqual([b.recovered, all.recovered], [true, true]);
  await client.close();
});

test('resume option: a first subscribe from a stored position (a page reload) replays and reports recovered', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const got: [string, unknown, MessageMeta][] = [];
  const stored = JSON.parse(JSON.stringify({ epoch: 'E7', offset: 41 })) as { epoch: string; offset: number };
  const p = client.subscribe('h/#', (v, m) => got.push(['h/#', v, m]), { resume: stored });
  await flush();
  const [frame] = net.last.framesOf(Op.subscribe);
  assert.deepEqual(frame?.options, { resume: { epoch: 'E7', offset: 41 } });
  net.last.push({ op: Op.ack, id: frame!.id, result: { retained: 0, replayed: 1, epoch: 'E7', offset: 42, recovered: true } });
  const sub = await p;
  assert.equal(sub.recovered, true);
  let snapshot = false;
  void sub.snapshot.then(() => (snapshot = true));
  deliver(net.last, 'h/a', 'missed', 42, Flag.replayed);
  net.last.push({ op: Op.snapshotEnd, id: frame!.id });
  await flush();
  assert.equal(snapshot, true, 'snapshot resolves after the replay');
  assert.deepEqual(summary(got), ['h/# h/a=missed@42 replayed']);
  assert.deepEqual(sub.position, { epoch: 'E7', offset: 42 });
  // Not a position: refused locally, nothing sent.
  const sent = net.last.sent.length;
  for (const bad of [{ epoch: '', offset: 1 }, { epoch: 'e'.repeat(65), offset: 1 }, { epoch: 'e', offset: -1 }, { epoch: 'e', offset: 1.5 }, { epoch: 'e', offset: 2 ** 53 }, { epoch: 3, offset: 1 }]) {
    await assert.rejects(client.subscribe('x', undefined, { resume: bad as never }), TypeError, JSON.stringify(bad));
  }
  assert.equal(net.last.sent.length, sent);
  await client.close();
});

test('a resumed listener that unsubscribes stops the subscription before anything is delivered', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const got: [string, unknown, MessageMeta][] = [];
  const { sub } = await subscribed(net, client, 'h/#', { retained: 0, epoch: 'E', offset: 1 }, got);
  sub.on('resumed', ({ recovered }) => {
    if (!recovered) void sub.unsubscribe();
  });
  const sock = await reconnect(net);
  sock.auto = true;
  const [frame] = sock.framesOf(Op.subscribe);
  sock.push({ op: Op.ack, id: frame!.id, result: { retained: 1, epoch: 'E9', offset: 0, recovered: false } });
  deliver(sock, 'h/a', 'stale', undefined, Flag.retain);
  sock.push({ op: Op.snapshotEnd, id: frame!.id });
  await flush();
  assert.equal(sub.state, 'closed');
  assert.deepEqual(got, []);
  assert.deepEqual(sock.framesOf(Op.unsubscribe).map((f) => f.filters), [['h/#']]);
  await client.close();
});
