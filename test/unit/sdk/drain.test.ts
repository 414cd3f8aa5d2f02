/**
 * DRAIN (PROTOCOL.md §4.7) on a fake clock and a fake broker: the client announces the
 * drain, keeps using the connection until `reconnectAfterMs`, then leaves it cleanly and
 * dials the next URL at once, resuming its subscriptions and sending its queued publishes;
 * the broker's 1001 at the end of its window is expected, not an error.
 */
import { afterEach, beforeEach, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, ConnectionError, type Client, type ClientState, type DrainNotice, type TopicastError } from 'topicast';
import { Op } from 'topicast/protocol';
import { FakeNet, flush } from './fake-transport.js';

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'setInterval'] }));
afterEach(() => mock.timers.reset());

async function tick(ms: number): Promise<void> {
  mock.timers.tick(ms);
  await flush();
}

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

interface Observed {
  client: Client;
  states: ClientState[];
  errors: TopicastError[];
  drains: DrainNotice[];
  got: unknown[];
}

/** A client on `urls` (the first one open), subscribed to 'h/#' at position E/5, with a long backoff (so a 0 ms dial is the drain's). */
async function observed(net: FakeNet, urls: string[]): Promise<Observed> {
  const p = connect(urls, { transport: net.transport, codec: 'json', heartbeatMs: 0, reconnect: { minDelayMs: 60_000, maxDelayMs: 60_000 } });
  await flush();
  net.last.accept();
  const client = await p;
  const o: Observed = { client, states: [], errors: [], drains: [], got: [] };
  client.on('state', (s) => o.states.push(s));
  client.on('error', (e) => o.errors.push(e));
  client.on('drain', (d) => o.drains.push(d));
  const sp = client.subscribe('h/#', (v) => o.got.push(v));
  await flush();
  const frame = net.last.framesOf(Op.subscribe).at(-1)!;
  net.last.push({ op: Op.ack, id: frame.id, result: { retained: 0, epoch: 'E', offset: 5 } });
  await sp;
  net.last.auto = true;
  return o;
}

test('DRAIN: announced at once, served until reconnectAfterMs, then a clean close and the next URL at once, subscriptions resumed, queue kept', async () => {
  const net = new FakeNet();
  const o = await observed(net, ['ws://a/ws', 'ws://b/ws']);
  const a = net.last;
  a.push({ op: Op.drain, info: { reconnectAfterMs: 500 } });
  assert.deepEqual(o.drains, [{ url: 'ws://a/ws', reconnectAfterMs: 500 }]);
  a.push({ op: Op.drain, info: { reconnectAfterMs: 50 } }); // repeated: the departure does not move

  // Until then the draining node keeps serving, both ways.
  await tick(499);
  assert.equal(o.client.state, 'open');
  a.push({ op: Op.delivery, topic: 'h/x', payload: enc('during'), flags: 0, offset: 6 });
  await o.client.publish('h/y', 'sent on a', { ack: true });
  assert.equal(a.framesOf(Op.publish).length, 1);
  assert.equal(net.sockets.length, 1);

  await tick(1);
  assert.deepEqual(a.closedWith, { code: 1000, reason: 'drain' }, 'a clean close: the broker does not publish the will');
  assert.equal(o.client.state, 'reconnecting');
  const queued = o.client.publish('h/z', 'queued', { ack: true });
  await tick(0);
  assert.equal(net.sockets.length, 2, 'dialled at once, not after the 60 s backoff');
  const b = net.last;
  assert.equal(b.url, 'ws://b/ws', 'the next URL of the list');
  b.auto = false;
  b.accept();
  await flush();
  assert.equal(o.client.state, 'open');
  const [sub] = b.framesOf(Op.subscribe);
  assert.deepEqual(sub?.options, { resume: { epoch: 'E', offset: 6 } }, 'resumed from the last delivery');
  const [pub] = b.framesOf(Op.publish);
  assert.equal(pub?.topic, 'h/z', 'the queued publish goes out on the new connection');
  b.push({ op: Op.ack, id: pub!.id, result: null });
  await queued;
  assert.deepEqual(o.states, ['reconnecting', 'open']);
  assert.deepEqual(o.errors, [], 'a drain is no error');
  assert.deepEqual(o.got, ['during']);
  await tick(1000);
  assert.equal(net.sockets.length, 2, 'no second departure');
  await o.client.close();
});

test("DRAIN: the broker's 1001 at the end of its window, before the client left, is expected", async () => {
  const net = new FakeNet();
  const o = await observed(net, ['ws://a/ws', 'ws://b/ws']);
  net.last.push({ op: Op.drain, info: { reconnectAfterMs: 10_000 } });
  await tick(3000);
  net.last.drop(1001, 'going away');
  await tick(0);
  assert.equal(net.sockets.length, 2);
  assert.equal(net.last.url, 'ws://b/ws');
  net.last.accept();
  await flush();
  assert.equal(o.client.state, 'open');
  assert.deepEqual(o.errors, []);
  await tick(10_000);
  assert.equal(net.sockets.length, 2, 'the drain timer died with the connection');
  await o.client.close();
});

test('DRAIN with one URL: back to the same URL (a load balancer picks another node)', async () => {
  const net = new FakeNet();
  const o = await observed(net, ['ws://lb/ws']);
  net.last.push({ op: Op.drain, info: { reconnectAfterMs: 0 } });
  await tick(0);
  await tick(0);
  assert.equal(net.sockets.length, 2);
  assert.equal(net.last.url, 'ws://lb/ws');
  assert.deepEqual(o.errors, []);
  await o.client.close();
});

test('a 1001 without DRAIN is still reported; a DRAIN connection that fails for good is not hidden', async () => {
  const net = new FakeNet();
  const o = await observed(net, ['ws://a/ws', 'ws://b/ws']);
  net.last.drop(1001, 'going away');
  await flush();
  assert.equal(o.errors.length, 1);
  assert.ok(o.errors[0] instanceof ConnectionError);
  assert.equal(o.errors[0].closeCode, 1001);
  await tick(0);
  net.last.accept();
  await flush();
  net.last.push({ op: Op.drain, info: { reconnectAfterMs: 1000 } });
  net.last.drop(4003, 'not authorized'); // not retryable: the drain does not make it a move
  await flush();
  assert.equal(o.client.state, 'closed');
  assert.equal((o.errors.at(-1) as ConnectionError | undefined)?.closeCode, 4003);
  await tick(1000);
  assert.equal(net.sockets.length, 2);
});

test('close() during a drain cancels the departure', async () => {
  const net = new FakeNet();
  const o = await observed(net, ['ws://a/ws', 'ws://b/ws']);
  net.last.push({ op: Op.drain, info: { reconnectAfterMs: 100 } });
  await o.client.close();
  await tick(1000);
  assert.equal(net.sockets.length, 1);
  assert.deepEqual(o.states, ['closed']);
});

test('DRAIN with reconnect off: only the event; the broker’s close at the end of its window ends the client', async () => {
  const net = new FakeNet();
  const p = connect('ws://a/ws', { transport: net.transport, heartbeatMs: 0, reconnect: false });
  await flush();
  net.last.accept();
  const client = await p;
  const drains: DrainNotice[] = [];
  client.on('drain', (d) => drains.push(d));
  net.last.push({ op: Op.drain, info: { reconnectAfterMs: 100 } });
  await tick(5000);
  assert.deepEqual(drains, [{ url: 'ws://a/ws', reconnectAfterMs: 100 }]);
  assert.equal(client.state, 'open', 'nowhere to go: it stays until the broker closes');
  assert.equal(net.last.closedWith, undefined);
  net.last.drop(1001, 'going away');
  await flush();
  assert.equal(client.state, 'closed');
  assert.equal(net.sockets.length, 1);
});

test('DRAIN departure waits (at most 1 s) for acknowledged publishes in flight; publishes made meanwhile go out on the next node', async () => {
  const net = new FakeNet();
  const o = await observed(net, ['ws://a/ws', 'ws://b/ws']);
  const a = net.last;
  a.auto = false; // the test answers
  a.push({ op: Op.drain, info: { reconnectAfterMs: 100 } });
  const first = o.client.publish('h/1', 1, { ack: true });
  await tick(100);
  assert.equal(a.closedWith, undefined, 'still waiting for the ACK of h/1');
  const second = o.client.publish('h/2', 2, { ack: true });
  await flush();
  assert.deepEqual(a.framesOf(Op.publish).map((f) => f.topic), ['h/1'], 'h/2 waits in the queue');
  a.push({ op: Op.ack, id: a.framesOf(Op.publish)[0]!.id, result: null });
  await first;
  assert.deepEqual(a.closedWith, { code: 1000, reason: 'drain' }, 'left as soon as the answer came');
  await tick(0);
  const b = net.last;
  assert.equal(b.url, 'ws://b/ws');
  b.accept();
  await flush();
  assert.deepEqual(b.framesOf(Op.publish).map((f) => f.topic), ['h/2']);
  b.push({ op: Op.ack, id: b.framesOf(Op.publish)[0]!.id, result: null });
  await second;

  // An answer that never comes holds the departure for 1 s at most; that publish then fails as on any lost link.
  b.auto = false;
  b.push({ op: Op.drain, info: { reconnectAfterMs: 0 } });
  const stuck = o.client.publish('h/3', 3, { ack: true });
  const outcome = stuck.then(() => 'resolved', (e: Error) => e.constructor.name);
  await tick(0);
  await tick(999);
  assert.equal(b.closedWith, undefined);
  await tick(1);
  assert.deepEqual(b.closedWith, { code: 1000, reason: 'drain' });
  assert.equal(await outcome, 'ConnectionError');
  assert.deepEqual(o.errors, []);
  await o.client.close();
});
