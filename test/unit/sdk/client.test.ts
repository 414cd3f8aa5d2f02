/**
 * Client behaviour against a fake transport: request/answer flows, snapshot
 * resolution, local dispatch of overlapping subscriptions, the offline queue,
 * closing. Timing (heartbeat, backoff) is in client-timers.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ClientErrorCode,
  CodecError,
  ConnectionError,
  connect,
  ErrorCode,
  QueueFullError,
  RequestError,
  TopicastError,
  type Client,
  type ClientState,
} from 'topicast';
import { encodeMsgpack, Op, SUBPROTOCOL } from 'topicast/protocol';
import { FakeNet, flush } from './fake-transport.js';

const enc = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));

async function opened(net: FakeNet, options: Parameters<typeof connect>[1] = {}): Promise<Client> {
  const p = connect('ws://fake/ws', { transport: net.transport, codec: 'json', ...options });
  await flush();
  net.last.accept();
  return p;
}

test('connect offers the subprotocol and token, resolves at WELCOME, exposes server info', async () => {
  const net = new FakeNet();
  const states: ClientState[] = [];
  const p = connect('ws://fake/ws', { transport: net.transport, token: 'sëcret/+=' });
  await flush();
  assert.equal(net.sockets.length, 1);
  assert.equal(net.last.url, 'ws://fake/ws');
  assert.equal(net.last.protocols[0], SUBPROTOCOL);
  assert.match(net.last.protocols[1]!, /^topicast\.token\.[A-Za-z0-9_-]+$/);
  const b64 = net.last.protocols[1]!.slice('topicast.token.'.length).replace(/-/g, '+').replace(/_/g, '/');
  assert.equal(Buffer.from(b64, 'base64').toString('utf8'), 'sëcret/+=');
  net.last.accept({ maxPayloadBytes: 1234 });
  const client = await p;
  client.on('state', (s) => states.push(s));
  assert.equal(client.state, 'open');
  assert.equal(client.server?.maxPayloadBytes, 1234);
  await client.close();
  assert.deepEqual(states, ['closed']);
  assert.deepEqual(net.last.closedWith, { code: 1000, reason: '' });
});

test('subscribe resolves at ACK; snapshot resolves at SNAPSHOT_END after the retained values', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const got: [unknown, boolean][] = [];
  const subP = client.subscribe('devices/+/status', (v, meta) => got.push([v, meta.retained]));
  await flush();
  const [frame] = net.last.framesOf(Op.subscribe);
  assert.deepEqual(frame?.filters, ['devices/+/status']);
  assert.deepEqual(frame?.options, {});
  let snapshotDone = false;
  net.last.push({ op: Op.ack, id: frame!.id, result: { retained: 2 } });
  const sub = await subP;
  void sub.snapshot.then(() => (snapshotDone = true));
  assert.equal(sub.state, 'snapshot');
  net.last.push({ op: Op.delivery, topic: 'devices/a/status', payload: enc('online'), flags: 1 });
  net.last.push({ op: Op.delivery, topic: 'devices/b/status', payload: enc('offline'), flags: 1 });
  await flush();
  assert.equal(snapshotDone, false);
  net.last.push({ op: Op.snapshotEnd, id: frame!.id });
  await sub.snapshot;
  assert.equal(sub.state, 'live');
  net.last.push({ op: Op.delivery, topic: 'devices/a/status', payload: enc('offline'), flags: 0 });
  assert.deepEqual(got, [['online', true], ['offline', true], ['offline', false]]);
  await client.close();
});

test('a subscription with no retained values has its snapshot at the ACK; retained:false is sent', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const subP = client.subscribe(['a/#', 'b'], undefined, { retained: false });
  await flush();
  const [frame] = net.last.framesOf(Op.subscribe);
  assert.deepEqual(frame?.filters, ['a/#', 'b']);
  assert.deepEqual(frame?.options, { retained: false });
  net.last.push({ op: Op.ack, id: frame!.id, result: { retained: 0 } });
  const sub = await subP;
  await sub.snapshot;
  net.last.push({ op: Op.snapshotEnd, id: frame!.id }); // the broker still sends it: ignored
  assert.equal(sub.state, 'live');
  await client.close();
});

test('a refused subscribe rejects with a RequestError carrying the broker code; the iterator throws it', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const subP = client.subscribe('x/y');
  const it = subP[Symbol.asyncIterator]();
  const next = it.next();
  await flush();
  const [frame] = net.last.framesOf(Op.subscribe);
  net.last.push({ op: Op.error, id: frame!.id, code: ErrorCode.tooManySubscriptions, message: 'at most 1' });
  await assert.rejects(subP, (e: unknown) => e instanceof RequestError && e.code === ErrorCode.tooManySubscriptions && e.message === 'at most 1');
  await assert.rejects(next, RequestError);
  await client.close();
});

test('invalid filters and topics are refused locally with the broker codes', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  await assert.rejects(client.subscribe('a/#/b'), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidFilter);
  await assert.rejects(client.subscribe([]), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidFilter);
  await assert.rejects(client.publish('a/+', 1), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidTopic);
  await assert.rejects(client.publish('', 1), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidTopic);
  assert.equal(net.last.sent.length, 0);
  await client.close();
});

test('overlapping subscriptions: one delivery reaches each matching subscription exactly once', async () => {
  const net = new FakeNet();
  net.autoOpen = true;
  const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'json' });
  const seen: string[] = [];
  await client.subscribe('a/+', (v, m) => seen.push(`plus:${m.topic}:${String(v)}`));
  await client.subscribe('a/#', (v, m) => seen.push(`hash:${m.topic}:${String(v)}`));
  await client.subscribe(['a/b', 'a/+'], (v, m) => seen.push(`both:${m.topic}:${String(v)}`)); // two filters, one subscription
  await client.subscribe('other', (v, m) => seen.push(`other:${m.topic}:${String(v)}`));
  net.last.push({ op: Op.delivery, topic: 'a/b', payload: enc(1), flags: 0 });
  net.last.push({ op: Op.delivery, topic: 'a/c/d', payload: enc(2), flags: 0 });
  net.last.push({ op: Op.delivery, topic: 'zzz', payload: enc(3), flags: 0 });
  assert.deepEqual(seen, ['plus:a/b:1', 'hash:a/b:1', 'both:a/b:1', 'hash:a/c/d:2']);
  await client.close();
});

test('retained values of a new subscription do not reach an older overlapping one', async () => {
  const net = new FakeNet();
  net.autoOpen = true;
  const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'json' });
  const old: [string, boolean][] = [];
  await client.subscribe('a/#', (_v, m) => old.push([m.topic, m.retained]));
  net.last.auto = false;
  const fresh: [string, boolean][] = [];
  const p = client.subscribe('a/+', (_v, m) => fresh.push([m.topic, m.retained]));
  await flush();
  const frame = net.last.framesOf(Op.subscribe).at(-1)!;
  net.last.push({ op: Op.ack, id: frame.id, result: { retained: 1 } });
  net.last.push({ op: Op.delivery, topic: 'a/x', payload: enc(1), flags: 1 });
  net.last.push({ op: Op.delivery, topic: 'a/y', payload: enc(2), flags: 0 }); // live, interleaved
  net.last.push({ op: Op.snapshotEnd, id: frame.id });
  await (await p).snapshot;
  assert.deepEqual(fresh, [['a/x', true], ['a/y', false]]);
  assert.deepEqual(old, [['a/y', false]]);
  await client.close();
});

test('per-subscription codecs decode once each; a decode failure is a CodecError and spares the others', async () => {
  const net = new FakeNet();
  net.autoOpen = true;
  const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'json' });
  const errors: TopicastError[] = [];
  client.on('error', (e) => errors.push(e));
  const got: unknown[] = [];
  await client.subscribe('t', (v) => got.push(['json', v]));
  await client.subscribe('t', (v) => got.push(['text', v]), { codec: 'text' });
  await client.subscribe('t', (v) => got.push(['raw', [...v]]), { codec: 'raw' });
  net.last.push({ op: Op.delivery, topic: 't', payload: enc({ a: 1 }), flags: 0 });
  net.last.push({ op: Op.delivery, topic: 't', payload: new TextEncoder().encode('not json'), flags: 0 });
  assert.deepEqual(got[0], ['json', { a: 1 }]);
  assert.deepEqual(got[1], ['text', '{"a":1}']);
  assert.equal((got[2] as [string, number[]])[0], 'raw');
  assert.deepEqual(got.slice(3).map((g) => (g as string[])[0]), ['text', 'raw']);
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof CodecError);
  assert.equal(errors[0].code, ClientErrorCode.codec);
  await client.close();
});

test('a throwing handler is reported as an error event and does not stop the others', async () => {
  const net = new FakeNet();
  net.autoOpen = true;
  const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'json' });
  const errors: TopicastError[] = [];
  client.on('error', (e) => errors.push(e));
  let second = 0;
  await client.subscribe('t', () => {
    throw new Error('boom');
  });
  await client.subscribe('t', () => second++);
  net.last.push({ op: Op.delivery, topic: 't', payload: enc(1), flags: 0 });
  assert.equal(second, 1);
  assert.equal(errors[0]?.code, ClientErrorCode.handler);
  assert.equal((errors[0]?.cause as Error).message, 'boom');
  await client.close();
});

test('unsubscribe tells the broker only about filters no other subscription uses', async () => {
  const net = new FakeNet();
  net.autoOpen = true;
  const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'json' });
  const a = await client.subscribe(['x', 'y']);
  const b = await client.subscribe('x');
  await a.unsubscribe();
  assert.deepEqual(net.last.framesOf(Op.unsubscribe).map((f) => f.filters), [['y']]);
  let got = 0;
  const c = await client.subscribe('x', () => got++);
  await b.unsubscribe();
  assert.equal(net.last.framesOf(Op.unsubscribe).length, 1); // c still holds 'x'
  net.last.push({ op: Op.delivery, topic: 'x', payload: enc(1), flags: 0 });
  assert.equal(got, 1);
  await c.unsubscribe();
  await c.unsubscribe(); // idempotent
  assert.deepEqual(net.last.framesOf(Op.unsubscribe).map((f) => f.filters), [['y'], ['x']]);
  net.last.push({ op: Op.delivery, topic: 'x', payload: enc(2), flags: 0 });
  assert.equal(got, 1);
  await client.close();
});

test('async iteration yields messages in order; break unsubscribes', async () => {
  const net = new FakeNet();
  net.autoOpen = true;
  const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'json' });
  const seen: unknown[] = [];
  const loop = (async () => {
    for await (const m of client.subscribe('n/#')) {
      seen.push([m.topic, m.value, m.retained]);
      if (seen.length === 3) break;
    }
  })();
  await flush();
  for (let i = 0; i < 5; i++) net.last.push({ op: Op.delivery, topic: `n/${i}`, payload: enc(i), flags: 0 });
  await loop;
  assert.deepEqual(seen, [['n/0', 0, false], ['n/1', 1, false], ['n/2', 2, false]]);
  await flush();
  assert.deepEqual(net.last.framesOf(Op.unsubscribe).map((f) => f.filters), [['n/#']]);
  await client.close();
});

test('publish: frame shape, ack resolution and refusal', async () => {
  const net = new FakeNet();
  const client = await opened(net, { codec: 'msgpack' });
  await client.publish('a/b', 48.2, { retain: true });
  const [p0] = net.last.framesOf(Op.publish);
  assert.deepEqual(p0, { op: Op.publish, id: 0, topic: 'a/b', payload: encodeMsgpack(48.2), flags: 1, contentType: 'application/msgpack' });
  const acked = client.publish('a/c', 'x', { ack: true });
  const refused = client.publish('a/d', 'y', { ack: true });
  const [, p1, p2] = net.last.framesOf(Op.publish);
  assert.ok(p1!.id > 0 && p2!.id > 0 && p1!.id !== p2!.id);
  net.last.push({ op: Op.ack, id: p1!.id, result: null });
  net.last.push({ op: Op.error, id: p2!.id, code: ErrorCode.notAuthorized, message: 'no' });
  await acked;
  await assert.rejects(refused, (e: unknown) => e instanceof RequestError && e.code === ErrorCode.notAuthorized);
  await client.clearRetained('a/b');
  const p3 = net.last.framesOf(Op.publish).at(-1)!;
  assert.equal(p3.payload.length, 0);
  assert.equal(p3.flags, 1);
  assert.equal(p3.contentType, undefined); // a cleared retained value has no format
  await assert.rejects(client.publish('big', new Uint8Array(2 << 20), { codec: 'raw' }), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.payloadTooLarge);
  await assert.rejects(client.publish('t', 'str', { codec: 'raw' }), CodecError);
  await client.close();
});

test('will: sent first on every connection', async () => {
  const net = new FakeNet();
  const client = await opened(net, { will: { topic: 'devices/x/status', value: 'offline', retain: true }, reconnect: { minDelayMs: 0, maxDelayMs: 0 } });
  const [w] = net.last.sent;
  assert.equal(w?.op, Op.will);
  assert.deepEqual(w && w.op === Op.will ? w.will : null, { topic: 'devices/x/status', payload: enc('offline'), retain: true, contentType: 'application/json' });
  net.last.drop(1006);
  await new Promise((r) => setTimeout(r, 5));
  net.last.accept();
  assert.equal(net.sockets.length, 2);
  assert.equal(net.last.sent[0]?.op, Op.will);
  await client.close();
});

test('reconnect: subscriptions re-sent, then queued publishes in order; acked publishes in flight fail', async () => {
  const net = new FakeNet();
  const client = await opened(net, { reconnect: { minDelayMs: 0, maxDelayMs: 0 } });
  const states: ClientState[] = [];
  client.on('state', (s) => states.push(s));
  const errors: TopicastError[] = [];
  client.on('error', (e) => errors.push(e));
  net.last.auto = true;
  const got: unknown[] = [];
  const sub = await client.subscribe('r/#', (v) => got.push(v));
  net.last.auto = false;
  const inFlight = client.publish('r/0', 0, { ack: true });
  net.last.drop(1006);
  await assert.rejects(inFlight, (e: unknown) => e instanceof ConnectionError && e.code === ClientErrorCode.connectionLost);
  assert.equal(client.state, 'reconnecting');
  assert.equal(sub.state, 'subscribing');
  await client.publish('r/1', 1);
  const acked = client.publish('r/2', 2, { ack: true });
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(net.sockets.length, 2);
  net.last.auto = true;
  net.last.accept();
  await acked;
  const frames = net.last.sent.map((f) => (f.op === Op.publish ? `pub:${f.topic}` : f.op === Op.subscribe ? `sub:${f.filters.join()}` : String(f.op)));
  assert.deepEqual(frames, ['sub:r/#', 'pub:r/1', 'pub:r/2']);
  assert.deepEqual(states, ['reconnecting', 'open']);
  assert.equal(errors[0]?.code, ClientErrorCode.connectionLost);
  await flush();
  assert.equal(sub.state, 'live');
  net.last.push({ op: Op.delivery, topic: 'r/x', payload: enc('after'), flags: 0 });
  assert.deepEqual(got, ['after']);
  await client.close();
});

test('queue overflow: drop-oldest rejects the evicted acked publish', async () => {
  const net = new FakeNet();
  const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'json', wait: false, queue: { maxMessages: 2 } });
  const errors: TopicastError[] = [];
  client.on('error', (e) => errors.push(e));
  const first = client.publish('q/1', 1, { ack: true });
  await client.publish('q/2', 2);
  await client.publish('q/3', 3); // evicts q/1
  await assert.rejects(first, (e: unknown) => e instanceof QueueFullError && e.topic === 'q/1' && e.code === ClientErrorCode.queueFull);
  await client.publish('q/4', 4); // evicts q/2 (no ack): reported as an error event
  assert.equal(errors.length, 1);
  assert.ok(errors[0] instanceof QueueFullError);
  await flush();
  net.last.auto = true;
  net.last.accept();
  assert.deepEqual(net.last.framesOf(Op.publish).map((f) => f.topic), ['q/3', 'q/4']);
  await client.close();
});

test('queue overflow: drop-newest keeps the backlog; error refuses the publish', async () => {
  for (const overflow of ['drop-newest', 'error'] as const) {
    const net = new FakeNet();
    const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'json', wait: false, queue: { maxMessages: 1, overflow } });
    const errors: TopicastError[] = [];
    client.on('error', (e) => errors.push(e));
    await client.publish('q/1', 1);
    const second = client.publish('q/2', 2);
    if (overflow === 'error') {
      await assert.rejects(second, QueueFullError);
      assert.equal(errors.length, 0);
    } else {
      await second; // accepted and dropped by policy: reported, not thrown
      assert.ok(errors[0] instanceof QueueFullError);
    }
    await assert.rejects(client.publish('q/3', 3, { ack: true }), QueueFullError);
    await flush();
    net.last.auto = true;
    net.last.accept();
    assert.deepEqual(net.last.framesOf(Op.publish).map((f) => f.topic), ['q/1'], overflow);
    await client.close();
  }
});

test('close: pending work rejects, iterators end, later calls are refused', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const subP = client.subscribe('never/acked');
  const it = subP[Symbol.asyncIterator]();
  const next = it.next();
  const ackP = client.publish('p', 1, { ack: true });
  await client.close();
  await assert.rejects(subP, TopicastError);
  assert.deepEqual(await next, { value: undefined, done: true });
  await assert.rejects(ackP, (e: unknown) => e instanceof ConnectionError && e.code === ClientErrorCode.closed);
  await assert.rejects(client.publish('p', 1), (e: unknown) => e instanceof ConnectionError && e.code === ClientErrorCode.closed);
  await assert.rejects(client.subscribe('p'), ConnectionError);
  assert.equal(client.state, 'closed');
  await client.close(); // idempotent
});

test('a non-retryable close (4003) ends the client; a retryable one (1013) does not', async () => {
  const net = new FakeNet();
  const client = await opened(net, { reconnect: { minDelayMs: 0, maxDelayMs: 0 } });
  const subP = client.subscribe('s');
  net.last.drop(1013, 'busy');
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(client.state, 'reconnecting');
  assert.equal(net.sockets.length, 2);
  net.last.accept();
  net.last.drop(4003, 'not authorized');
  assert.equal(client.state, 'closed');
  await assert.rejects(subP, (e: unknown) => e instanceof ConnectionError && e.code === ErrorCode.notAuthorized && e.closeCode === 4003);
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(net.sockets.length, 2);
});

test('wait:true rejects once every URL failed; failover walks the URL list', async () => {
  const net = new FakeNet();
  const p = connect(['ws://one/ws', 'ws://two/ws'], { transport: net.transport });
  await flush();
  net.last.fail('ECONNREFUSED');
  await new Promise((r) => setTimeout(r, 5));
  assert.equal(net.last.url, 'ws://two/ws');
  net.last.fail('ECONNREFUSED');
  await assert.rejects(p, (e: unknown) => e instanceof ConnectionError && e.code === ClientErrorCode.connectFailed && /ECONNREFUSED/.test(e.message));
  assert.equal(net.sockets.length, 2);
});

test('wait:false resolves at once in connecting and keeps trying', async () => {
  const net = new FakeNet();
  const client = await connect('ws://one/ws', { transport: net.transport, wait: false, reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  assert.equal(client.state, 'connecting');
  for (let i = 0; i < 3; i++) {
    await flush();
    net.last.fail('ECONNREFUSED');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(net.sockets.length, 4);
  assert.equal(client.state, 'connecting');
  net.last.accept();
  assert.equal(client.state, 'open');
  await client.close();
});

test('reconnect: false gives up at the first loss', async () => {
  const net = new FakeNet();
  const client = await opened(net, { reconnect: false });
  const subP = client.subscribe('never/acked');
  net.last.drop(1006);
  assert.equal(client.state, 'closed');
  await assert.rejects(subP, (e: unknown) => e instanceof ConnectionError && e.code === ClientErrorCode.connectionLost && /reconnect is off/.test(e.message));
  await assert.rejects(client.publish('a', 1), ConnectionError);
});

test('a token callback is called per attempt; its failure is a failed attempt, not an unhandled rejection', async () => {
  const net = new FakeNet();
  let calls = 0;
  const client = await connect('ws://fake/ws', {
    transport: net.transport,
    wait: false,
    reconnect: { minDelayMs: 1, maxDelayMs: 1 },
    token: async () => {
      calls++;
      if (calls === 1) throw new Error('token service down');
      return `t${calls}`;
    },
  });
  const errors: TopicastError[] = [];
  client.on('error', (e) => errors.push(e));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(calls, 2);
  assert.equal(net.sockets.length, 1);
  assert.equal(net.last.protocols[1], `topicast.token.${Buffer.from('t2').toString('base64url')}`);
  net.last.accept();
  net.last.drop(4001, 'expired'); // retryable because a callback can fetch fresh credentials
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(calls, 3);
  assert.equal(client.state, 'reconnecting');
  await client.close();
});

test('a malformed frame from the broker closes with 1002 and is not retried', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const errors: TopicastError[] = [];
  client.on('error', (e) => errors.push(e));
  net.last.pushBytes(new Uint8Array([0x92, 0x63, 0xc1]));
  assert.equal(client.state, 'closed');
  assert.equal(net.last.closedWith?.code, 1002);
  assert.equal(errors[0]?.code, ErrorCode.badFrame);
});

test('an ERROR with id 0 (fire-and-forget publish) is an error event', async () => {
  const net = new FakeNet();
  const client = await opened(net);
  const errors: TopicastError[] = [];
  client.on('error', (e) => errors.push(e));
  net.last.push({ op: Op.error, id: 0, code: ErrorCode.rateLimited, message: 'slow down' });
  assert.ok(errors[0] instanceof RequestError);
  assert.equal(errors[0].code, ErrorCode.rateLimited);
  await client.close();
});

test('without a handler, messages that arrive before iteration starts are kept for the first iterator (bounded)', async () => {
  const net = new FakeNet();
  net.autoOpen = true;
  const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'json' });
  const sub = await client.subscribe('b/#', undefined, { maxBuffered: 3 });
  for (let i = 0; i < 5; i++) net.last.push({ op: Op.delivery, topic: `b/${i}`, payload: enc(i), flags: 0 });
  assert.equal(sub.dropped, 2);
  const seen: unknown[] = [];
  for await (const m of sub) {
    seen.push(m.value);
    if (seen.length === 3) break;
  }
  assert.deepEqual(seen, [2, 3, 4]);
  await client.close();
});

test('local dispatch follows subscriptions added and removed between deliveries on the same topic', async () => {
  const net = new FakeNet();
  net.autoOpen = true;
  const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'json' });
  const seen: string[] = [];
  const a = await client.subscribe('t/+', (v) => seen.push(`a${String(v)}`));
  net.last.push({ op: Op.delivery, topic: 't/1', payload: enc(1), flags: 0 });
  const b = await client.subscribe('t/#', (v) => seen.push(`b${String(v)}`));
  net.last.push({ op: Op.delivery, topic: 't/1', payload: enc(2), flags: 0 });
  await a.unsubscribe();
  net.last.push({ op: Op.delivery, topic: 't/1', payload: enc(3), flags: 0 });
  await b.unsubscribe();
  net.last.push({ op: Op.delivery, topic: 't/1', payload: enc(4), flags: 0 });
  assert.deepEqual(seen, ['a1', 'a2', 'b2', 'b3']);
  await client.close();
});

test('backpressure: while the socket holds more than maxBufferedBytes, publishes wait in the queue, in order', async () => {
  const net = new FakeNet();
  const client = await opened(net, { queue: { maxBufferedBytes: 1000, maxMessages: 3, overflow: 'error' } });
  net.last.bufferedAmount = 5000;
  await client.publish('bp/1', 1);
  const acked = client.publish('bp/2', 2, { ack: true });
  await client.publish('bp/3', 3);
  await assert.rejects(client.publish('bp/4', 4), QueueFullError); // the queue's policy bounds a publisher outrunning the link
  assert.equal(net.last.framesOf(Op.publish).length, 0);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(net.last.framesOf(Op.publish).length, 0); // still backed up
  net.last.bufferedAmount = 0;
  net.last.auto = true;
  await new Promise((r) => setTimeout(r, 30));
  await acked;
  await client.publish('bp/5', 5); // the queue is empty again: sent directly
  assert.deepEqual(net.last.framesOf(Op.publish).map((f) => f.topic), ['bp/1', 'bp/2', 'bp/3', 'bp/5']);
  await client.close();
});

test('a malformed URL fails connect at once, leaving no timer behind', async () => {
  await assert.rejects(connect('not a url'), (e: unknown) => e instanceof ConnectionError && e.code === ClientErrorCode.connectFailed);
  const client = await connect('http://[bad', { wait: false });
  assert.equal(client.state, 'closed');
});

test("browsers: the 'online' event ends a backoff wait at once; close removes the listener", async () => {
  const g = globalThis as { addEventListener?: unknown; removeEventListener?: unknown };
  const listeners = new Set<() => void>();
  g.addEventListener = (type: string, fn: () => void) => type === 'online' && listeners.add(fn);
  g.removeEventListener = (type: string, fn: () => void) => type === 'online' && listeners.delete(fn);
  try {
    const net = new FakeNet();
    const client = await opened(net, { reconnect: { minDelayMs: 60_000, maxDelayMs: 60_000 } });
    assert.equal(listeners.size, 1);
    for (const fn of listeners) fn(); // online while open: nothing to do
    assert.equal(net.sockets.length, 1);
    net.last.drop(1006);
    assert.equal(client.state, 'reconnecting');
    assert.equal(net.sockets.length, 1); // waiting up to a minute
    for (const fn of listeners) fn();
    assert.equal(net.sockets.length, 2);
    net.last.accept();
    assert.equal(client.state, 'open');
    await client.close();
    assert.equal(listeners.size, 0);
  } finally {
    delete g.addEventListener;
    delete g.removeEventListener;
  }
});
