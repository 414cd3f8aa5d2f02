/**
 * Byte bounds that hold (README "Configuration", PROTOCOL.md §4.3, session/outbox.ts): the
 * conflate policy keeps at most maxBufferedBytes per backed-up connection, and retained values
 * at most maxRetainedBytes, refused as "store full" on every protocol. The broker's resident
 * memory is sampled and reported (t.diagnostic); the assertions are on its own byte counters.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { ErrorCode, Op } from 'topicast/protocol';
import { startBroker } from '../helpers/broker.js';
import { isDelivery, NativeClient, scrapeMetrics, watchRss } from '../helpers/native-client.js';

const MiB = 1024 * 1024;

test('conflate is held to maxBufferedBytes per stalled subscriber', async (t) => {
  const broker = await startBroker({ args: ['--slow-consumer-policy', 'conflate', '--max-buffered-bytes', String(MiB)] });
  const subscribers = await Promise.all([0, 1, 2, 3].map(() => NativeClient.connect(broker.url)));
  for (const s of subscribers) await s.subscribe(['big/#']);
  for (const s of subscribers) s.pause(); // stalled: they stop reading
  const rss = await watchRss(broker.proc.pid!);
  const pub = await NativeClient.connect(broker.url);
  const TOPICS = 1500;
  const SIZE = 64 * 1024;
  for (let round = 0; round < 2; round++) {
    for (let i = 0; i < TOPICS; i++) {
      const payload = new Uint8Array(SIZE).fill(round + 1);
      pub.send({ op: Op.publish, id: 0, topic: `big/${i}`, payload, flags: 0 });
    }
    await pub.ping(); // every publish of the round was routed
  }
  const { baseline, peak } = await rss.stop();
  const metrics = await scrapeMetrics(broker.httpUrl);
  const held = metrics.get('topicast_conflated_bytes')!;
  t.diagnostic(`RSS ${Math.round(baseline / MiB)} MiB → peak ${Math.round(peak / MiB)} MiB while ${TOPICS * 2} × ${SIZE / 1024} KiB went to 4 stalled subscribers; conflate holds ${Math.round(held / 1024)} KiB`);
  assert.ok(held <= 4 * MiB, `conflated bytes ${held} exceed 4 × maxBufferedBytes`);
  assert.ok(held > 0, 'the stalled subscribers are conflating');
  assert.ok(metrics.get('topicast_dropped_total')! > 0, 'values past the bound are dropped and counted');
  // Readers back: each gets the latest values kept, then live traffic.
  for (const s of subscribers) s.resume();
  await pub.publish('big/end', new Uint8Array([9]), { ack: true });
  await Promise.all(subscribers.map((s) => s.expect(isDelivery('big/end'), 20_000)));
  await scrapeMetrics(broker.httpUrl).then((m) => assert.equal(m.get('topicast_conflated_bytes'), 0));
});

test('retained values are bounded by maxRetainedBytes: "store full" on native, MQTT and HTTP', async (t) => {
  const broker = await startBroker({ args: ['--max-retained-bytes', String(10_000), '--sys-interval-sec', '0'] });
  // $SYS figures are retained too (published once with --sys-interval-sec 0): they count, a few hundred bytes.
  const sysBytes = (await scrapeMetrics(broker.httpUrl)).get('topicast_retained_bytes')!;
  assert.ok(sysBytes < 1000);
  const c = await NativeClient.connect(broker.url);
  const ok = async (topic: string, size: number): Promise<void> => {
    const a = await c.publish(topic, new Uint8Array(size), { retain: true, ack: true });
    assert.equal(a?.op, Op.ack, `${topic} ${size}: ${JSON.stringify(a)}`);
  };
  await ok('r/1', 4000);
  await ok('r/2', 4000);
  const full = await c.publish('r/3', new Uint8Array(4000), { retain: true, ack: true });
  assert.ok(full?.op === Op.error && full.code === ErrorCode.unavailable && /store is full \(maxRetainedBytes 10000\)/.test(full.message), JSON.stringify(full));
  await ok('r/1', 3000); // an update that shrinks always passes
  await ok('r/3', 2000); // 9000 now
  const live = await c.publish('live/x', new Uint8Array(5000), { ack: true }); // not retained: not bounded by it
  assert.equal(live?.op, Op.ack);
  // MQTT 5: PUBACK 0x97 quota exceeded; the publish is not retained.
  const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0 });
  t.after(() => m.end(true));
  await assert.rejects(m.publishAsync('r/4', Buffer.alloc(2000), { qos: 1, retain: true }), (err: { code?: number }) => err.code === 0x97);
  // HTTP: 503 with the same message.
  const res = await fetch(`${broker.httpUrl}/api/publish/r/5?retain=1`, { method: 'POST', body: new Uint8Array(2000) });
  assert.equal(res.status, 503);
  assert.match(await res.text(), /maxRetainedBytes/);
  const metrics = await scrapeMetrics(broker.httpUrl);
  assert.equal(metrics.get('topicast_retained_bytes'), sysBytes + 9000, 'r/1 (3000), r/2 (4000), r/3 (2000); nothing of the refused ones');
});

test('retained bytes under a flood of large retained values stay within maxRetainedBytes', async (t) => {
  const broker = await startBroker({ args: ['--max-retained-bytes', String(32 * MiB), '--sys-interval-sec', '0'] });
  const sysBytes = (await scrapeMetrics(broker.httpUrl)).get('topicast_retained_bytes')!;
  const c = await NativeClient.connect(broker.url);
  const rss = await watchRss(broker.proc.pid!);
  let refused = 0;
  for (let i = 0; i < 400; i++) {
    const a = await c.publish(`flood/${i}`, new Uint8Array(256 * 1024).fill(i & 0xff), { retain: true, ack: true });
    if (a?.op === Op.error) refused++;
  }
  const { baseline, peak } = await rss.stop();
  const metrics = await scrapeMetrics(broker.httpUrl);
  t.diagnostic(`RSS ${Math.round(baseline / MiB)} MiB → peak ${Math.round(peak / MiB)} MiB after 400 retained values of 256 KiB (100 MiB offered); retained ${Math.round(metrics.get('topicast_retained_bytes')! / MiB)} MiB, ${refused} refused`);
  assert.ok(metrics.get('topicast_retained_bytes')! <= 32 * MiB);
  const fits = Math.floor((32 * MiB - sysBytes) / (256 * 1024));
  assert.equal(refused, 400 - fits, 'every value past the bound is refused');
  assert.equal(metrics.get('topicast_retained_bytes'), sysBytes + fits * 256 * 1024);
});
