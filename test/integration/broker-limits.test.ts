/**
 * Every configurable limit of the broker (issue 2 "Limits"), enforced on the
 * real process over raw native frames: payload size, topic bytes and levels,
 * subscriptions per connection, connections (503 at the upgrade), publish rate
 * (ERROR rateLimited), idle timeout with pings (a peer that never answers pings is closed).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, ErrorCode, Op } from 'topicast/protocol';
import { startBroker, waitFor } from '../helpers/broker.js';
import { bytes, NativeClient, scrapeMetrics, sleep, within, type Ack, type ErrorFrame } from '../helpers/native-client.js';

const broker = await startBroker({
  args: [
    '--max-payload-bytes', '1000', '--max-topic-bytes', '64', '--max-topic-levels', '4',
    '--max-subscriptions-per-connection', '5', '--max-publishes-per-sec', '2', '--publish-burst', '20',
    '--idle-timeout-sec', '8', '--sys-interval-sec', '0',
  ],
  mqttOff: true,
});
const connect = (): Promise<NativeClient> => NativeClient.connect(broker.url);

// The idle-timeout clients start first so their 8 s run alongside the other tests; the last test checks them.
const idleStart = Date.now();
const silentPonging = await NativeClient.connect(broker.url, { autoPong: true });
const deaf = await NativeClient.connect(broker.url, { autoPong: false });
let pingsSeenByDeaf = 0;
deaf.ws.on('ping', () => pingsSeenByDeaf++);
const deafClosedAt = deaf.closed.then((info) => ({ ...info, afterMs: Date.now() - idleStart }));

function assertError(r: Ack | ErrorFrame | undefined, code: ErrorCode, what: string): void {
  assert.equal(r?.op, Op.error, `${what}: expected ERROR, got ${JSON.stringify(r)}`);
  assert.equal(r?.op === Op.error && r.code, code, `${what}: ${JSON.stringify(r)}`);
}

function assertAck(r: Ack | ErrorFrame | undefined, what: string): void {
  assert.equal(r?.op, Op.ack, `${what}: expected ACK, got ${JSON.stringify(r)}`);
}

test('WELCOME announces maxPayloadBytes and idleTimeoutSec as configured', async () => {
  const c = await connect();
  assert.equal(c.welcome?.maxPayloadBytes, 1000);
  assert.equal(c.welcome?.idleTimeoutSec, 8);
  await c.close();
});

test('--max-payload-bytes: at the limit accepted, above it ERROR payloadTooLarge, far above it close 1009', async () => {
  const c = await connect();
  const sub = await connect();
  await sub.subscribe(['lim/payload']);
  assertAck(await c.publish('lim/payload', new Uint8Array(1000).fill(7)), '1000 bytes');
  const d = await sub.expect((f) => f.op === Op.delivery && f.topic === 'lim/payload');
  assert.equal(d.op === Op.delivery && d.payload.length, 1000);
  assertError(await c.publish('lim/payload', new Uint8Array(1001)), ErrorCode.payloadTooLarge, '1001 bytes');
  assertError(await c.publish('lim/payload', new Uint8Array(1001), { retain: true }), ErrorCode.payloadTooLarge, '1001 bytes retained');
  assertError(await c.publish('lim/payload', new Uint8Array(2000)), ErrorCode.payloadTooLarge, '2000 bytes (frame within the WebSocket limit)');
  // A too-large will is refused like a publish.
  const id = c.id();
  c.send({ op: Op.will, id, will: { topic: 'lim/will', payload: new Uint8Array(1001), retain: false } });
  assertError(await c.answer(id), ErrorCode.payloadTooLarge, 'will');
  await c.ping();
  assert.ok(c.isOpen, 'refusals keep the connection open');
  await sub.ping();
  assert.equal(sub.deliveries('lim/payload').length, 1, 'refused publishes are not routed');
  // Beyond maxPayloadBytes + maxTopicBytes + 1024 the WebSocket layer closes with 1009 (PROTOCOL.md §1).
  c.send({ op: Op.publish, id: c.id(), topic: 'lim/payload', payload: new Uint8Array(3000), flags: 0 });
  const closed = await c.closed;
  assert.equal(closed.code, CloseCode.messageTooBig);
  await sub.close();
});

test('--max-topic-bytes: counted in UTF-8 bytes, for topics, filters and wills', async () => {
  const c = await connect();
  assertAck(await c.publish('t/' + 'x'.repeat(62), bytes('ok')), '64 bytes');
  assertError(await c.publish('t/' + 'x'.repeat(63), bytes('no')), ErrorCode.invalidTopic, '65 bytes');
  assertAck(await c.publish('t/' + 'é'.repeat(31), bytes('ok')), '64 UTF-8 bytes in 33 chars');
  assertError(await c.publish('t/' + 'é'.repeat(32), bytes('no')), ErrorCode.invalidTopic, '66 UTF-8 bytes in 34 chars');
  assertAck(await c.subscribeRaw(['t/' + 'x'.repeat(62)]), 'filter of 64 bytes');
  assertError(await c.subscribeRaw(['t/' + 'x'.repeat(61) + '/#']), ErrorCode.invalidFilter, 'filter of 66 bytes');
  const id = c.id();
  c.send({ op: Op.will, id, will: { topic: 'w/' + 'x'.repeat(63), payload: bytes('x'), retain: false } });
  assertError(await c.answer(id), ErrorCode.invalidTopic, 'will topic of 65 bytes');
  assert.ok(c.isOpen);
  await c.close();
});

test('--max-topic-levels: four levels pass, five are refused, for topics and filters', async () => {
  const c = await connect();
  assertAck(await c.publish('a/b/c/d', bytes('ok')), '4 levels');
  assertError(await c.publish('a/b/c/d/e', bytes('no')), ErrorCode.invalidTopic, '5 levels');
  assertError(await c.publish('a/b/c//', bytes('no')), ErrorCode.invalidTopic, '5 levels, two empty');
  assertAck(await c.subscribeRaw(['a/+/c/#']), 'filter of 4 levels');
  assertError(await c.subscribeRaw(['a/+/c/d/#']), ErrorCode.invalidFilter, 'filter of 5 levels');
  await c.close();
});

test('--max-subscriptions-per-connection: the sixth filter is refused, atomically; resubscribing and unsubscribing are counted right', async () => {
  const c = await connect();
  assertAck(await c.subscribeRaw(['s/1', 's/2', 's/3', 's/4']), 'four');
  assertError(await c.subscribeRaw(['s/5', 's/6']), ErrorCode.tooManySubscriptions, 'two more would make six');
  assertAck(await c.subscribeRaw(['s/1', 's/2']), 'resubscribing held filters adds nothing');
  assertAck(await c.subscribeRaw(['s/5']), 'the fifth (the refused batch added nothing)');
  assertError(await c.subscribeRaw(['s/6']), ErrorCode.tooManySubscriptions, 'the sixth');
  await c.unsubscribe(['s/1']);
  assertAck(await c.subscribeRaw(['s/6']), 'room again after UNSUBSCRIBE');
  // The refused filters really are not subscribed: nothing published on s/7 arrives.
  assertError(await c.subscribeRaw(['s/7']), ErrorCode.tooManySubscriptions, 'still full');
  const p = await connect();
  await p.publish('s/7', bytes('x'));
  await p.publish('s/6', bytes('x'));
  await c.expect((f) => f.op === Op.delivery && f.topic === 's/6');
  assert.equal(c.deliveries('s/7').length, 0);
  // Limits are per connection: another connection has its own five.
  assertAck(await p.subscribeRaw(['s/1', 's/2', 's/3', 's/4', 's/5']), 'another connection');
  await Promise.all([c.close(), p.close()]);
});

test('--max-subscriptions-per-connection counts a filter repeated in one SUBSCRIBE once', async () => {
  const c = await connect();
  assertAck(await c.subscribeRaw(['d/1', 'd/2', 'd/3', 'd/4']), 'four');
  assertAck(await c.subscribeRaw(['d/5', 'd/5']), 'one new filter, twice: five in all');
  assertError(await c.subscribeRaw(['d/6']), ErrorCode.tooManySubscriptions, 'the sixth');
  await c.close();
});

test('--max-publishes-per-sec with --publish-burst: beyond the burst ERROR rateLimited, counted, refilled over time', async () => {
  const c = await connect();
  const sub = await connect();
  await sub.subscribe(['rate/#']);
  const before = (await scrapeMetrics(broker.httpUrl)).get('topicast_rate_limited_total') ?? 0;
  const ids: number[] = [];
  const sentAt = Date.now();
  for (let i = 0; i < 40; i++) {
    const id = c.id();
    ids.push(id);
    c.send({ op: Op.publish, id, topic: `rate/${i}`, payload: bytes(String(i)), flags: 0 });
  }
  const answers = await Promise.all(ids.map((id) => c.answer(id)));
  // At 2 per second, what refills while the 40 are processed is ~0, even on a starved machine.
  const refill = Math.ceil(((Date.now() - sentAt) / 1000) * 2);
  const acked = answers.filter((a) => a.op === Op.ack).length;
  const limited = answers.filter((a) => a.op === Op.error && a.code === ErrorCode.rateLimited).length;
  assert.equal(acked + limited, 40, JSON.stringify(answers.filter((a) => a.op === Op.error && a.code !== ErrorCode.rateLimited)));
  assert.ok(acked >= 20 && acked <= 20 + refill, `the burst of 20 (plus ${refill} refilled) passes: ${acked}`);
  assert.ok(limited >= 20 - refill, `the rest is refused: ${limited}`);
  // id 0: refused silently, but counted.
  for (let i = 0; i < 5; i++) c.send({ op: Op.publish, id: 0, topic: 'rate/silent', payload: bytes('x'), flags: 0 });
  await c.ping();
  const after = (await scrapeMetrics(broker.httpUrl)).get('topicast_rate_limited_total') ?? 0;
  assert.ok(after - before >= limited + 4, `topicast_rate_limited_total counts refusals (${after - before})`);
  await sub.ping();
  assert.equal(sub.deliveries().filter((d) => d.topic.startsWith('rate/')).length, acked, 'refused publishes are not routed');
  assert.ok(c.isOpen, 'rate limiting keeps the connection open');
  // Refill: 2 per second.
  await sleep(1100);
  assertAck(await c.publish('rate/later', bytes('x')), 'after a second tokens are back');
  // Other connections are not limited by this one's bucket.
  const other = await connect();
  assertAck(await other.publish('rate/other', bytes('x')), 'another connection');
  await Promise.all([c.close(), sub.close(), other.close()]);
});

test('--max-connections: the next upgrade gets HTTP 503 with a JSON error; a slot frees when a client leaves', async () => {
  const small = await startBroker({ args: ['--max-connections', '3', '--sys-interval-sec', '0'], mqttOff: true });
  const open = await Promise.all([0, 1, 2].map(() => NativeClient.connect(small.url)));
  await assert.rejects(NativeClient.connect(small.url), (err: Error & { status?: number; body?: string }) => {
    assert.equal(err.status, 503, err.message);
    assert.equal((JSON.parse(err.body ?? '{}') as { error?: { code?: number } }).error?.code, ErrorCode.tooManyConnections);
    return true;
  });
  const m = await scrapeMetrics(small.httpUrl);
  assert.ok((m.get('topicast_connections_refused_total') ?? 0) >= 1);
  // The open ones keep working.
  await open[0]!.ping();
  await open[2]!.close();
  await waitFor(async () => (await scrapeMetrics(small.httpUrl)).get('topicast_connections_open') === 2, 'the broker to see the close');
  const again = await NativeClient.connect(small.url);
  await again.ping();
  await Promise.all([again, open[0]!, open[1]!].map((c) => c.close()));
  await small.stop();
});

test('--max-retained-topics: new retained topics beyond it are refused (native ERROR unavailable, HTTP 503); updates and deletes still work', async () => {
  const b = await startBroker({ args: ['--max-retained-topics', '30', '--sys-interval-sec', '0'], mqttOff: true });
  const base = (await scrapeMetrics(b.httpUrl)).get('topicast_retained_messages') ?? 0; // the broker's own $SYS values
  assert.ok(base < 30, `room left after $SYS (${base})`);
  const c = await NativeClient.connect(b.url);
  for (let i = 0; i < 30 - base; i++) assertAck(await c.publish(`keep/${i}`, bytes('v'), { retain: true }), `retained ${i}`);
  assertError(await c.publish('keep/over', bytes('v'), { retain: true }), ErrorCode.unavailable, 'one more');
  assertAck(await c.publish('keep/over', bytes('v')), 'a non-retained publish is not limited');
  assertAck(await c.publish('keep/0', bytes('v2'), { retain: true }), 'updating an existing retained topic');
  const http = await fetch(`${b.httpUrl}/api/publish/keep/http?retain=1`, { method: 'POST', body: 'x' });
  assert.equal(http.status, 503);
  assertAck(await c.publish('keep/1', new Uint8Array(0), { retain: true }), 'delete');
  assertAck(await c.publish('keep/over', bytes('v'), { retain: true }), 'room again after a delete');
  const s = await c.subscribe(['keep/#']);
  assert.equal(s.count, 30 - base);
  assert.equal((await scrapeMetrics(b.httpUrl)).get('topicast_retained_messages'), 30);
  await c.close();
  await b.stop();
});

test('--idle-timeout-sec 8: a peer that never answers pings is closed; one that answers them stays', async (t) => {
  const closed = await within(deafClosedAt, Math.max(0, 25_000 - (Date.now() - idleStart)));
  assert.ok(closed, `the deaf client was closed within 25 s (pings seen: ${pingsSeenByDeaf})`);
  t.diagnostic(`deaf client closed after ${closed.afterMs} ms with ${closed.code}; pings it ignored: ${pingsSeenByDeaf}`);
  assert.ok(pingsSeenByDeaf >= 1, 'the broker pinged before closing');
  assert.ok(closed.afterMs >= 4000, `not closed early (${closed.afterMs} ms)`);
  // The silent but ponging client outlived the deaf one and a full idle period.
  const waitMore = 8500 - (Date.now() - idleStart);
  if (waitMore > 0) await sleep(waitMore);
  assert.ok(silentPonging.isOpen, 'a client that answers pings is kept');
  await silentPonging.ping();
  await silentPonging.close();
});
