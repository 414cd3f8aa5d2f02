/**
 * `client.history` and the subscribe `history` prefill with the SDK against the real broker process
 * (issue 22, PROTOCOL.md §4.8): 10,000 SDK-published readings on 100 topics come back decoded, in
 * order, with their publish times and offsets; windows at their boundaries; the async iteration
 * pages through a window without skipping or repeating a row; a subscription prefilled from
 * history goes live under concurrent publishing with no gap and no duplicate; misuse and refusals
 * are typed errors.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connect, ErrorCode, RequestError, type Client, type HistoryMessage, type MessageMeta } from 'topicast';
import { startBroker, waitFor } from '../helpers/broker.js';

const TOPICS = 100;
const PER_TOPIC = 100;
const TOTAL = TOPICS * PER_TOPIC;
const topicOf = (i: number): string => `devices/d${i}/temp`;

const broker = await startBroker({ args: ['--history-filters', 'devices/#', '--history-queries-per-sec', '0', '--sys-interval-sec', '0'], mqttOff: true });
const clients: Client[] = [];
async function open(): Promise<Client> {
  const c = await connect(broker.url, { reconnect: false });
  clients.push(c);
  return c;
}
test.after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await broker.stop();
});

const show = (r: HistoryMessage<unknown>): string => `${r.offset}:${r.topic}=${JSON.stringify(r.value)}`;
let full: HistoryMessage<unknown>[] = [];

test('client.history: 10,000 readings on 100 topics, decoded like deliveries, in order, with ts and offset', async () => {
  const pub = await open();
  for (let k = 0; k < PER_TOPIC; k++) {
    for (let i = 0; i < TOPICS; i++) void pub.publish(topicOf(i), k === PER_TOPIC - 1 ? { value: i + k / 100, unit: '°C' } : i + k / 100);
  }
  await pub.publish('devices/last', 'done', { ack: true }); // acknowledged after everything before it
  const c = await open();
  const page = await c.history('devices/+/temp', { limit: TOTAL });
  assert.deepEqual([page.length, page.count, page.complete, page.more, page.offset], [TOTAL, TOTAL, true, false, TOTAL + 1]);
  page.forEach((r, n) => {
    const i = n % TOPICS;
    const k = Math.floor(n / TOPICS);
    assert.equal(r.topic, topicOf(i));
    assert.equal(r.offset, n + 1);
    assert.deepEqual(r.value, k === PER_TOPIC - 1 ? { value: i + k / 100, unit: '°C' } : i + k / 100, 'MessagePack, decoded by its content type');
    assert.equal(r.contentType, 'application/msgpack');
    assert.ok(n === 0 || r.ts >= page[n - 1]!.ts);
  });
  full = page;
  const one = await c.history(topicOf(42), { newestFirst: true, limit: 3 });
  assert.deepEqual(one.map(show), [full[9942]!, full[9842]!, full[9742]!].map(show));
  assert.deepEqual([one.complete, one.more], [true, true]);
  const text = await c.history('devices/last', { codec: 'raw' });
  assert.deepEqual(text.map((r) => [r.value instanceof Uint8Array, r.contentType]), [[true, 'application/msgpack']], 'a codec per call');
});

test('client.history: time windows at their boundaries; the iteration pages without gaps or repeats', async () => {
  const c = await open();
  const at = full[6000]!.ts;
  const within = (lo: number, hi: number) => full.filter((r) => r.ts >= lo && r.ts <= hi).map(show);
  assert.deepEqual((await c.history('devices/+/temp', { sinceMs: at, untilMs: at })).map(show), within(at, at));
  assert.deepEqual((await c.history('devices/+/temp', { sinceMs: at + 1 })).map(show), within(at + 1, Infinity));
  const rows: string[] = [];
  for await (const r of c.history('devices/+/temp', { pageSize: 700 })) rows.push(show(r));
  assert.deepEqual(rows, full.map(show));
  const newest: string[] = [];
  for await (const r of c.history('devices/+/temp', { newestFirst: true, limit: 1500, pageSize: 400 })) newest.push(show(r));
  assert.deepEqual(newest, full.slice(-1500).reverse().map(show));
});

test('subscribe with history: earlier readings first (meta.ts), then live, no gap and no duplicate under concurrent publishing', async () => {
  const pub = await open();
  let published = 0;
  let stop = false;
  // 5 topics × 1,000 kept each: below 4,000 until the subscription is made, then 100 more, so no
  // bound evicts anything whatever the machine's speed.
  const publishing = (async () => {
    while (!stop) {
      if (published < 4000) await pub.publish(`devices/p${published % 5}/v`, published++);
      if (published % 10 === 0 || published >= 4000) await new Promise((r) => setImmediate(r));
    }
    for (let i = 0; i < 100; i++) await pub.publish(`devices/p${published % 5}/v`, published++);
    await pub.publish('devices/p-end', 0, { ack: true });
  })();
  while (published < 100) await new Promise((r) => setTimeout(r, 1));
  const c = await open();
  const got: { value: unknown; meta: MessageMeta }[] = [];
  const sub = await c.subscribe('devices/+/v', (value, meta) => got.push({ value, meta }), { history: { limit: 5000 } });
  await sub.snapshot;
  stop = true;
  await publishing;
  const truth = await c.history('devices/+/v');
  await waitFor(() => got.length >= truth.length, `${truth.length} messages (got ${got.length})`);
  assert.equal(sub.historyComplete, true);
  const prefilled = got.findIndex((g) => g.meta.ts === undefined); // prefill rows carry their publish time, live ones do not
  assert.ok(prefilled >= 100 && got.length > prefilled, `both parts exercised (${prefilled} prefilled of ${got.length})`);
  assert.ok(got.slice(prefilled).every((g) => g.meta.ts === undefined), 'all prefilled rows come before every live one');
  assert.ok(got.slice(0, prefilled).every((g, n) => n === 0 || g.meta.ts! >= got[n - 1]!.meta.ts!), 'oldest first');
  assert.deepEqual(got.map((g) => g.meta.offset), truth.map((r) => r.offset), 'every reading once, in order');
  assert.deepEqual(got.map((g) => g.value), Array.from({ length: published }, (_, k) => k));
  assert.deepEqual(sub.position?.offset, truth.at(-1)!.offset);
});

test('misuse and refusals: TypeError at the call, RequestError with the broker\'s code', async () => {
  const c = await open();
  await assert.rejects(c.history('devices/+/temp', { limit: 0 }), TypeError);
  await assert.rejects(c.history('devices/+/temp', { sinceMs: 1.5 }), TypeError);
  await assert.rejects(c.history('devices/#/x'), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidFilter);
  await assert.rejects(c.history('devices/+/temp', { limit: 10_001 }), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidRequest && /exceeds the broker's 10000 rows/.test(e.message));
  await assert.rejects(c.history('devices/+/temp', { sinceMs: 2, untilMs: 1 }), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidRequest);
  await assert.rejects(c.subscribe('devices/+/temp', undefined, { history: { limit: 20_000 } }), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidRequest);
  const rows: unknown[] = [];
  await assert.rejects(async () => {
    for await (const r of c.history('devices/+/temp', { epoch: 'not-this-one', fromOffset: 1 })) rows.push(r);
  }, (e: unknown) => e instanceof RequestError && /not comparable/.test(e.message));
  assert.deepEqual(rows, []);
  await c.close();
  await assert.rejects(c.history('devices/+/temp'), /not connected/);
});
