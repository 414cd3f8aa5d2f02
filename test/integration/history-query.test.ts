/**
 * History queries over the real broker process (PROTOCOL.md §4.8, issue 22): 10,000 messages on
 * 100 topics asked for over the native protocol (raw frames) and over HTTP (JSON, NDJSON, CSV read
 * by csv-parse): exact counts and order, inclusive time and offset windows at their boundaries,
 * paging, `complete: false` once history no longer reaches back, the same answers after a kill -9
 * restart with --data; a subscribe prefill followed by live deliveries under concurrent publishing
 * with no gap and no duplicate; permissions through a wildcard; limits and bad parameters answered
 * with the documented errors.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parse as parseCsv } from 'csv-parse/sync';
import { ErrorCode, Op, SUBPROTOCOL, type HistoryRequest } from 'topicast/protocol';
import { startBroker, type BrokerProcess } from '../helpers/broker.js';
import { bytes, NativeClient, scrapeMetrics, text, type ErrorFrame, type HistoryRow } from '../helpers/native-client.js';

const TOPICS = 100;
const PER_TOPIC = 100;
const TOTAL = TOPICS * PER_TOPIC;
const topicOf = (i: number): string => `devices/d${i}/t`;
const ARGS = ['--history-filters', 'devices/#', '--history-max-messages', String(PER_TOPIC), '--sys-interval-sec', '0'];
const UNLIMITED = ['--history-queries-per-sec', '0']; // this file asks many in a row; the rate has a test of its own

const dir = mkdtempSync(join(tmpdir(), 'topicast-history-query-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let broker: BrokerProcess;
// Connected per test: the test client helper ends its clients with the first test that opened one.
let client: NativeClient;

/** Publishes `n` rounds over the topics (value `i:k`), unacknowledged, then one round trip: all routed. */
async function fill(pub: NativeClient, rounds: number, first = 0): Promise<void> {
  for (let k = first; k < first + rounds; k++) {
    for (let i = 0; i < TOPICS; i++) await pub.publish(topicOf(i), bytes(`${i}:${k}`), { ack: false });
  }
  await pub.ping();
}

async function query(c: NativeClient, filter: string, options: HistoryRequest = {}) {
  const answer = await c.history(filter, options);
  assert.ok(!('op' in answer), `HISTORY ${filter} refused: ${JSON.stringify(answer)}`);
  return answer as Exclude<typeof answer, ErrorFrame>;
}

async function refused(c: NativeClient, filter: string, options: HistoryRequest): Promise<ErrorFrame> {
  const answer = await c.history(filter, options);
  assert.ok('op' in answer && answer.op === Op.error, `expected an ERROR for ${filter} ${JSON.stringify(options)}`);
  return answer;
}

const show = (r: HistoryRow): string => `${r.offset}:${r.topic}=${text(r.payload)}@${r.ts}`;

before(async () => {
  broker = await startBroker({ args: [...ARGS, ...UNLIMITED, '--data', dir], mqttOff: true });
  const pub = await NativeClient.connect(broker.url, { record: false });
  await fill(pub, PER_TOPIC);
  await pub.close();
});
beforeEach(async () => {
  client = await NativeClient.connect(broker.url);
});

let full: HistoryRow[] = [];

test('native: 10,000 messages on 100 topics come back exactly, in offset order, with their publish times', async () => {
  const all = await query(client, 'devices/#', { limit: TOTAL });
  assert.deepEqual({ ...all.end, epoch: typeof all.end.epoch }, { count: TOTAL, complete: true, more: false, epoch: 'string', offset: TOTAL });
  assert.equal(all.rows.length, TOTAL);
  all.rows.forEach((r, n) => {
    assert.equal(r.offset, n + 1);
    assert.equal(r.topic, topicOf(n % TOPICS));
    assert.equal(text(r.payload), `${n % TOPICS}:${Math.floor(n / TOPICS)}`);
    if (n > 0) assert.ok(r.ts >= all.rows[n - 1]!.ts, 'publish times never decrease');
  });
  full = all.rows;
  // One topic; newest first; the default limit is historyMaxRows (10,000).
  const one = await query(client, topicOf(7));
  assert.deepEqual(one.rows.map((r) => r.offset), Array.from({ length: PER_TOPIC }, (_, k) => 8 + k * TOPICS));
  const newest = await query(client, 'devices/+/t', { limit: 5, newestFirst: true });
  assert.deepEqual(newest.rows.map((r) => r.offset), [10000, 9999, 9998, 9997, 9996]);
  assert.deepEqual([newest.end.count, newest.end.complete, newest.end.more], [5, true, true]);
});

test('native: time and offset windows include both boundaries; paging by offsets neither skips nor repeats', async () => {
  const at = full[4999]!.ts;
  const expected = (lo: number, hi: number): string[] => full.filter((r) => r.ts >= lo && r.ts <= hi).map(show);
  const exact = await query(client, 'devices/#', { sinceMs: at, untilMs: at });
  assert.deepEqual(exact.rows.map(show), expected(at, at));
  assert.ok(exact.rows.some((r) => r.offset === 5000));
  const after5000 = await query(client, 'devices/#', { sinceMs: at + 1 });
  assert.deepEqual(after5000.rows.map(show), expected(at + 1, Infinity));
  const before5000 = await query(client, 'devices/#', { untilMs: at - 1 });
  assert.deepEqual(before5000.rows.map(show), expected(-Infinity, at - 1));
  assert.equal(exact.rows.length + after5000.rows.length + before5000.rows.length, TOTAL, 'three windows split the history without overlap');
  const slice = await query(client, 'devices/#', { fromOffset: 4000, toOffset: 4099 });
  assert.deepEqual(slice.rows.map((r) => r.offset), Array.from({ length: 100 }, (_, k) => 4000 + k));
  const paged: HistoryRow[] = [];
  for (let from = 1, more = true; more; ) {
    const page = await query(client, 'devices/#', { fromOffset: from, limit: 999 });
    paged.push(...page.rows);
    more = page.end.more;
    from = page.rows.at(-1)!.offset + 1;
  }
  assert.deepEqual(paged.map(show), full.map(show));
});

test('HTTP: JSON, NDJSON and CSV (read by csv-parse) give the native answer, streamed', async () => {
  const url = (q: string): string => `${broker.httpUrl}/api/history/${encodeURIComponent('devices/#')}?${q}`;
  const json = await fetch(url(`limit=${TOTAL}`));
  assert.equal(json.status, 200);
  assert.equal(json.headers.get('transfer-encoding'), 'chunked', 'streamed, not one buffered body');
  const body = await json.json() as { rows: { topic: string; ts: number; offset: number; value: unknown }[]; count: number; complete: boolean; more: boolean };
  assert.deepEqual([body.count, body.complete, body.more], [TOTAL, true, false]);
  // Text payloads such as "7:3" are not JSON: they come back as strings.
  assert.deepEqual(body.rows.map((r) => `${r.offset}:${r.topic}=${String(r.value)}@${r.ts}`), full.map(show));

  const nd = await (await fetch(url('format=ndjson&order=newest&limit=250'))).text();
  const lines = nd.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const endLine = lines.at(-1) as { end: Record<string, unknown> };
  assert.deepEqual({ ...endLine.end, epoch: typeof endLine.end.epoch }, { count: 250, complete: true, more: true, epoch: 'string', offset: TOTAL });
  assert.deepEqual(lines.slice(0, -1).map((r) => r.offset), Array.from({ length: 250 }, (_, k) => TOTAL - k));

  const csvResponse = await fetch(url(`format=csv&since=${full[2000]!.ts}&until=${full[2999]!.ts}`));
  assert.match(csvResponse.headers.get('content-type')!, /^text\/csv/);
  assert.match(csvResponse.headers.get('content-disposition')!, /attachment; filename="devices_.csv"/);
  const records = parseCsv(await csvResponse.text(), { columns: true }) as { time: string; ts: string; topic: string; offset: string; value: string }[];
  const window = full.filter((r) => r.ts >= full[2000]!.ts && r.ts <= full[2999]!.ts);
  assert.deepEqual(records.map((r) => `${r.offset}:${r.topic}=${r.value}@${r.ts}`), window.map(show));
  assert.ok(records.every((r) => new Date(r.time).getTime() === Number(r.ts)), 'time is the ISO form of ts');

  // ISO 8601 bounds work like milliseconds.
  const iso = await (await fetch(url(`format=ndjson&since=${encodeURIComponent(new Date(full[2000]!.ts).toISOString())}&until=${full[2999]!.ts}`))).text();
  assert.equal(iso.trimEnd().split('\n').length - 1, window.length);
});

test('limits and bad parameters get the documented errors, natively and over HTTP', async () => {
  assert.equal((await refused(client, 'devices/#', { limit: 10_001 })).code, ErrorCode.invalidRequest);
  assert.match((await refused(client, 'devices/#', { limit: 10_001 })).message, /limit 10001 exceeds the broker's 10000 rows per history query/);
  assert.match((await refused(client, 'devices/#', { sinceMs: 5, untilMs: 4 })).message, /sinceMs 5 is after untilMs 4/);
  assert.match((await refused(client, 'devices/#', { fromOffset: 5, toOffset: 4 })).message, /fromOffset 5 is after toOffset 4/);
  assert.equal((await refused(client, 'devices/#/x', {})).code, ErrorCode.invalidFilter);
  assert.match((await refused(client, 'devices/#', { fromOffset: 1, epoch: 'another-epoch' })).message, /the history stream is now epoch \w+, not another-epoch/);
  await client.ping(); // the connection stays open after every refusal

  const get = async (q: string, filter = 'devices/#') => {
    const r = await fetch(`${broker.httpUrl}/api/history/${encodeURIComponent(filter)}?${q}`);
    return { status: r.status, body: await r.json() as { error: { code: number; message: string } } };
  };
  assert.deepEqual(await get('limit=0'), { status: 400, body: { error: { code: ErrorCode.invalidRequest, message: 'limit must be an integer ≥ 1, got "0"' } } });
  assert.deepEqual((await get('limit=100001')).body.error.message, "limit 100001 exceeds the broker's 100000 rows per history query");
  assert.deepEqual((await get('since=yesterday')).body.error.message, 'since must be milliseconds since the epoch or an ISO 8601 date-time, got "yesterday"');
  assert.deepEqual(await get('format=xml'), { status: 400, body: { error: { code: ErrorCode.invalidRequest, message: 'format must be json, ndjson or csv, got "xml"' } } });
  assert.equal((await get('order=up')).status, 400);
  assert.deepEqual((await get('filter=x')).body.error.message, 'unknown parameter "filter" (limit, since, until, from, to, order, format)');
  const badFilter = await get('', 'devices/#/x');
  assert.deepEqual([badFilter.status, badFilter.body.error.code], [400, ErrorCode.invalidFilter]);
  assert.match(badFilter.body.error.message, /^filter "devices\/#\/x" /);
  assert.equal((await fetch(`${broker.httpUrl}/api/history/devices%2F%23`, { method: 'POST' })).status, 405);
});

test('complete: false once history no longer reaches back; a kill -9 restart with --data gives the same answers', async () => {
  const pub = await NativeClient.connect(broker.url);
  for (let k = 0; k < 5; k++) await pub.publish(topicOf(0), bytes(`0:extra${k}`), { ack: false }); // evicts d0's five oldest
  await pub.ping();
  const d0 = await query(client, topicOf(0));
  assert.deepEqual([d0.rows.length, d0.end.complete], [PER_TOPIC, false]);
  assert.equal(d0.rows[0]!.offset, 501);
  const fromKept = await query(client, topicOf(0), { fromOffset: 402 });
  assert.deepEqual([fromKept.rows.length, fromKept.end.complete], [PER_TOPIC, true], 'the window starts after what was lost');
  const lostAt = full[400]!.ts; // offset 401, the last evicted, published then
  assert.equal((await query(client, topicOf(0), { sinceMs: lostAt })).end.complete, false);
  assert.equal((await query(client, 'devices/#', { limit: 100, newestFirst: true })).end.complete, true, 'the newest hundred are all held');
  const http = async (q: string) => (await (await fetch(`${broker.httpUrl}/api/history/${encodeURIComponent(topicOf(0))}?${q}`)).json()) as { count: number; complete: boolean };
  assert.deepEqual([(await http('')).count, (await http('')).complete], [PER_TOPIC, false], 'over HTTP too');
  assert.equal((await http('from=402')).complete, true);
  const answers = async (c: NativeClient) => Promise.all([
    query(c, 'devices/#', { limit: TOTAL }), query(c, topicOf(0)), query(c, 'devices/+/t', { sinceMs: full[5000]!.ts, untilMs: full[7000]!.ts }),
    query(c, topicOf(0), { fromOffset: 402 }), query(c, 'devices/d9/#', { newestFirst: true, limit: 10 }),
  ]).then((all) => all.map((a) => ({ rows: a.rows.map(show), complete: a.end.complete, more: a.end.more, epoch: a.end.epoch, offset: a.end.offset })));
  const before = await answers(client);
  assert.equal(before[0]!.rows.length, TOTAL);

  broker.kill('SIGKILL');
  await broker.exited;
  broker = await startBroker({ args: [...ARGS, ...UNLIMITED, '--data', dir], mqttOff: true });
  client = await NativeClient.connect(broker.url);
  const afterRestart = await answers(client);
  // The same epoch and answers; the stream continues above the offsets reserved before the crash (PROTOCOL.md §4.6).
  assert.ok(afterRestart.every((a) => a.offset >= TOTAL + 5));
  assert.deepEqual(afterRestart.map((a) => ({ ...a, offset: 0 })), before.map((a) => ({ ...a, offset: 0 })));
});

test('subscribe with a history prefill under concurrent publishing: prefill, then live, no gap and no duplicate', async () => {
  const pub = await NativeClient.connect(broker.url, { record: false });
  let published = 0;
  let stop = false;
  // 20 topics × 100 kept each: the publisher stays below 1,500 until the subscription is made, then
  // publishes 100 more, so no bound evicts anything whatever the machine's speed.
  const publishing = (async () => {
    while (!stop) {
      if (published < 1500) for (let i = 0; i < 5; i++) await pub.publish(`devices/p${published % 20}/v`, bytes(String(published++)), { ack: false });
      await new Promise((r) => setImmediate(r));
    }
    for (let i = 0; i < 100; i++) await pub.publish(`devices/p${published % 20}/v`, bytes(String(published++)), { ack: false });
    await pub.ping();
  })();
  while (published < 150) await new Promise((r) => setTimeout(r, 1));
  const sub = await NativeClient.connect(broker.url);
  const id = sub.id();
  sub.send({ op: Op.subscribe, id, filters: ['devices/+/v'], options: { history: { limit: 10_000 } } });
  const ack = await sub.answer(id);
  assert.equal(ack.op, Op.ack);
  const result = ack.op === Op.ack ? ack.result! : undefined;
  stop = true;
  await publishing;
  await sub.ping();
  const end = sub.frames.findIndex((f) => f.op === Op.snapshotEnd && f.id === id);
  const prefill = sub.frames.slice(0, end).filter((f): f is HistoryRow => f.op === Op.historyMessage && f.id === id);
  const live = sub.frames.slice(end).filter((f) => f.op === Op.delivery);
  assert.equal(prefill.length, result!.history);
  assert.equal(result!.historyComplete, true);
  assert.ok(prefill.length >= 150 && live.length > 0, `both parts exercised (${prefill.length} prefilled, ${live.length} live)`);
  assert.equal(prefill.at(-1)!.offset, result!.offset, 'the prefill ends at the position the subscription starts from');
  const offsets = [...prefill.map((r) => r.offset), ...live.map((d) => (d as { offset: number }).offset)];
  const truth = await query(client, 'devices/+/v');
  assert.deepEqual(offsets, truth.rows.map((r) => r.offset), 'every message once, in order');
  assert.deepEqual([...prefill.map((r) => text(r.payload)), ...live.map((d) => text((d as { payload: Uint8Array }).payload))], Array.from({ length: published }, (_, k) => String(k)));
  assert.equal(sub.frames.slice(0, end).filter((f) => f.op === Op.delivery).length, 0, 'no retained value repeats a prefilled topic');
  const m = await scrapeMetrics(broker.httpUrl);
  assert.ok(m.get('topicast_history_queries_total')! >= 2);
});

test('permissions: a denied topic never appears, through a wildcard or over HTTP; a denied filter is refused', async () => {
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, JSON.stringify({
    tokens: [
      { token: 'writer-token-value', sub: 'writer', publish: ['devices/#'], subscribe: [] },
      { token: 'reader-token-value', sub: 'reader', subscribe: ['devices/#'], denySubscribe: ['devices/+/secret'] },
    ],
  }));
  const guarded = await startBroker({ args: [...ARGS, '--auth-token-file', tokens], mqttOff: true });
  const as = (token: string) => NativeClient.connect(guarded.url, { protocols: [SUBPROTOCOL, `topicast.token.${Buffer.from(token).toString('base64url')}`] });
  const writer = await as('writer-token-value');
  for (const t of ['devices/a/t', 'devices/a/secret', 'devices/b/secret', 'devices/b/t']) await writer.publish(t, bytes(t));
  const reader = await as('reader-token-value');
  const seen = await query(reader, 'devices/#');
  assert.deepEqual(seen.rows.map((r) => r.topic), ['devices/a/t', 'devices/b/t']);
  assert.equal((await refused(reader, 'devices/+/secret', {})).code, ErrorCode.notAuthorized);
  assert.equal((await refused(writer, 'devices/#', {})).code, ErrorCode.notAuthorized, 'no subscribe permission, no history');
  const http = (token?: string) => fetch(`${guarded.httpUrl}/api/history/devices%2F%23?format=ndjson`, { headers: token ? { Authorization: `Bearer ${token}` } : {} });
  assert.equal((await http()).status, 401);
  const lines = (await (await http('reader-token-value')).text()).trimEnd().split('\n').map((l) => JSON.parse(l) as { topic?: string });
  assert.deepEqual(lines.slice(0, -1).map((l) => l.topic), ['devices/a/t', 'devices/b/t']);
  assert.equal((await scrapeMetrics(guarded.httpUrl)).get('topicast_auth_withheld_total')! >= 4, true);
  await guarded.stop();
});

test('per-connection query rate, the byte cap per answer, and a broker without history', async () => {
  const small = await startBroker({ args: [...ARGS, '--history-queries-per-sec', '1', '--history-max-query-bytes', '1024'], mqttOff: true });
  const c = await NativeClient.connect(small.url);
  let fits = 0;
  for (let k = 0, total = 0; k < 40; k++) {
    const payload = bytes(`${'v'.repeat(40)}${k}`);
    total += payload.length + 'devices/x/t'.length;
    if (total <= 1024) fits++;
    await c.publish('devices/x/t', payload, { ack: false });
  }
  await c.ping();
  // Sent together: the bucket holds one query (refilled at one a second); the others in that instant are refused.
  const answers = await Promise.all(Array.from({ length: 5 }, () => c.history('devices/x/t')));
  const first = answers[0]!;
  assert.ok(!('op' in first));
  assert.equal(first.rows.length, fits, 'the rows whose payload + topic bytes fit in 1024');
  assert.deepEqual([first.end.complete, first.end.more], [false, true], 'cut by the byte cap: not complete, more to read');
  const limited = answers.filter((a): a is ErrorFrame => 'op' in a);
  assert.ok(limited.length >= 1 && limited.every((e) => e.code === ErrorCode.rateLimited));
  assert.match(limited[0]!.message, /more than 1 history queries per second/);
  const http = await Promise.all(Array.from({ length: 5 }, () => fetch(`${small.httpUrl}/api/history/devices%2Fx%2Ft`)));
  const statuses = http.map((r) => r.status);
  assert.ok(statuses.includes(200) && statuses.includes(429), `statuses ${statuses.join(',')}`);
  assert.equal(http.find((r) => r.status === 429)!.headers.get('retry-after'), '1');
  await Promise.all(http.map((r) => r.arrayBuffer()));
  await small.stop();

  const none = await startBroker({ args: ['--sys-interval-sec', '0'], mqttOff: true });
  const n = await NativeClient.connect(none.url);
  const off = await refused(n, 'devices/#', {});
  assert.deepEqual([off.code, off.message], [ErrorCode.invalidRequest, 'this broker keeps no history (--history-filters is empty)']);
  assert.equal((await fetch(`${none.httpUrl}/api/history/devices%2F%23`)).status, 404);
  // A prefill there still subscribes: nothing to prefill, and not complete.
  const prefilled = await n.subscribeRaw(['devices/#'], { history: { limit: 10 } });
  assert.deepEqual(prefilled.op === Op.ack ? prefilled.result : prefilled, { retained: 0, history: 0, historyComplete: false });
  await none.stop();
});

test('the README\'s history commands run as written (against this broker) and answer what they say', async () => {
  const readme = readFileSync(fileURLToPath(new URL('../../../README.md', import.meta.url)), 'utf8');
  const at = readme.indexOf('<!-- example:history -->');
  assert.ok(at >= 0);
  const block = /```sh\n([\s\S]*?)\n```/.exec(readme.slice(at))![1]!;
  const pub = await NativeClient.connect(broker.url);
  for (const v of ['48.1', '48.5', '49']) await pub.publish('devices/pi-01/cpu/temperature', bytes(v));
  const [csvCommand, ndjsonCommand] = block.split('\n').map((line) => line.replaceAll('http://localhost:8080', broker.httpUrl));
  const run = promisify(execFile);
  const csv = parseCsv((await run('bash', ['-c', csvCommand!])).stdout, { columns: true }) as { topic: string; value: string }[];
  assert.deepEqual(csv.map((r) => [r.topic, r.value]), [['devices/pi-01/cpu/temperature', '48.1'], ['devices/pi-01/cpu/temperature', '48.5'], ['devices/pi-01/cpu/temperature', '49']]);
  const nd = (await run('bash', ['-c', ndjsonCommand!])).stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as { value?: unknown; end?: { count: number } });
  assert.deepEqual(nd.map((l) => l.value ?? l.end?.count), [49, 48.5, 48.1, 3]);
});
