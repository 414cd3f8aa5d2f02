/**
 * History with `--data` in the real broker process (issue 10): a graceful restart and a
 * `kill -9` keep retained values and history under the same epoch, every acknowledged history
 * message is replayed by a resume after the restart, and the stream continues above every
 * offset handed out before the crash (none is reused). On a full disk an acknowledged publish
 * to a history topic gets ERROR unavailable, the failure is logged and counted, and live traffic
 * keeps flowing (needs `mount -t tmpfs`, else it skips and says why). Also: a 100,000-message
 * replay to a stalled, then slow reader completes, in order, in bounded broker memory, nothing dropped.
 * A `kill -9` while a subscriber receives unacknowledged publishes leaves every offset it saw
 * replayable (resumes exact from any position); the same kill followed by a reboot (another boot
 * id in STREAM) starts a new epoch, so no resume claims recovered: true.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ErrorCode, Flag, Op, type ServerFrame } from 'topicast/protocol';
import { startBroker, type BrokerProcess } from '../helpers/broker.js';
import { withTmpfs } from '../helpers/tmpfs.js';
import { bytes, NativeClient, scrapeMetrics, watchRss, sleep, text, type Ack, type Delivery } from '../helpers/native-client.js';

const work = mkdtempSync(join(tmpdir(), 'topicast-history-'));
after(() => rmSync(work, { recursive: true, force: true }));

const ARGS = ['--history-filters', 'devices/#', '--sys-interval-sec', '0', '--max-publishes-per-sec', '0'];

function result(a: Awaited<ReturnType<NativeClient['subscribeRaw']>>): NonNullable<Ack['result']> {
  assert.equal(a.op, Op.ack, JSON.stringify(a));
  return a.result!;
}

/** Resumes `filters` from `offset` and returns the ACK and the replayed deliveries. */
async function resume(url: string, filters: string[], epoch: string, offset: number) {
  const c = await NativeClient.connect(url);
  const ack = result(await c.subscribeRaw(filters, { resume: { epoch, offset } }));
  await c.expect((f) => f.op === Op.snapshotEnd, 10_000);
  const replayed = c.deliveries().filter((d) => (d.flags & Flag.replayed) !== 0);
  return { c, ack, replayed };
}

for (const how of ['graceful', 'kill -9'] as const) {
  test(`${how} restart keeps retained values and history: every acknowledged message is replayed under the same epoch`, async (t) => {
    const data = join(work, how.replace(/\W/g, ''));
    const one = await startBroker({ args: [...ARGS, '--data', data], mqttOff: true });
    const pub = await NativeClient.connect(one.url);
    const sub = await NativeClient.connect(one.url);
    const { epoch } = result(await sub.subscribeRaw(['devices/#']));
    assert.equal((await pub.publish('devices/a/status', bytes('online'), { retain: true }))?.op, Op.ack);
    // Bursts: unacknowledged publishes, each burst closed by an acknowledged one (the ACK covers every earlier record).
    let acked = 0;
    for (let burst = 0; burst < 20; burst++) {
      for (let i = 0; i < 49; i++) void pub.publish(`devices/${i % 5}/temp`, bytes(`${burst}.${i}`), { ack: false });
      const a = await pub.publish('devices/0/temp', bytes(`${burst}.end`));
      assert.equal(a?.op, Op.ack);
      acked = 1 + (burst + 1) * 50;
    }
    if (how === 'kill -9') {
      // Killed with publishes in flight: those were never acknowledged, so they may or may not be kept.
      for (let i = 0; i < 200; i++) void pub.publish('devices/0/temp', bytes(`inflight.${i}`), { ack: false });
      await sleep(Math.floor(Math.random() * 5));
      one.kill('SIGKILL');
    } else await one.stop();
    await one.exited;

    const two = await startBroker({ args: [...ARGS, '--data', data], mqttOff: true });
    const { c, ack, replayed } = await resume(two.url, ['devices/#'], epoch!, 0);
    assert.equal(ack.epoch, epoch, 'history intact: same epoch');
    assert.equal(ack.recovered, true);
    t.diagnostic(`${acked} acknowledged, ${replayed.length} replayed after the restart`);
    if (how === 'graceful') assert.equal(replayed.length, acked, 'every message is replayed');
    else assert.ok(replayed.length >= acked && replayed.length <= acked + 200, `every acknowledged message is replayed (${replayed.length})`);
    assert.deepEqual(replayed.map((d) => d.offset), Array.from({ length: replayed.length }, (_, i) => i + 1), 'in offset order, none missing');
    assert.equal(text(replayed[acked - 1]!.payload), '19.end', 'the last acknowledged one');
    assert.equal(text(replayed[0]!.payload), 'online');
    const retained = await NativeClient.connect(two.url);
    const snap = await retained.subscribe(['devices/a/status']);
    assert.deepEqual(snap.retained.map((d) => text(d.payload)), ['online'], 'the retained value survives too');

    await c.publish('devices/9/temp', bytes('after restart'));
    const next = await c.expect((f) => f.op === Op.delivery && text(f.payload) === 'after restart') as Delivery;
    if (how === 'graceful') assert.equal(next.offset, acked + 1, 'a clean shutdown continues the stream as it was');
    // After a crash, offsets up to the reservation (1,000,000 ahead, STORAGE.md) may have reached clients unstored: skipped.
    else assert.ok(next.offset! > 1_000_000, `after a crash the stream continues above the reservation (${next.offset})`);
    await two.stop();
  });
}

/**
 * Runs a broker on `data` and kills it with SIGKILL while a subscriber receives a high-rate stream
 * of UNacknowledged history publishes (payload = its sequence number = offset - 1). Returns what
 * the subscriber saw (offset → payload) and the epoch.
 */
async function killMidStream(data: string, seenBeforeKill: number): Promise<{ epoch: string; seen: Map<number, string>; lastSeen: number }> {
  const one = await startBroker({ args: [...ARGS, ...DEEP, '--data', data], mqttOff: true });
  const seen = new Map<number, string>();
  let lastSeen = 0;
  let killed = false;
  const sub = await NativeClient.connect(one.url, {
    record: false,
    onFrame(f) {
      if (f.op !== Op.delivery || killed) return;
      seen.set(f.offset!, text(f.payload));
      lastSeen = f.offset!;
      if (seen.size >= seenBeforeKill) {
        killed = true;
        one.kill('SIGKILL'); // right after a delivery arrived: the records around it were just delivered
      }
    },
  });
  const id = sub.id();
  sub.send({ op: Op.subscribe, id, filters: ['devices/#'], options: { retained: false } });
  const { epoch } = result(await sub.answer(id));
  const pub = await NativeClient.connect(one.url, { record: false });
  let seq = 0;
  const deadline = Date.now() + 20_000;
  while (!killed && Date.now() < deadline) {
    for (let i = 0; i < 100; i++) pub.send({ op: Op.publish, id: 0, topic: `devices/${seq % 4}/temp`, payload: bytes(String(seq++)), flags: 0 });
    await sleep(0);
  }
  assert.ok(killed, `the subscriber saw ${seen.size} of ${seenBeforeKill} deliveries before the deadline`);
  await one.exited;
  sub.terminate();
  pub.terminate();
  return { epoch: epoch!, seen, lastSeen };
}

/** Keeps every message of the test streams (no bound evicts any). */
const DEEP = ['--history-max-messages', '1000000', '--history-max-bytes', String(256 * 1024 * 1024)];

test('kill -9 mid-stream (unacknowledged publishes): every offset a subscriber saw is replayable, resumes are exact', async (t) => {
  for (let round = 0; round < 3; round++) {
    const data = join(work, `midstream-${round}`);
    const { epoch, seen, lastSeen } = await killMidStream(data, 3000 + round * 1500);
    const two = await startBroker({ args: [...ARGS, ...DEEP, '--data', data], mqttOff: true });
    try {
      const offsets = [...seen.keys()];
      const earlier = offsets[Math.floor(offsets.length / 3)]!;
      const fromLast = await resume(two.url, ['devices/#'], epoch, lastSeen);
      const fromEarlier = await resume(two.url, ['devices/#'], epoch, earlier);
      const fromStart = await resume(two.url, ['devices/#'], epoch, 0);
      const stored = fromStart.replayed.length;
      t.diagnostic(`round ${round}: subscriber saw ${seen.size} (last offset ${lastSeen}), the log holds ${stored}`);
      for (const [from, r] of [[lastSeen, fromLast], [earlier, fromEarlier], [0, fromStart]] as const) {
        assert.equal(r.ack.epoch, epoch, 'same epoch after a process crash');
        assert.equal(r.ack.recovered, true, `resume from ${from} is recovered`);
        assert.deepEqual(r.replayed.map((d) => d.offset), Array.from({ length: stored - from }, (_, i) => from + 1 + i), `resume from ${from}: every stored offset after it, in order`);
        for (const d of r.replayed) assert.equal(text(d.payload), String(d.offset! - 1), 'the message published with that offset');
        await r.c.close();
      }
      assert.ok(stored >= lastSeen, `every offset delivered before the crash is in the log (saw up to ${lastSeen}, the log holds ${stored})`);
      for (const [offset, payload] of seen) assert.equal(payload, String(offset - 1));
    } finally {
      await two.stop();
    }
  }
});

test('kill -9, then a reboot (another boot id in STREAM): a new epoch, every earlier position gets recovered: false', async () => {
  const data = join(work, 'reboot');
  const { epoch, lastSeen } = await killMidStream(data, 500);
  const streamPath = join(data, 'history', 'STREAM');
  const stream = JSON.parse(readFileSync(streamPath, 'utf8')) as { clean: boolean; bootId: string };
  assert.equal(stream.clean, false, 'killed: STREAM was not marked clean');
  assert.equal(stream.bootId, readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim());
  writeFileSync(streamPath, JSON.stringify({ ...stream, bootId: 'a-boot-before-a-power-loss' }));
  const two = await startBroker({ args: [...ARGS, ...DEEP, '--data', data], mqttOff: true });
  try {
    for (const from of [lastSeen, 1, 0]) {
      const r = await resume(two.url, ['devices/#'], epoch, from);
      assert.notEqual(r.ack.epoch, epoch, 'a new epoch');
      assert.equal(r.ack.recovered, false, `resume from ${from}: not recovered`);
      assert.equal(r.replayed.length, 0);
      await r.c.close();
    }
    assert.ok(two.logs.some((l) => l.includes('boot id changed')), 'the reason is logged');
  } finally {
    await two.stop();
  }
});

test('a 100,000-message replay to a stalled, then slow reader completes in order, paced, in bounded broker memory', async (t) => {
  const COUNT = 100_000;
  const PAD = 'x'.repeat(170); // ~200-byte payloads: 100k are ~20 MB, far more than any socket buffer holds
  const broker = await startBroker({
    args: [...ARGS, '--history-max-messages', String(COUNT), '--history-max-bytes', String(256 * 1024 * 1024), '--slow-consumer-policy', 'drop'],
    mqttOff: true,
  });
  const pid = broker.proc.pid!;
  const pub = await NativeClient.connect(broker.url, { record: false });
  const first = await NativeClient.connect(broker.url);
  const { epoch } = result(await first.subscribeRaw(['devices/+/reading']));
  await first.close();
  for (let start = 0; start < COUNT; start += 2000) {
    for (let i = start; i < start + 1999; i++) void pub.publish(`devices/d${i % 50}/reading`, bytes(`${i}:${PAD}`), { ack: false });
    assert.equal((await pub.publish(`devices/d${(start + 1999) % 50}/reading`, bytes(`${start + 1999}:${PAD}`), { ack: true }, 10_000))?.op, Op.ack);
  }
  await sleep(200);
  const rss = await watchRss(pid);

  let received = 0;
  let outOfOrder = 0;
  let lastOffset = 0;
  let ackReplayed = -1;
  let ended = false;
  let liveAfterEnd = 0;
  const reader = await NativeClient.connect(broker.url, {
    record: false,
    onFrame(f: ServerFrame) {
      if (f.op === Op.ack && f.id === 1) ackReplayed = f.result?.replayed ?? -1;
      else if (f.op === Op.snapshotEnd) ended = true;
      else if (f.op === Op.delivery) {
        if (ended) {
          liveAfterEnd++;
          return;
        }
        if ((f.flags & Flag.replayed) === 0 || f.offset !== lastOffset + 1 || Number(text(f.payload).split(':')[0]) !== f.offset - 1) outOfOrder++;
        lastOffset = f.offset ?? -1;
        received++;
      }
    },
  });
  const started = Date.now();
  reader.send({ op: Op.subscribe, id: 1, filters: ['devices/+/reading'], options: { resume: { epoch: epoch!, offset: 0 } } });
  reader.pause();
  await sleep(1000);
  const stalled = await scrapeMetrics(broker.httpUrl);
  await pub.publish('devices/live/reading', bytes('live'), { ack: true }); // published mid-replay: follows SNAPSHOT_END
  const stop = reader.throttle(5);
  reader.resume();
  const deadline = Date.now() + 60_000;
  while ((!ended || liveAfterEnd < 1) && Date.now() < deadline) await sleep(20);
  stop();
  const { baseline, peak } = await rss.stop();
  const m = await scrapeMetrics(broker.httpUrl);
  t.diagnostic(`replay of ${COUNT} messages to a stalled (1 s), then slow reader: ${Date.now() - started} ms; RSS baseline ${(baseline / 2 ** 20).toFixed(1)} MiB, growth ${((peak - baseline) / 2 ** 20).toFixed(1)} MiB`);
  assert.equal(ackReplayed, COUNT);
  assert.equal(received, COUNT, 'every message replayed');
  assert.equal(outOfOrder, 0, 'offset order, flagged replayed, payloads intact');
  assert.equal(liveAfterEnd, 1, 'the live message published mid-replay comes after SNAPSHOT_END');
  assert.equal(m.get('topicast_dropped_total'), 0, 'the replay is never dropped by the slow-consumer policy');
  const sentWhileStalled = (stalled.get('topicast_bytes_sent_total') ?? 0);
  assert.ok(sentWhileStalled < 12 * 1024 * 1024, `paced: only a window was written while the reader stalled (${sentWhileStalled} bytes)`);
  const MAX_RSS_GROWTH_BYTES = 64 * 1024 * 1024; // generous: the replay holds references and one window of frames, not 20 MB of encodings
  assert.ok(peak - baseline < MAX_RSS_GROWTH_BYTES, `RSS growth ${peak - baseline} bytes within ${MAX_RSS_GROWTH_BYTES}`);
  await reader.close();
  await pub.close();
});

test('history on a full disk: the acknowledged publish gets ERROR unavailable, logged and counted; live traffic flows with offsets', async (t) => {
  await withTmpfs(t, work, 'full', '256k', async (mnt) => {
    let broker: BrokerProcess | undefined;
    try {
      broker = await startBroker({ args: [...ARGS, '--data', join(mnt, 'data')], mqttOff: true });
      const sub = await NativeClient.connect(broker.url);
      await sub.subscribe(['devices/#'], { retained: false });
      const pub = await NativeClient.connect(broker.url);
      try {
        writeFileSync(join(mnt, 'filler'), Buffer.alloc(256 * 1024)); // no room left for a 64 KiB record
      } catch (err) {
        assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
      }
      const answer = await pub.publish('devices/a/big', Buffer.alloc(64 * 1024, 1));
      assert.equal(answer?.op === Op.error && answer.code, ErrorCode.unavailable, 'not acknowledged: it is not stored');
      const live = await sub.expect((f) => f.op === Op.delivery && f.topic === 'devices/a/big') as Delivery;
      assert.equal(live.offset, 1, 'delivered live all the same, with its offset');
      await pub.publish('devices/a/small', bytes('still here'), { ack: false });
      const next = await sub.expect((f) => f.op === Op.delivery && f.topic === 'devices/a/small') as Delivery;
      assert.equal(next.offset, 2);
      assert.ok(broker.logs.some((l) => l.includes('history store') && l.includes('ENOSPC')), 'the failure is logged with the store and its cause');
      const m = await scrapeMetrics(broker.httpUrl);
      assert.ok((m.get('topicast_history_write_errors_total') ?? 0) >= 1, 'and counted');
    } finally {
      await broker?.stop();
    }
  });
});
