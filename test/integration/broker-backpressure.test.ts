/**
 * Slow-consumer policies (issue 2, PROTOCOL.md §5) against the real broker:
 * one subscriber stops reading its socket while another reads normally and a
 * publisher sends far more than the socket buffers hold. The stalled one is
 * handled by the policy (drop, conflate, disconnect), the metrics count it, the
 * other subscriber receives everything in order, and the broker's memory stays put.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CloseCode, Op, type ServerFrame } from 'topicast/protocol';
import { startBroker } from '../helpers/broker.js';
import { bytes, isDelivery, NativeClient, rssBytes, scrapeMetrics, sleep, text, within } from '../helpers/native-client.js';

const MAX_BUFFERED = 64 * 1024;
const TOPICS = 16;
/** At most 40,000 × ~1 KiB ≈ 40 MiB; in practice the policy engages after a few MiB (the loopback socket buffers). */
const MAX_MESSAGES = 40_000;
/** Publishes per acknowledged batch: 16 KiB per event-loop turn stays well under the limit for a reader that keeps up; a whole round of topics. */
const BATCH = 16;
const PAD = 'p'.repeat(1000);

interface Received {
  count: number;
  /** Last sequence number per topic. */
  last: Map<string, number>;
  /** Deliveries whose sequence number was not above the previous one on the same topic. */
  outOfOrder: number;
}

function tracker(): { received: Received; onFrame: (f: ServerFrame) => void } {
  const received: Received = { count: 0, last: new Map(), outOfOrder: 0 };
  return {
    received,
    onFrame(f) {
      if (f.op !== Op.delivery || !f.topic.startsWith('bp/')) return;
      received.count++;
      const seq = Number(text(f.payload).split(' ', 1)[0]);
      if ((received.last.get(f.topic) ?? -1) >= seq) received.outOfOrder++;
      received.last.set(f.topic, seq);
    },
  };
}

async function scenario(policy: 'drop' | 'conflate' | 'disconnect', extraArgs: string[] = []) {
  const broker = await startBroker({
    args: ['--slow-consumer-policy', policy, '--max-buffered-bytes', String(MAX_BUFFERED), '--max-publishes-per-sec', '0', '--sys-interval-sec', '0', ...extraArgs],
    mqttOff: true,
  });
  const stalledT = tracker();
  const fastT = tracker();
  const stalled = await NativeClient.connect(broker.url, { record: false, onFrame: stalledT.onFrame });
  const fast = await NativeClient.connect(broker.url, { record: false, onFrame: fastT.onFrame });
  const publisher = await NativeClient.connect(broker.url);
  // The stalled subscriber's will tells whether the broker ended it (PROTOCOL.md §4.5: a close for slow consumption is not clean).
  await stalled.setWill('bpwill/stalled', bytes('gone'));
  const watcher = await NativeClient.connect(broker.url);
  await watcher.subscribe(['bpwill/#']);
  for (const c of [stalled, fast]) {
    const id = c.id();
    c.send({ op: Op.subscribe, id, filters: ['bp/#'], options: {} });
    await c.expect((f) => f.op === Op.snapshotEnd && f.id === id);
  }
  stalled.pause();
  const rssBefore = await rssBytes(broker.proc.pid!);
  const started = Date.now();
  // Publish until the policy has engaged (how much loopback buffers absorb differs between machines),
  // then 2,000 more, ending on a whole round of topics so the latest value of topic k is `sent - TOPICS + k`.
  let sent = 0;
  let engagedAt = -1;
  while (sent < MAX_MESSAGES && (engagedAt < 0 || sent < engagedAt + 2000)) {
    for (let b = 0; b < BATCH; b++, sent++) {
      const last = b === BATCH - 1;
      const r = await publisher.publish(`bp/t${sent % TOPICS}`, bytes(`${sent} ${PAD}`), { ack: last });
      if (last) assert.equal(r?.op, Op.ack);
    }
    if (engagedAt < 0 && sent % 1024 === 0) {
      const m = await scrapeMetrics(broker.httpUrl);
      if ((m.get('topicast_dropped_total') ?? 0) + (m.get('topicast_conflated_total') ?? 0) + (m.get('topicast_slow_consumer_disconnects_total') ?? 0) > 0) engagedAt = sent;
    }
  }
  assert.ok(engagedAt > 0, `the policy engaged within ${MAX_MESSAGES} messages`);
  // The reading subscriber gets everything while the other is stalled.
  const deadline = Date.now() + 20_000;
  while (fastT.received.count < sent && Date.now() < deadline) await sleep(10);
  const fastMs = Date.now() - started;
  const rssAfter = await rssBytes(broker.proc.pid!);
  const metrics = await scrapeMetrics(broker.httpUrl);
  return { published: sent, broker, stalled, stalledT: stalledT.received, fast, fastT: fastT.received, publisher, watcher, metrics, fastMs, rssGrowth: rssAfter - rssBefore };
}

function assertFastGotEverything(r: Awaited<ReturnType<typeof scenario>>): void {
  assert.equal(r.fastT.count, r.published, 'the reading subscriber received every message');
  assert.equal(r.fastT.outOfOrder, 0, 'in order per topic');
  assert.ok(r.fast.isOpen);
  assert.ok(r.fastMs < 15_000, `not slowed down (${r.fastMs} ms)`);
  // 8 MiB went to the stalled subscriber's side; at most the limit (plus a backstop) may pile up.
  assert.ok(r.rssGrowth < 40 * 1024 * 1024, `broker memory bounded (RSS grew ${r.rssGrowth} bytes)`);
}

test('drop: the stalled subscriber loses the newest messages, counted; the other receives everything', async (t) => {
  const r = await scenario('drop');
  assertFastGotEverything(r);
  const dropped = r.metrics.get('topicast_dropped_total') ?? 0;
  t.diagnostic(`drop: ${dropped} dropped, fast subscriber done in ${r.fastMs} ms, RSS +${(r.rssGrowth / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(dropped > 0, 'topicast_dropped_total moved');
  assert.equal(r.metrics.get('topicast_conflated_total'), 0);
  assert.equal(r.metrics.get('topicast_slow_consumer_disconnects_total'), 0);
  // Resume: the stalled one gets what was not dropped, in order, and stays connected.
  r.stalled.resume();
  await r.stalled.ping(10_000);
  assert.ok(r.stalledT.count < r.published, `some messages were dropped (${r.stalledT.count} received)`);
  assert.equal(r.stalledT.count + dropped, r.published, 'every message either delivered or counted as dropped');
  assert.equal(r.stalledT.outOfOrder, 0);
  // Drained: new messages reach it again.
  await r.publisher.publish('bp/t0', bytes(`${r.published} after`));
  const deadline = Date.now() + 5000;
  while (r.stalledT.last.get('bp/t0') !== r.published && Date.now() < deadline) await sleep(10);
  assert.equal(r.stalledT.last.get('bp/t0'), r.published, 'delivers again after draining');
  assert.ok(r.stalled.isOpen);
  await r.watcher.ping();
  assert.equal(r.watcher.deliveries('bpwill/stalled').length, 0, 'no will: the connection lives');
  await r.broker.stop();
});

test('conflate: the stalled subscriber gets the latest value of every topic after it resumes; replaced values are counted', async (t) => {
  const r = await scenario('conflate');
  assertFastGotEverything(r);
  const conflated = r.metrics.get('topicast_conflated_total') ?? 0;
  t.diagnostic(`conflate: ${conflated} conflated, fast subscriber done in ${r.fastMs} ms, RSS +${(r.rssGrowth / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(conflated > 0, 'topicast_conflated_total moved');
  assert.equal(r.metrics.get('topicast_dropped_total'), 0, 'with 16 topics nothing needs dropping');
  assert.equal(r.metrics.get('topicast_slow_consumer_disconnects_total'), 0);
  r.stalled.resume();
  const lastSeq = (topic: number): number => r.published - TOPICS + topic;
  const deadline = Date.now() + 10_000;
  const done = (): boolean => [...Array(TOPICS).keys()].every((k) => r.stalledT.last.get(`bp/t${k}`) === lastSeq(k));
  while (!done() && Date.now() < deadline) await sleep(10);
  for (let k = 0; k < TOPICS; k++) assert.equal(r.stalledT.last.get(`bp/t${k}`), lastSeq(k), `latest value of bp/t${k} delivered`);
  assert.equal(r.stalledT.outOfOrder, 0, 'never an older value after a newer one');
  assert.ok(r.stalledT.count < r.published);
  assert.equal(r.stalledT.count + conflated, r.published, 'every message either delivered or counted as replaced');
  assert.ok(r.stalled.isOpen);
  await r.stalled.ping();
  await r.watcher.ping();
  assert.equal(r.watcher.deliveries('bpwill/stalled').length, 0, 'no will: the connection lives');
  await r.broker.stop();
});

test('conflate with --max-conflated-topics 4: topics beyond it are dropped and counted; every message is accounted for', async (t) => {
  const r = await scenario('conflate', ['--max-conflated-topics', '4']);
  assertFastGotEverything(r);
  const conflated = r.metrics.get('topicast_conflated_total') ?? 0;
  const dropped = r.metrics.get('topicast_dropped_total') ?? 0;
  t.diagnostic(`conflate (4 topics max): ${conflated} conflated, ${dropped} dropped`);
  assert.ok(conflated > 0, 'some replaced');
  assert.ok(dropped > 0, 'some dropped: 16 topics do not fit in 4');
  r.stalled.resume();
  // The conflated entries are flushed once the queue has drained, possibly after a PONG: wait for the count.
  const deadline = Date.now() + 10_000;
  while (r.stalledT.count + conflated + dropped < r.published && Date.now() < deadline) await sleep(10);
  await r.stalled.ping();
  await sleep(50);
  assert.equal(r.stalledT.count + conflated + dropped, r.published, 'delivered + replaced + dropped = published');
  assert.equal(r.stalledT.outOfOrder, 0);
  // Exactly four topics were kept while backed up: their latest values arrived.
  const latest = [...Array(TOPICS).keys()].filter((k) => r.stalledT.last.get(`bp/t${k}`) === r.published - TOPICS + k);
  assert.equal(latest.length, 4, `latest values delivered for ${JSON.stringify(latest)}`);
  await r.broker.stop();
});

test('disconnect: the stalled subscriber is closed with 4008, counted; the other receives everything', async (t) => {
  const r = await scenario('disconnect');
  assertFastGotEverything(r);
  const disconnects = r.metrics.get('topicast_slow_consumer_disconnects_total') ?? 0;
  t.diagnostic(`disconnect: ${disconnects} disconnects, fast subscriber done in ${r.fastMs} ms`);
  assert.equal(disconnects, 1, 'topicast_slow_consumer_disconnects_total moved, once');
  assert.equal(r.metrics.get('topicast_dropped_total'), 0);
  r.stalled.resume();
  const closed = await within(r.stalled.closed, 10_000);
  assert.ok(closed, 'the stalled connection is closed');
  assert.equal(closed.code, CloseCode.slowConsumer);
  assert.equal(closed.reason, 'slow consumer');
  assert.ok(r.stalledT.count < r.published);
  assert.equal(text((await r.watcher.expect(isDelivery('bpwill/stalled'))).payload), 'gone', 'the will of the disconnected subscriber is published');
  assert.ok(r.fast.isOpen);
  await r.fast.ping();
  const m = await scrapeMetrics(r.broker.httpUrl);
  assert.equal(m.get('topicast_connections_open'), 3, 'the broker forgot the closed connection (fast, publisher, watcher remain)');
  await r.broker.stop();
});

test('a burst larger than maxBufferedBytes to subscribers that read at full speed is delivered in full, under every policy', async () => {
  // 256 × 1 KiB in one go: four times the 64 KiB limit, but the subscribers read as fast as loopback goes,
  // so none of them is a slow consumer: the kernel's socket buffers alone hold more than the burst.
  const BURST = 256;
  for (const policy of ['drop', 'disconnect'] as const) {
    const broker = await startBroker({
      args: ['--slow-consumer-policy', policy, '--max-buffered-bytes', String(MAX_BUFFERED), '--max-publishes-per-sec', '0', '--sys-interval-sec', '0'],
      mqttOff: true,
    });
    const t = tracker();
    const reader = await NativeClient.connect(broker.url, { record: false, onFrame: t.onFrame });
    const id = reader.id();
    reader.send({ op: Op.subscribe, id, filters: ['bp/#'], options: {} });
    await reader.expect((f) => f.op === Op.snapshotEnd && f.id === id);
    const publisher = await NativeClient.connect(broker.url);
    for (let i = 0; i < BURST; i++) publisher.send({ op: Op.publish, id: 0, topic: `bp/t${i % TOPICS}`, payload: bytes(`${i} ${PAD}`), flags: 0 });
    await publisher.ping();
    const deadline = Date.now() + 3000;
    while (t.received.count < BURST && reader.isOpen && Date.now() < deadline) await sleep(10);
    const m = await scrapeMetrics(broker.httpUrl);
    assert.ok(reader.isOpen, `${policy}: the reading subscriber was not disconnected (close ${JSON.stringify(reader.closeInfo)})`);
    assert.equal(m.get('topicast_dropped_total'), 0, `${policy}: nothing dropped for a subscriber that keeps up`);
    assert.equal(t.received.count, BURST, `${policy}: every message of the burst delivered`);
    await broker.stop();
  }
});
