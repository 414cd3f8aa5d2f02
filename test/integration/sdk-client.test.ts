/**
 * The SDK against the real broker process: every method, codec round trips,
 * overlapping subscriptions, snapshots, will, refusals as typed errors, and no
 * unhandled promise rejection anywhere along the way.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { ClientErrorCode, ConnectionError, connect, ErrorCode, RequestError, type Client, type ClientState, type Message } from 'topicast';
import { startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';

const unhandled: unknown[] = [];
const onUnhandled = (reason: unknown): void => {
  unhandled.push(reason);
};
process.on('unhandledRejection', onUnhandled);

// Top level, not in before(): the helper registers its own after() hook to stop the broker.
const broker: BrokerProcess = await startBroker({ args: ['--max-topic-levels', '6', '--max-subscriptions-per-connection', '50'] });
const clients: Client[] = [];

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  process.off('unhandledRejection', onUnhandled);
});

async function client(options: Parameters<typeof connect>[1] = {}): Promise<Client> {
  const c = await connect(broker.url, { reconnect: false, ...options });
  clients.push(c);
  return c;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

test('connect, state, server info, close', async () => {
  const c = await connect(broker.url);
  clients.push(c); // closed in after() even if an assertion fails first
  assert.equal(c.state, 'open');
  assert.equal(c.url, broker.url);
  assert.equal(c.server?.version, 1);
  assert.match(c.server?.server ?? '', /^topicast\//);
  assert.ok((c.server?.maxPayloadBytes ?? 0) > 0);
  const states: ClientState[] = [];
  c.on('state', (s) => states.push(s));
  await c.close();
  assert.deepEqual(states, ['closed']);
  assert.equal(c.state, 'closed');
});

test('publish/subscribe with handler; snapshot of retained values; unsubscribe stops delivery', async () => {
  const pub = await client();
  const sub = await client();
  await pub.publish('it/snap/a', 1, { retain: true, ack: true });
  await pub.publish('it/snap/b', 2, { retain: true, ack: true });
  const got: [string, unknown, boolean][] = [];
  const s = await sub.subscribe('it/snap/+', (v, m) => got.push([m.topic, v, m.retained]));
  await s.snapshot;
  assert.deepEqual(got.sort(), [['it/snap/a', 1, true], ['it/snap/b', 2, true]]);
  await pub.publish('it/snap/a', 3, { ack: true });
  await waitFor(() => got.length === 3, 'live delivery');
  assert.deepEqual(got[2], ['it/snap/a', 3, false]);
  await s.unsubscribe();
  assert.equal(s.state, 'closed');
  await pub.publish('it/snap/a', 4, { ack: true });
  await sleep(50);
  assert.equal(got.length, 3);
  await pub.clearRetained('it/snap/a', { ack: true });
  await pub.clearRetained('it/snap/b', { ack: true });
  const again: unknown[] = [];
  const s2 = await sub.subscribe('it/snap/+', (v) => again.push(v));
  await s2.snapshot;
  assert.deepEqual(again, []);
});

test('async iteration over a subscription', async () => {
  const pub = await client();
  const sub = await client();
  const seen: Message[] = [];
  const iterable = sub.subscribe('it/iter/#');
  await iterable;
  const loop = (async () => {
    for await (const m of iterable) {
      seen.push(m);
      if (seen.length === 3) break;
    }
  })();
  for (let i = 0; i < 3; i++) await pub.publish(`it/iter/${i}`, { i }, { ack: true });
  await loop;
  assert.deepEqual(seen.map((m) => [m.topic, m.value, m.retained]), [['it/iter/0', { i: 0 }, false], ['it/iter/1', { i: 1 }, false], ['it/iter/2', { i: 2 }, false]]);
});

test('overlapping subscriptions on one client each receive each message once', async () => {
  const pub = await client();
  const sub = await client();
  const counts = { plus: 0, hash: 0, exact: 0, multi: 0 };
  await sub.subscribe('it/ov/+/t', () => counts.plus++);
  await sub.subscribe('it/ov/#', () => counts.hash++);
  await sub.subscribe('it/ov/x/t', () => counts.exact++);
  await sub.subscribe(['it/ov/x/t', 'it/ov/+/t'], () => counts.multi++);
  await pub.publish('it/ov/x/t', 1, { ack: true });
  await pub.publish('it/ov/y/t', 2, { ack: true });
  await waitFor(() => counts.hash === 2 && counts.multi === 2, 'deliveries');
  await sleep(50);
  assert.deepEqual(counts, { plus: 2, hash: 2, exact: 1, multi: 2 });
});

test('codec round trips: msgpack (default), json, text, raw, per client and per subscription', async () => {
  const values = [48.2, -7, 'online', { value: 21.5, unit: '°C', ts: 1_700_000_000_000 }, [1, 'two', null], true, null];
  for (const codec of ['msgpack', 'json'] as const) {
    const pub = await client({ codec });
    const sub = await client({ codec });
    const got: unknown[] = [];
    await sub.subscribe(`it/codec/${codec}`, (v) => got.push(v));
    for (const v of values) await pub.publish(`it/codec/${codec}`, v, { ack: true });
    await waitFor(() => got.length === values.length, `${codec} deliveries`);
    assert.deepEqual(got, values, codec);
  }
  const pub = await client();
  const sub = await client();
  const text: unknown[] = [];
  const raw: Uint8Array[] = [];
  await sub.subscribe('it/codec/text', (v) => text.push(v), { codec: 'text' });
  await sub.subscribe('it/codec/raw', (v) => raw.push(v), { codec: 'raw' });
  await pub.publish('it/codec/text', 'héllo ✓', { codec: 'text', ack: true });
  const bytes = new Uint8Array([0, 1, 2, 254, 255]);
  await pub.publish('it/codec/raw', bytes, { codec: 'raw', ack: true });
  await waitFor(() => text.length === 1 && raw.length === 1, 'text and raw deliveries');
  assert.deepEqual(text, ['héllo ✓']);
  assert.deepEqual([...raw[0]!], [...bytes]);
  // The same bytes seen through two codecs: payloads are opaque to the broker.
  const asRaw: Uint8Array[] = [];
  await sub.subscribe('it/codec/cross', (v) => asRaw.push(v), { codec: 'raw' });
  await pub.publish('it/codec/cross', { a: 1 }, { codec: 'json', ack: true });
  await waitFor(() => asRaw.length === 1, 'cross delivery');
  assert.equal(new TextDecoder().decode(asRaw[0]), '{"a":1}');
  // The default codec of `topicast` is MessagePack.
  const plain = await client();
  await plain.publish('it/codec/cross', 48.2, { ack: true });
  await waitFor(() => asRaw.length === 2, 'default-codec delivery');
  assert.deepEqual([...asRaw[1]!], [0xcb, 0x40, 0x48, 0x19, 0x99, 0x99, 0x99, 0x99, 0x9a]);
});

test('refusals are typed errors with the broker codes', async () => {
  const c = await client();
  // 7 levels: valid by the protocol's defaults (checked locally), refused by this broker's --max-topic-levels 6.
  await assert.rejects(c.publish('a/b/c/d/e/f/g', 1, { ack: true }), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidTopic);
  await assert.rejects(c.subscribe('a/b/c/d/e/f/g'), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidFilter);
  await assert.rejects(c.subscribe('a/#/b'), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.invalidFilter);
  const max = c.server!.maxPayloadBytes;
  await assert.rejects(c.publish('big', new Uint8Array(max + 1), { codec: 'raw' }), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.payloadTooLarge);
  // The connection is still fine.
  await c.publish('it/after-refusal', 1, { ack: true });
  assert.equal(c.state, 'open');
});

test('too many subscriptions: refused atomically, the iterator throws, the others keep working', async () => {
  const c = await client();
  const pub = await client();
  const subs = [];
  for (let i = 0; i < 49; i++) subs.push(await c.subscribe(`it/many/${i}`));
  const refused = c.subscribe(['it/many/x', 'it/many/y']);
  const it = refused[Symbol.asyncIterator]();
  await assert.rejects(refused, (e: unknown) => e instanceof RequestError && e.code === ErrorCode.tooManySubscriptions);
  await assert.rejects(it.next(), RequestError);
  let got = 0;
  await c.subscribe('it/many/0', () => got++); // same filter as an existing one: no new broker subscription
  await pub.publish('it/many/0', 1, { ack: true });
  await waitFor(() => got === 1, 'delivery after refusal');
  await Promise.all(subs.map((s) => s.unsubscribe()));
});

test('will: published when a client dies, not when it closes cleanly', async () => {
  const watcher = await client({ codec: 'text' });
  const seen: string[] = [];
  await watcher.subscribe('it/will/+/status', (v, m) => seen.push(`${m.topic}=${v}`));
  const repo = fileURLToPath(new URL('../../../', import.meta.url));
  const script = (id: string, clean: boolean): string => `
    import { connect } from 'topicast';
    const c = await connect(${JSON.stringify(broker.url)}, { codec: 'text', will: { topic: 'it/will/${id}/status', value: 'offline' } });
    await c.publish('it/will/${id}/status', 'online', { ack: true });
    ${clean ? 'await c.close(); process.exit(0);' : "process.kill(process.pid, 'SIGKILL');"}
  `;
  for (const [id, clean] of [['dirty', false], ['clean', true]] as const) {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script(id, clean)], { cwd: repo, stdio: ['ignore', 'inherit', 'inherit'] });
    await new Promise((r) => child.on('exit', r));
  }
  await waitFor(() => seen.includes('it/will/dirty/status=offline'), 'the will of the killed client', 5000);
  await sleep(200);
  assert.ok(seen.includes('it/will/clean/status=online'));
  assert.ok(!seen.includes('it/will/clean/status=offline'), seen.join(' '));
});

test('wait:true rejects with a typed error when nothing listens; publish after close is refused', async () => {
  await assert.rejects(connect('ws://127.0.0.1:1/ws'), (e: unknown) => e instanceof ConnectionError && e.code === ClientErrorCode.connectFailed);
  const c = await connect(broker.url);
  clients.push(c); // closed in after() even if an assertion fails first
  await c.close();
  await assert.rejects(c.publish('x', 1), (e: unknown) => e instanceof ConnectionError && e.code === ClientErrorCode.closed);
});

test('no unhandled promise rejection happened inside the SDK', async () => {
  // A scenario rich in failures nobody awaits: refused subscribes only iterated, acked
  // publishes dropped by a closing client, snapshots of refused subscriptions.
  const c = await connect(broker.url);
  clients.push(c); // closed in after() even if an assertion fails first
  void c.subscribe('a/#/b');
  void c.subscribe(['x/a/b/c/d/e/f']);
  const sub = c.subscribe('it/unhandled', () => {});
  void sub[Symbol.asyncIterator]().next();
  c.publish('it/unhandled', 1, { ack: true }).catch(() => {});
  await c.close();
  await sleep(100);
  assert.deepEqual(unhandled, []);
});
