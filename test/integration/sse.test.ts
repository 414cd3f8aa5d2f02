/**
 * HTTP streaming, `GET /api/subscribe` (issue 18, PROTOCOL.md §10), against the real broker process
 * with real clients: `curl -N` and a node:http reader get the retained snapshot, the end marker and
 * live values published over the native protocol (the SDK), MQTT 5 (mqtt.js) and HTTP, each as a
 * decoded value; `Last-Event-ID` resumes exactly like a native resume (offsets compared), and says
 * `recovered: false` past the history window; permissions per topic with the token as a bearer
 * header, a cookie or `?token=`; a stalled reader is disconnected by the policy while another keeps
 * every message; 1,000 streams at once; bad requests get 400 with a clear message; streams are
 * counted as protocol `sse` in /metrics.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { connect } from 'topicast';
import { startBroker, waitFor } from '../helpers/broker.js';
import { scrapeMetrics } from '../helpers/native-client.js';
import { SseStream } from '../helpers/sse-client.js';

const run = promisify(execFile);
const haveCurl = await run('sh', ['-c', 'command -v curl']).then(() => true, () => false);
if (!haveCurl && process.env.CI) throw new Error('curl is required under CI');

const work = mkdtempSync(join(tmpdir(), 'topicast-sse-'));
after(() => rmSync(work, { recursive: true, force: true }));

const QUIET = ['--sys-interval-sec', '0', '--max-publishes-per-sec', '0'];

/** A POST like curl's `--data`: without a type it is sent as a form, which counts as untyped (PROTOCOL.md §8). */
function post(httpUrl: string, topic: string, body: string, contentType = FORM, retain = false, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(`${httpUrl}/api/publish/${topic}${retain ? '?retain=1' : ''}`, { method: 'POST', body, headers: { 'Content-Type': contentType, ...headers } });
}
const FORM = 'application/x-www-form-urlencoded';

test('curl -N gets the snapshot, the end marker and live values from native, MQTT and HTTP publishers', { skip: haveCurl ? false : 'needs curl' }, async () => {
  const broker = await startBroker({ args: QUIET });
  await post(broker.httpUrl, 'devices/pi-01/status', 'online', FORM, true);
  const curl = spawn('curl', ['-sN', `${broker.httpUrl}/api/subscribe?filter=devices/%23`]);
  let out = '';
  curl.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  try {
    await waitFor(() => out.includes('event: snapshot-end'), 'the end of the snapshot');
    assert.match(out, /^retry: 1000\n\nevent: retained\ndata: \{"topic":"devices\/pi-01\/status","value":"online"\}\n\nevent: snapshot-end\ndata: \{"retained":1\}\n\n$/);
    const native = await connect(broker.url);
    await native.publish('devices/pi-01/cpu/temperature', 48.2); // MessagePack, converted
    await native.publish('devices/pi-01/info', { host: 'pi', sensors: ['cpu'], big: new Uint8Array([1, 2, 3]) });
    await native.close();
    const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0 });
    await m.publishAsync('devices/pi-02/load', '{"value":0.5,"unit":""}', { properties: { contentType: 'application/json' } });
    await m.publishAsync('devices/pi-02/raw', Buffer.from([0xff, 0x00, 0x10]));
    await m.endAsync();
    await post(broker.httpUrl, 'devices/pi-03/temp', '21.5'); // curl --data's form type: untyped, read like mosquitto_pub -m
    await post(broker.httpUrl, 'devices/pi-03/note', 'line one\nline two', 'text/plain');
    await waitFor(() => out.split('\n\n').filter((e) => e.startsWith('data:')).length >= 6, 'six live events');
    const live = out.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => JSON.parse(e.slice(6)) as unknown);
    assert.deepEqual(live, [
      { topic: 'devices/pi-01/cpu/temperature', value: 48.2, contentType: 'application/msgpack' },
      { topic: 'devices/pi-01/info', value: { host: 'pi', sensors: ['cpu'], big: 'AQID' }, contentType: 'application/msgpack' },
      { topic: 'devices/pi-02/load', value: { value: 0.5, unit: '' }, contentType: 'application/json' },
      { topic: 'devices/pi-02/raw', value: '/wAQ', encoding: 'base64' },
      { topic: 'devices/pi-03/temp', value: 21.5 },
      { topic: 'devices/pi-03/note', value: 'line one\nline two', contentType: 'text/plain' },
    ]);
    const metrics = await scrapeMetrics(broker.httpUrl);
    assert.equal(metrics.get('topicast_connections{protocol="sse"}'), 1, 'counted as its own protocol');
  } finally {
    curl.kill();
  }
  await waitFor(async () => (await scrapeMetrics(broker.httpUrl)).get('topicast_connections{protocol="sse"}') === 0, 'the stream closed when curl left');
});

test('Last-Event-ID resumes like a native resume: the missed messages in offset order, then live; recovered: false past the window', async () => {
  const broker = await startBroker({ args: [...QUIET, '--history-filters', 'h/#', '--history-max-messages', '5'] });
  const first = await SseStream.open(`${broker.httpUrl}/api/subscribe?filter=h/%23`);
  await first.untilEvent('snapshot-end');
  const start = first.events.at(-1)!.id!;
  assert.match(start, /^[0-9a-z]+:0$/, 'the end marker carries the stream position');
  const epoch = start.slice(0, start.indexOf(':'));
  for (let i = 1; i <= 3; i++) await post(broker.httpUrl, 'h/a', String(i));
  await first.until((s) => s.data().length === 3, 'three live messages');
  assert.deepEqual(first.events.filter((e) => e.event === 'message').map((e) => e.id), [`${epoch}:1`, `${epoch}:2`, `${epoch}:3`]);
  first.close();
  // Missed while away: 4 and 5 on h/a, 6 on h/b.
  await post(broker.httpUrl, 'h/a', '4');
  await post(broker.httpUrl, 'h/a', '5');
  await post(broker.httpUrl, 'h/b', '6');
  const back = await SseStream.open(`${broker.httpUrl}/api/subscribe?filter=h/%23`, { 'Last-Event-ID': `${epoch}:3` });
  await back.untilEvent('snapshot-end');
  await post(broker.httpUrl, 'h/a', '7');
  await back.until((s) => s.data().length === 4, 'replay and live');
  assert.deepEqual(back.data('resumed'), [{ recovered: true, replayed: 3 }]);
  assert.deepEqual(back.events.filter((e) => e.event === 'message').map((e) => [e.id, (JSON.parse(e.data) as { value: number }).value]),
    [[`${epoch}:4`, 4], [`${epoch}:5`, 5], [`${epoch}:6`, 6], [`${epoch}:7`, 7]], 'no gap, no duplicate');
  assert.deepEqual(back.events.map((e) => e.event), ['resumed', 'message', 'message', 'message', 'snapshot-end', 'message']);
  back.close();
  // Ten more on h/a: the window (5 per topic) no longer reaches back to offset 7.
  for (let i = 8; i <= 17; i++) await post(broker.httpUrl, 'h/a', String(i));
  const late = await SseStream.open(`${broker.httpUrl}/api/subscribe?filter=h/%23`, { 'Last-Event-ID': `${epoch}:7` });
  await late.untilEvent('snapshot-end');
  assert.deepEqual(late.data('resumed'), [{ recovered: false, replayed: 0 }]);
  assert.deepEqual(late.data('message'), [], 'nothing replayed: a fresh start');
  assert.equal(late.events.at(-1)!.id, `${epoch}:17`, 'the fresh position');
  late.close();
  // Another epoch (a broker that lost its history): recovered false too.
  const other = await SseStream.open(`${broker.httpUrl}/api/subscribe?filter=h/%23`, { 'Last-Event-ID': 'otherepoch:3' });
  await other.untilEvent('snapshot-end');
  assert.deepEqual(other.data('resumed'), [{ recovered: false, replayed: 0 }]);
  other.close();
});

test('permissions per topic, with the token as a bearer header, a cookie or ?token=; never logged', async () => {
  const tokens = join(work, 'tokens.json');
  writeFileSync(tokens, JSON.stringify({
    tokens: [
      { token: 'reader-secret-1234567890', sub: 'reader', subscribe: ['devices/#'], denySubscribe: ['devices/secret/#'] },
      { token: 'writer-secret-1234567890', sub: 'writer', publish: ['#'] },
    ],
  }));
  const broker = await startBroker({ args: [...QUIET, '--auth-token-file', tokens] });
  const url = `${broker.httpUrl}/api/subscribe?filter=devices/%23`;
  const writer = { Authorization: 'Bearer writer-secret-1234567890' };
  await post(broker.httpUrl, 'devices/secret/key', '"s3"', FORM, true, writer);
  await post(broker.httpUrl, 'devices/a/t', '1', FORM, true, writer);
  await assert.rejects(SseStream.open(url), (e: { status: number; body: string }) => e.status === 401, 'no token: 401');
  await assert.rejects(SseStream.open(`${url}&token=wrong-guess`), (e: { status: number }) => e.status === 401);
  await assert.rejects(SseStream.open(`${broker.httpUrl}/api/subscribe?filter=devices/secret/%23&token=reader-secret-1234567890`),
    (e: { status: number; body: string }) => e.status === 403 && e.body.includes('not authorized to subscribe to \\"devices/secret/#\\"'));
  const ways = [
    await SseStream.open(url, { Authorization: 'Bearer reader-secret-1234567890' }),
    await SseStream.open(url, { Cookie: 'theme=dark; topicast_token=reader-secret-1234567890' }),
    await SseStream.open(`${url}&token=reader-secret-1234567890`),
  ];
  for (const s of ways) await s.untilEvent('snapshot-end');
  await post(broker.httpUrl, 'devices/secret/key', '"s4"', FORM, false, writer);
  await post(broker.httpUrl, 'devices/a/t', '2', FORM, false, writer);
  for (const s of ways) {
    await s.until((x) => x.data().length === 1, 'the allowed live message');
    assert.deepEqual(s.data('retained'), [{ topic: 'devices/a/t', value: 1 }], 'the denied retained topic is withheld');
    assert.deepEqual(s.data(), [{ topic: 'devices/a/t', value: 2 }], 'the denied live topic is withheld');
    s.close();
  }
  assert.ok(!broker.logs.some((l) => l.includes('reader-secret') || l.includes('wrong-guess')), 'no token in the logs');
});

test('a stalled reader is disconnected by the policy while another stream keeps every message', async () => {
  const broker = await startBroker({ args: [...QUIET, '--slow-consumer-policy', 'disconnect', '--max-buffered-bytes', '65536'] });
  const url = `${broker.httpUrl}/api/subscribe?filter=load/%23`;
  const stalled = await SseStream.open(url);
  const steady = await SseStream.open(url);
  await stalled.untilEvent('snapshot-end');
  await steady.untilEvent('snapshot-end');
  stalled.pause();
  const native = await connect(broker.url);
  const blob = 'x'.repeat(4000);
  const total = 3000; // 12 MB: past any socket buffer, far past 64 KiB
  for (let i = 0; i < total; i++) {
    void native.publish(`load/${i % 10}`, { i, blob });
    if (i % 100 === 99) await native.publish('load/sync', i, { ack: true }); // paced by acknowledgements, as a real publisher is
  }
  await steady.until((s) => s.data().length >= total + total / 100, 'every message on the steady stream', 60_000);
  const values = steady.data().filter((d) => d.topic !== 'load/sync').map((d) => (d.value as { i: number }).i);
  assert.deepEqual(values, Array.from({ length: total }, (_, i) => i), 'the steady reader lost nothing, in order');
  await waitFor(async () => (await scrapeMetrics(broker.httpUrl)).get('topicast_slow_consumer_disconnects_total') === 1, 'the stalled stream disconnected', 20_000);
  const metrics = await scrapeMetrics(broker.httpUrl);
  assert.equal(metrics.get('topicast_connections{protocol="sse"}'), 1, 'only the steady stream is left');
  steady.close();
  stalled.close();
  await native.close();
});

test('1,000 streams at once: each gets its snapshot and a live message', async () => {
  const broker = await startBroker({ args: [...QUIET, '--connect-rate-per-ip', '0'] });
  await post(broker.httpUrl, 'fan/status', 'on', FORM, true);
  const streams: SseStream[] = [];
  for (let i = 0; i < 1000; i += 100) {
    streams.push(...(await Promise.all(Array.from({ length: 100 }, () => SseStream.open(`${broker.httpUrl}/api/subscribe?filter=fan/%23`)))));
  }
  await Promise.all(streams.map((s) => s.untilEvent('snapshot-end', 60_000)));
  const during = await scrapeMetrics(broker.httpUrl);
  assert.equal(during.get('topicast_connections{protocol="sse"}'), 1000);
  assert.ok(during.get('topicast_connections_pending')! < 100, `streams are established, not half-open (${during.get('topicast_connections_pending')})`);
  await post(broker.httpUrl, 'fan/value', '42');
  await Promise.all(streams.map((s) => s.until((x) => x.data().length === 1, 'the live message', 60_000)));
  for (const s of streams) {
    assert.deepEqual(s.data('retained'), [{ topic: 'fan/status', value: 'on' }]);
    assert.deepEqual(s.data(), [{ topic: 'fan/value', value: 42 }]);
    s.close();
  }
  await waitFor(async () => (await scrapeMetrics(broker.httpUrl)).get('topicast_connections{protocol="sse"}') === 0, 'all closed', 20_000);
});

test('bad requests get 400 with a clear message', async () => {
  const broker = await startBroker({ args: [...QUIET, '--max-subscriptions-per-connection', '3'] });
  const get = async (query: string, headers: Record<string, string> = {}) => {
    const r = await fetch(`${broker.httpUrl}/api/subscribe${query}`, { headers });
    return { status: r.status, message: ((await r.json()) as { error: { message: string } }).error.message };
  };
  assert.deepEqual(await get(''), { status: 400, message: 'at least one filter required: GET /api/subscribe?filter=F[&filter=G...]' });
  assert.deepEqual(await get('?filter=a/%23/b'), { status: 400, message: `filter "a/#/b" '#' must be a whole level and the last one` });
  assert.deepEqual(await get('?filter=a/b%2Bc'), { status: 400, message: `filter "a/b+c" '+' must be a whole level` });
  assert.deepEqual(await get('?filter=a&filter=b&filter=c&filter=d'), { status: 400, message: 'at most 3 subscriptions per connection' });
  assert.deepEqual(await get('?filter=a', { 'Last-Event-ID': 'not-a-position' }), { status: 400, message: 'Last-Event-ID must be <epoch>:<offset> as sent in an event id: line' });
  assert.deepEqual(await get('?topic=a'), { status: 400, message: 'unknown query parameter "topic": use filter=F (repeatable) and optionally token=T' });
  const r = await fetch(`${broker.httpUrl}/api/subscribe?filter=a`, { method: 'POST' });
  assert.equal(r.status, 405);
  // The broker keeps serving.
  const s = await SseStream.open(`${broker.httpUrl}/api/subscribe?filter=a&filter=a`);
  await s.untilEvent('snapshot-end');
  s.close();
});

test('$SYS counts streams as protocol sse: a stream on $SYS/broker/clients/connected/sse sees itself', async () => {
  const broker = await startBroker({ args: ['--sys-interval-sec', '1'] });
  const s = await SseStream.open(`${broker.httpUrl}/api/subscribe?filter=${encodeURIComponent('$SYS/broker/clients/connected/sse')}`);
  await s.untilEvent('snapshot-end');
  assert.deepEqual(s.data('retained'), [{ topic: '$SYS/broker/clients/connected/sse', value: 0, contentType: 'application/json' }], 'none at start');
  await s.until((x) => x.data().length === 1, 'the next figure', 10_000);
  assert.deepEqual(s.data(), [{ topic: '$SYS/broker/clients/connected/sse', value: 1, contentType: 'application/json' }]);
  s.close();
});
