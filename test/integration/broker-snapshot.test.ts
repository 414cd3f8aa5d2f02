/**
 * The retained snapshot at scale (issue 2): a subscriber to `devices/#` over
 * 100,000 retained topics that stalls and then reads slowly gets every one of
 * them, once, flagged retained, between an ACK carrying the count and
 * SNAPSHOT_END, with live messages after it, while the broker's resident memory
 * stays bounded and the slow-consumer policy (here `drop`, the harshest for a
 * snapshot) counts nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Flag, Op, type ServerFrame } from 'topicast/protocol';
import { startBroker } from '../helpers/broker.js';
import { bytes, NativeClient, scrapeMetrics, watchRss, sleep, text, within } from '../helpers/native-client.js';

const TOPICS = 100_000;
const BATCH = 2_000;
/** Generous: the snapshot's message references and frames cached per message, not the bytes of the whole snapshot many times over. */
const MAX_RSS_GROWTH_BYTES = 150 * 1024 * 1024;

/** ~200-byte payloads (a reading with metadata): 100k of them are ~24 MB, far more than any socket buffer holds. */
const PAD = 'x'.repeat(170);
const valueOf = (i: number): string => `{"v":${i},"u":"C","m":"${PAD}"}`;
const topicOf = (i: number): string => `devices/dev-${String(Math.floor(i / 100)).padStart(4, '0')}/sensor-${String(i % 100).padStart(2, '0')}`;

test('a 100,000-topic retained snapshot reaches a stalled, slow reader complete, in bounded memory, nothing dropped', async (t) => {
  const broker = await startBroker({
    // No publish rate limit for the loader; the drop policy would lose snapshot frames if it applied to them.
    args: ['--max-publishes-per-sec', '0', '--slow-consumer-policy', 'drop', '--sys-interval-sec', '0'],
    mqttOff: true,
  });
  const pid = broker.proc.pid!;

  const loader = await NativeClient.connect(broker.url);
  const retainedAtStart = (await scrapeMetrics(broker.httpUrl)).get('topicast_retained_messages') ?? 0; // the broker's own $SYS values
  const loadStart = Date.now();
  for (let start = 0; start < TOPICS; start += BATCH) {
    const end = Math.min(TOPICS, start + BATCH);
    for (let i = start; i < end - 1; i++) await loader.publish(topicOf(i), bytes(valueOf(i)), { retain: true, ack: false });
    const ack = await loader.publish(topicOf(end - 1), bytes(valueOf(end - 1)), { retain: true }, 10_000);
    assert.equal(ack?.op, Op.ack, `batch ending at ${end}`);
  }
  const loadMs = Date.now() - loadStart;
  const before = await scrapeMetrics(broker.httpUrl);
  assert.equal(before.get('topicast_retained_messages'), retainedAtStart + TOPICS);

  // Baseline once the store is full and the loader's traffic has settled.
  await sleep(200);
  const rss = await watchRss(pid);

  // The reader records nothing but what the assertions need: 100k frames in memory would be the test's own balloon.
  const seen = new Set<string>();
  let duplicates = 0;
  let notRetained = 0;
  let wrongPayload = 0;
  let ackCount = -1;
  let ackPosition = -1;
  let endPosition = -1;
  let received = 0;
  const liveAfterEnd: string[] = [];
  const liveBeforeEnd: string[] = [];
  const id = 7;
  const reader = await NativeClient.connect(broker.url, {
    record: false,
    onFrame(f: ServerFrame) {
      received++;
      if (f.op === Op.ack && f.id === id) {
        ackCount = f.result?.retained ?? -1;
        ackPosition = received;
      } else if (f.op === Op.snapshotEnd && f.id === id) {
        endPosition = received;
      } else if (f.op === Op.delivery) {
        if ((f.flags & Flag.retain) === 0) {
          (endPosition < 0 ? liveBeforeEnd : liveAfterEnd).push(text(f.payload));
          return;
        }
        if (endPosition >= 0) notRetained++; // a retained-flagged delivery after SNAPSHOT_END does not belong to the snapshot
        if (seen.has(f.topic)) duplicates++;
        seen.add(f.topic);
        const i = Number(/dev-(\d+)\/sensor-(\d+)$/.exec(f.topic)?.slice(1).reduce((a, b) => a * 100 + Number(b), 0));
        if (text(f.payload) !== valueOf(i)) wrongPayload++;
      }
    },
  });
  const snapshotStart = Date.now();
  reader.send({ op: Op.subscribe, id, filters: ['devices/#'], options: {} });
  reader.pause();
  // Published while the reader is stalled mid-snapshot: a new retained value of one topic and the
  // deletion of another. The snapshot shows both as they were at the SUBSCRIBE; the changes follow it, live.
  await sleep(300);
  await loader.publish(topicOf(42), bytes('live-42'), { retain: true });
  await loader.publish(topicOf(43), new Uint8Array(0), { retain: true });
  await sleep(1200);
  const stalledMetrics = await scrapeMetrics(broker.httpUrl);

  // Read slowly: pause 10 ms after every chunk the socket reads (≈ 6 MB/s at most).
  const stopThrottle = reader.throttle(10);
  reader.resume();
  const deadline = Date.now() + 40_000;
  while ((endPosition < 0 || liveAfterEnd.length < 2) && Date.now() < deadline) await sleep(20);
  stopThrottle();
  const snapshotMs = Date.now() - snapshotStart;
  const { baseline, peak } = await rss.stop();
  const after = await scrapeMetrics(broker.httpUrl);

  t.diagnostic(`load ${TOPICS} retained: ${loadMs} ms; snapshot to a stalled (1.5 s) then slow reader: ${snapshotMs} ms`);
  t.diagnostic(`broker RSS baseline ${(baseline / 2 ** 20).toFixed(1)} MiB, peak ${(peak / 2 ** 20).toFixed(1)} MiB, growth ${((peak - baseline) / 2 ** 20).toFixed(1)} MiB`);
  t.diagnostic(`frames sent during the stall: ${(stalledMetrics.get('topicast_frames_sent_total') ?? 0) - (before.get('topicast_frames_sent_total') ?? 0)}`);

  assert.ok(endPosition > 0, `SNAPSHOT_END arrived (received ${received} frames, ${seen.size} distinct retained topics)`);
  assert.equal(ackCount, TOPICS, 'ACK carries the retained count');
  assert.equal(ackPosition, 2, 'ACK right after WELCOME, before any delivery');
  assert.equal(seen.size, TOPICS, 'every retained topic delivered');
  assert.equal(duplicates, 0, 'each topic once');
  assert.equal(wrongPayload, 0, 'payload bytes unchanged; the snapshot holds the values as of the SUBSCRIBE');
  assert.equal(notRetained, 0);
  assert.equal(endPosition, TOPICS + 3, 'SNAPSHOT_END right after the last retained delivery');
  assert.deepEqual(liveBeforeEnd, [], 'no live delivery inside the snapshot');
  assert.deepEqual(liveAfterEnd, ['live-42', ''], 'the update and the deletion published mid-snapshot follow SNAPSHOT_END, live');
  assert.equal(after.get('topicast_dropped_total'), 0, 'nothing dropped by the slow-consumer policy');
  assert.equal(after.get('topicast_conflated_total'), 0);
  assert.equal(after.get('topicast_slow_consumer_disconnects_total'), 0);
  assert.ok(reader.isOpen, 'the slow reader is still connected');
  assert.ok(peak - baseline < MAX_RSS_GROWTH_BYTES, `RSS growth ${peak - baseline} bytes within ${MAX_RSS_GROWTH_BYTES}`);
  // Paced: while the reader was stalled the broker did not push the whole snapshot into its own buffers.
  const stalledSent = (stalledMetrics.get('topicast_bytes_sent_total') ?? 0) - (before.get('topicast_bytes_sent_total') ?? 0);
  assert.ok(stalledSent < 12 * 1024 * 1024, `only a window of the snapshot was written while stalled (${stalledSent} bytes)`);
  await Promise.all([reader.close(), loader.close()]);
});

test('a snapshot reader that sends PINGs mid-snapshot is neither disconnected nor cut short, even with --max-buffered-bytes below the snapshot window', async () => {
  // maxBufferedBytes 64 KiB < snapshotWindowBytes 256 KiB (default): the snapshot may fill the socket buffer
  // beyond the live-data limit, and that must not count against the reader (PROTOCOL.md §4.1: never dropped).
  const SMALL = 20_000;
  const broker = await startBroker({
    args: ['--max-publishes-per-sec', '0', '--slow-consumer-policy', 'disconnect', '--max-buffered-bytes', '65536', '--sys-interval-sec', '0'],
    mqttOff: true,
  });
  const loader = await NativeClient.connect(broker.url);
  for (let start = 0; start < SMALL; start += BATCH) {
    for (let i = start; i < start + BATCH - 1; i++) await loader.publish(topicOf(i), bytes(valueOf(i)), { retain: true, ack: false });
    assert.equal((await loader.publish(topicOf(start + BATCH - 1), bytes(valueOf(start + BATCH - 1)), { retain: true }, 10_000))?.op, Op.ack);
  }
  let retained = 0;
  let end = false;
  let pongs = 0;
  const reader = await NativeClient.connect(broker.url, {
    record: false,
    onFrame(f) {
      if (f.op === Op.delivery && (f.flags & Flag.retain) !== 0) retained++;
      else if (f.op === Op.snapshotEnd) end = true;
      else if (f.op === Op.pong) pongs++;
    },
  });
  reader.send({ op: Op.subscribe, id: 1, filters: ['devices/#'], options: {} });
  reader.pause();
  await sleep(300);
  // Heartbeats while stalled, as the SDK sends them.
  for (let i = 0; i < 3; i++) {
    reader.send({ op: Op.ping, id: 100 + i });
    await sleep(100);
  }
  const stop = reader.throttle(5);
  reader.resume();
  const deadline = Date.now() + 20_000;
  while ((!end || pongs < 3) && reader.isOpen && Date.now() < deadline) await sleep(20);
  stop();
  const m = await scrapeMetrics(broker.httpUrl);
  assert.ok(reader.isOpen, `the reader was not disconnected (close ${JSON.stringify(reader.closeInfo)}, ${retained} retained received)`);
  assert.equal(m.get('topicast_slow_consumer_disconnects_total'), 0);
  assert.equal(retained, SMALL, 'the whole snapshot');
  assert.ok(end, 'SNAPSHOT_END');
  assert.equal(pongs, 3, 'every PING answered');

  // Readers that go away mid-snapshot (reset, clean close, unsubscribe) cost nothing lasting.
  const quitters = await Promise.all(Array.from({ length: 6 }, () => NativeClient.connect(broker.url, { record: false })));
  for (const q of quitters) {
    q.send({ op: Op.subscribe, id: 1, filters: ['devices/#'], options: {} });
    q.pause();
  }
  await sleep(200);
  quitters[0]!.terminate();
  quitters[1]!.terminate();
  quitters[2]!.send({ op: Op.unsubscribe, id: 2, filters: ['devices/#'] });
  quitters[3]!.resume();
  quitters[3]!.terminate();
  void quitters[4]!.close(1000);
  quitters[4]!.resume();
  quitters[5]!.resume();
  quitters[5]!.send(new Uint8Array([0xc1])); // malformed mid-snapshot: closed 1002 behind the queued snapshot
  await within(quitters[5]!.closed, 10_000);
  await within(quitters[4]!.closed, 10_000);
  quitters[2]!.terminate();
  const open = async (): Promise<number | undefined> => (await scrapeMetrics(broker.httpUrl)).get('topicast_connections_open');
  const deadline2 = Date.now() + 5000;
  while ((await open()) !== 2 && Date.now() < deadline2) await sleep(20);
  assert.equal(await open(), 2, 'only the loader and the reader remain');
  assert.equal(broker.proc.exitCode, null);
  await reader.ping();
  await Promise.all([reader.close(), loader.close()]);
  await broker.stop();
});
