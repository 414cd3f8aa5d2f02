/**
 * `topicast pub` / `topicast sub` as real processes against the real broker, with the SDK and
 * Debian's mosquitto clients on the other side: every option, the content type each source is
 * sent with, values decoded by the SDK's rules, and every failure as exactly one stderr line
 * (no stack trace) with its documented exit status.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect, type Client } from 'topicast';
import { BROKER_MAIN, freePort, startBroker, waitFor } from '../../../helpers/broker.js';
import { nowSec, signJwt } from '../../../unit/broker/auth/jwt-sign.js';
import type * as PubModule from '../../../../broker/src/cli/pub.js';
import type * as SubModule from '../../../../broker/src/cli/sub.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-cli-'));
const children: ChildProcess[] = [];
const clients: Client[] = [];
after(async () => {
  for (const c of children) c.kill('SIGKILL');
  await Promise.all(clients.map((c) => c.close()));
  rmSync(dir, { recursive: true, force: true });
});

const hasMosquitto = spawnSync('sh', ['-c', 'command -v mosquitto_pub && command -v mosquitto_sub']).status === 0;
if (!hasMosquitto && process.env.CI) throw new Error('mosquitto-clients is required in CI (apt-get install mosquitto-clients)');
const needsMosquitto = { skip: hasMosquitto ? false : 'mosquitto-clients not installed' };

interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
  out: Buffer;
}

/** Runs a command to its end (bounded), never rejecting: the status is part of what is tested. */
function run(file: string, args: readonly string[], options: { input?: string | Buffer; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Result> {
  return new Promise((resolve) => {
    const child = execFile(file, args, { encoding: 'buffer', timeout: options.timeoutMs ?? 15_000, env: options.env ?? process.env, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const status = err ? ((err as { code?: unknown }).code as number | null) ?? null : 0;
      resolve({ status: typeof status === 'number' ? status : null, stdout: stdout.toString('utf8'), stderr: stderr.toString('utf8'), out: stdout });
    });
    if (options.input !== undefined) child.stdin!.end(options.input);
    else child.stdin!.end();
  });
}

const topicast = (args: readonly string[], options?: Parameters<typeof run>[2]): Promise<Result> => run(process.execPath, [BROKER_MAIN, ...args], options);

/** The failure contract: the status, exactly one stderr line `topicast CMD: …` matching `re`, no stack, nothing on stdout. */
function assertFailure(r: Result, cmd: 'pub' | 'sub' | '', status: number, re: RegExp): void {
  const what = `${JSON.stringify(r.stderr)} (status ${r.status})`;
  assert.equal(r.status, status, what);
  assert.equal(r.stderr.split('\n').length, 2, `exactly one line: ${what}`);
  assert.ok(r.stderr.startsWith(cmd ? `topicast ${cmd}: ` : 'topicast: '), what);
  assert.doesNotMatch(r.stderr, /^\s+at /m, what);
  assert.match(r.stderr, re);
  assert.equal(r.stdout, '');
}

/** A `topicast sub` process whose stdout lines (or raw bytes) are collected as they come. */
function subProcess(args: readonly string[], env?: NodeJS.ProcessEnv): { lines: string[]; bytes: () => Buffer; stderr: () => string; done: Promise<number | null> } {
  const child = spawn(process.execPath, [BROKER_MAIN, 'sub', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  children.push(child);
  const lines: string[] = [];
  const chunks: Buffer[] = [];
  let buf = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => {
    chunks.push(d);
    buf += d.toString('utf8');
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => {
    clearTimeout(timer);
    resolve(code);
  }));
  return { lines, bytes: () => Buffer.concat(chunks), stderr: () => err, done };
}

async function subscriptionCount(httpUrl: string): Promise<number> {
  const m = /^topicast_subscriptions (\d+)$/m.exec(await (await fetch(`${httpUrl}/metrics`)).text());
  return Number(m?.[1] ?? 0);
}

/** Resolves once the broker counts `n` more subscriptions than `base` (the subscriber processes are ready). */
async function subscribed(httpUrl: string, base: number, n: number): Promise<void> {
  await waitFor(async () => (await subscriptionCount(httpUrl)) >= base + n, `${n} new subscriptions at the broker`, 10_000);
}

interface Seen {
  topic: string;
  value: unknown;
  contentType: string | undefined;
}

/** An SDK client (default codec) recording every delivery on `filter`. */
async function sdkWatch(url: string, filter: string): Promise<Seen[]> {
  const client = await connect(url);
  clients.push(client);
  const seen: Seen[] = [];
  await client.subscribe(filter, (value, meta) => seen.push({ topic: meta.topic, value, contentType: meta.contentType }));
  return seen;
}

const broker = await startBroker();
const url = ['--url', broker.url];

test('--help on topicast, pub and sub: usage on stdout, status 0, every option described', async () => {
  const top = await topicast(['--help']);
  assert.equal(top.status, 0);
  assert.match(top.stdout, /topicast pub -t TOPIC/);
  assert.match(top.stdout, /topicast sub -t FILTER/);
  const { PUB_OPTIONS } = (await import(new URL('../../../../../broker/dist/cli/pub.js', import.meta.url).href)) as typeof PubModule;
  const { SUB_OPTIONS } = (await import(new URL('../../../../../broker/dist/cli/sub.js', import.meta.url).href)) as typeof SubModule;
  for (const [cmd, options] of [['pub', PUB_OPTIONS], ['sub', SUB_OPTIONS]] as const) {
    const r = await topicast([cmd, '--help']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.ok(r.stdout.startsWith(`Usage: topicast ${cmd} `), r.stdout);
    for (const o of options) {
      assert.ok(r.stdout.includes(`--${o.name}`), `${cmd} --help describes --${o.name}`);
      if (o.short) assert.ok(r.stdout.includes(`-${o.short}, --${o.name}`), `${cmd} --help gives -${o.short}`);
    }
    assert.match(r.stdout, /Exit status: 0 /);
  }
});

test('usage errors: one line naming what to change, status 2, before any connection', async () => {
  const missing = join(dir, 'no-such-file');
  const binary = join(dir, 'binary');
  writeFileSync(binary, Buffer.from([0xff, 0x00, 0xfe]));
  const cases: [string[], 'pub' | 'sub', RegExp][] = [
    [['pub', '-t', 'a', '-m', '1', '--bogus'], 'pub', /unknown option --bogus \(see topicast pub --help\)$/m],
    [['pub', '-t', 'a', '-m', '1', '-h', 'localhost'], 'pub', /unknown option -h: the broker is given as --url ws:\/\/HOST:8080\/ws/],
    [['pub', '-m', 'x'], 'pub', /-t TOPIC is required/],
    [['pub', '-t', 'a'], 'pub', /say what to publish: -m VALUE, -l \(stdin lines\), -f FILE or -n/],
    [['pub', '-t', 'a', '-m', '1', '-f', binary], 'pub', /give only one of -m, -l, -f, -n/],
    [['pub', '-t', 'a', '-t', 'b', '-m', '1'], 'pub', /give exactly one -t TOPIC/],
    [['pub', '-t', 'devices/+/temp', '-m', '1'], 'pub', /-t "devices\/\+\/temp" is not a valid topic name: it must not contain wildcards/],
    [['pub', '-t', 'a', '-m'], 'pub', /-m needs a value/],
    [['pub', '-t', 'a', '-m', '1', '--url', 'localhost:8080'], 'pub', /--url localhost:8080: the scheme must be ws:\/\/ or wss:\/\/, e.g. ws:\/\/localhost:8080\/ws/],
    [['pub', '-t', 'a', '-m', '1', '--url', 'not a url'], 'pub', /--url "not a url" is not a URL; give the broker's native endpoint, e.g. ws:\/\/localhost:8080\/ws/],
    [['pub', '-t', 'a', '-m', '1', '--url', 'mqtt://pi.local:1883'], 'pub', /speaks the native protocol; give ws:\/\/pi\.local:8080\/ws \(or use mosquitto_pub for MQTT\)/],
    [['pub', '-t', 'a', '-m', '1', '--url', 'http://pi.local:8080'], 'pub', /give the WebSocket endpoint, ws:\/\/pi\.local:8080\/ws/],
    [['pub', '-t', 'a', '-f', missing], 'pub', /cannot read -f .*no-such-file: no such file$/m],
    [['pub', '-t', 'a', '-f', dir], 'pub', /cannot read -f .*: it is a directory$/m],
    [['pub', '-t', 'a', '-m', 'hello', '--content-type', 'application/json'], 'pub', /-m VALUE is not JSON, but --content-type application\/json says it is/],
    [['pub', '-t', 'a', '-f', binary, '--content-type', 'text/plain'], 'pub', /is not UTF-8 text, but --content-type text\/plain says it is; use application\/octet-stream/],
    [['pub', '-t', 'a', '-m', '1', '--content-type', 'a\tb'], 'pub', /--content-type "a\\tb" holds a control character/],
    [['pub', '-t', 'a', '-m', '1', '--codec', 'cbor'], 'pub', /--codec "cbor" is not one of msgpack, json, text, raw/],
    [['pub', '-t', 'a', '-m', '1', '--codec', 'json', '--content-type', 'text/plain'], 'pub', /give --content-type or --codec, not both/],
    [['pub', '-t', 'a', '-m', '1', '-r', 'extra'], 'pub', /unexpected argument "extra"/],
    [['sub'], 'sub', /-t FILTER is required/],
    [['sub', '-t', 'a/#/b'], 'sub', /-t "a\/#\/b" is not a valid filter: '#' must be a whole level and the last one/],
    [['sub', '-t', 'a', '-C', 'x'], 'sub', /-C "x" is not a whole number/],
    [['sub', '-t', 'a', '-C', '0'], 'sub', /-C 0 would exit before any message/],
    [['sub', '-t', 'a', '-W', '-1'], 'sub', /-W "-1" is not a whole number/],
    [['sub', '-t', 'a', '--raw', '-v'], 'sub', /--raw writes payload bytes only; drop -v/],
    [['sub', '-t', 'a', '--codec', 'xml'], 'sub', /--codec "xml" is not one of auto, msgpack, json, text, raw/],
    [['sub', '-t', 'a', '--url', 'mqtts://pi.local'], 'sub', /use mosquitto_sub for MQTT/],
  ];
  for (let i = 0; i < cases.length; i += 4) {
    const batch = cases.slice(i, i + 4); // a few processes at a time: the machine is shared
    const results = await Promise.all(batch.map(([args]) => topicast(args)));
    batch.forEach(([, cmd, re], j) => assertFailure(results[j]!, cmd, 2, re));
  }
});

test('runtime failures: cannot connect, not a WebSocket endpoint: one line, status 1', async () => {
  const closed = await freePort();
  assertFailure(await topicast(['pub', '-t', 'a', '-m', '1', '--url', `ws://127.0.0.1:${closed}/ws`]), 'pub', 1,
    new RegExp(`cannot connect to ws://127\\.0\\.0\\.1:${closed}/ws: connection refused: is the broker running there\\? Check --url`));
  assertFailure(await topicast(['sub', '-t', 'a', '--url', `ws://127.0.0.1:${closed}/ws`]), 'sub', 1, /connection refused/);
  assertFailure(await topicast(['pub', '-t', 'a', '-m', '1', '--url', `ws://127.0.0.1:${broker.port}/nope`]), 'pub', 1,
    /the server answered HTTP 404, not a WebSocket: the native endpoint is ws:\/\/HOST:PORT\/ws; check --url/);
  assertFailure(await topicast(['pub', '-t', 'a', '-m', '1', '--url', 'ws://no-such-host.invalid:8080/ws']), 'pub', 1, /host not found: check the host in --url/);
});

test('refusals: no token, a wrong token, a topic outside the token, a payload too large, the publish rate: one line, status 1', async () => {
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, JSON.stringify({ tokens: [{ token: 'pi-01-secret-token-long-enough', sub: 'pi-01', publish: ['devices/{sub}/#'], subscribe: ['devices/{sub}/cmd/#'] }] }));
  const secured = await startBroker({ args: ['--auth-token-file', tokens, '--max-payload-bytes', '1000'] });
  const surl = ['--url', secured.url];
  const token = ['--token', 'pi-01-secret-token-long-enough'];
  const big = join(dir, 'big.bin');
  writeFileSync(big, Buffer.alloc(2000, 1));
  const noEnvToken = { ...process.env, TOPICAST_TOKEN: '' };
  assertFailure(await topicast(['pub', '-t', 'devices/pi-01/t', '-m', '1', ...surl], { env: noEnvToken }), 'pub', 1, /the broker requires a token \(4001\): give --token TOKEN \(or TOPICAST_TOKEN\)/);
  assertFailure(await topicast(['pub', '-t', 'devices/pi-01/t', '-m', '1', ...surl, '--token', 'wrong'], { env: noEnvToken }), 'pub', 1, /the broker refused the token \(4001: unknown, expired or not yet valid\); check --token/);
  assertFailure(await topicast(['pub', '-t', 'devices/pi-02/t', '-m', '1', ...surl, ...token]), 'pub', 1, /the broker refused the message on devices\/pi-02\/t: not authorized \(the token's permissions do not cover it; use another --token\)/);
  assertFailure(await topicast(['pub', '-t', 'devices/pi-02/t', '-l', ...surl, ...token], { input: '1\n2\n' }), 'pub', 1, /the broker refused line 1 on devices\/pi-02\/t: not authorized/);
  assertFailure(await topicast(['sub', '-t', 'devices/#', ...surl, ...token]), 'sub', 1, /the broker refused the subscription to devices\/#: not authorized/);
  assertFailure(await topicast(['pub', '-t', 'devices/pi-01/t', '-f', big, ...surl, ...token]), 'pub', 1, /the broker refused the message on devices\/pi-01\/t: payload of 2000 bytes exceeds the broker's 1000 \(its --max-payload-bytes\)/);
  // TOPICAST_TOKEN works like --token.
  const ok = await topicast(['pub', '-t', 'devices/pi-01/t', '-m', '1', ...surl], { env: { ...process.env, TOPICAST_TOKEN: 'pi-01-secret-token-long-enough' } });
  assert.equal(ok.status, 0, ok.stderr);
  await secured.stop();
  const slow = await startBroker({ args: ['--max-publishes-per-sec', '1', '--publish-burst', '5'], mqttOff: true });
  assertFailure(await topicast(['pub', '-t', 'fast/n', '-l', '--url', slow.url], { input: '1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n' }), 'pub', 1,
    /the broker refused line \d+ on fast\/n: publish rate limit exceeded \(its --max-publishes-per-sec and --publish-burst\); send more slowly/);
  await slow.stop();
});

test('pub -m: JSON text arrives tagged application/json, other text as text/plain, bytes as typed; -r retains; -n clears', async () => {
  const seen = await sdkWatch(broker.url, 'm/#');
  const cases: [string[], unknown, string][] = [
    [['-m', '7'], 7, 'application/json'],
    [['-m', '48.2'], 48.2, 'application/json'],
    [['-m', '{"a":1}'], { a: 1 }, 'application/json'],
    [['-m', 'true'], true, 'application/json'],
    [['-m', 'kitchen'], 'kitchen', 'text/plain'],
    [['-m', '007'], '007', 'text/plain'],
    [['-m', '7', '--content-type', 'text/plain'], '7', 'text/plain'],
    [['-m', '{"a":[1,2]}', '--content-type', 'application/msgpack'], { a: [1, 2] }, 'application/msgpack'],
    [['-m', 'plain words', '--codec', 'msgpack'], 'plain words', 'application/msgpack'],
    [['-m', 'x,y', '--content-type', 'text/csv'], 'x,y', 'text/csv'],
  ];
  for (const [i, [args]] of cases.entries()) {
    const r = await topicast(['pub', '-t', `m/${i}`, ...args, ...url]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout + r.stderr, '');
  }
  await waitFor(() => seen.length === cases.length, 'every message at the SDK subscriber');
  assert.deepEqual(seen, cases.map(([, value, contentType], i) => ({ topic: `m/${i}`, value, contentType })));

  assert.equal((await topicast(['pub', '-t', 'm/kept', '-m', '21.5', '-r', ...url])).status, 0);
  const later = await sdkWatch(broker.url, 'm/kept');
  await waitFor(() => later.length === 1, 'the retained value');
  assert.deepEqual(later[0], { topic: 'm/kept', value: 21.5, contentType: 'application/json' });
  assert.equal((await topicast(['pub', '-t', 'm/kept', '-n', '-r', ...url])).status, 0);
  await waitFor(() => later.length === 2, 'the empty message');
  assert.equal(later[1]!.value, undefined);
  const fresh = await topicast(['sub', '-t', 'm/kept', '-W', '1', ...url]);
  assert.equal(fresh.stdout, '', 'no retained value left');
});

test('pub -l: `seq 1 3 | topicast pub -l` gives three messages, in order, each a number', async () => {
  const seen = await sdkWatch(broker.url, 'lines/n');
  const r = await run('bash', ['-c', `seq 1 3 | "${process.execPath}" "${BROKER_MAIN}" pub -t lines/n -l --url ${broker.url}`]);
  assert.equal(r.status, 0, r.stderr);
  await waitFor(() => seen.length === 3, 'three lines');
  assert.deepEqual(seen.map((s) => [s.value, s.contentType]), [[1, 'application/json'], [2, 'application/json'], [3, 'application/json']]);
});

test('pub -l: every line of a long stream acknowledged before exit, in order, in bounded memory; mosquitto_pub -l line rules (empty line, last line without newline)', async () => {
  const unlimited = await startBroker({ args: ['--max-publishes-per-sec', '0'], mqttOff: true }); // the default rate would refuse a burst this long
  const seen = await sdkWatch(unlimited.url, 'lines/#');
  // Far more lines than the unacknowledged window, in a heap they would overflow if anything were
  // kept per line (a per-line Promise.race on a pending promise once did: ~1 KB a line).
  const n = 50_000;
  const input = Array.from({ length: n }, (_, i) => `${i}`).join('\n') + '\n';
  const r = await run(process.execPath, ['--max-old-space-size=24', BROKER_MAIN, 'pub', '-t', 'lines/many', '-l', '--url', unlimited.url], { input, timeoutMs: 60_000 });
  assert.equal(r.status, 0, r.stderr.slice(0, 500));
  await waitFor(() => seen.length === n, `${n} lines`, 30_000);
  assert.deepEqual(seen.map((s) => s.value), Array.from({ length: n }, (_, i) => i));

  const mixed = await topicast(['pub', '-t', 'lines/mixed', '-l', '--url', unlimited.url], { input: Buffer.concat([Buffer.from('online\n\n{"v":1}\r\n'), Buffer.from([0xff, 0xfe, 0x0a]), Buffer.from('last')]) });
  assert.equal(mixed.status, 0, mixed.stderr);
  await waitFor(() => seen.length === n + 5, 'the mixed lines');
  assert.deepEqual(seen.slice(n).map((s) => [s.value instanceof Uint8Array ? [...s.value] : s.value, s.contentType]), [
    ['online', 'text/plain'],
    [undefined, 'text/plain'], // an empty line is an empty message, as with mosquitto_pub -l
    [{ v: 1 }, 'application/json'], // the \r stays in the bytes; JSON allows it as whitespace
    [[0xff, 0xfe], 'application/octet-stream'],
    ['last', 'text/plain'],
  ]);
  await unlimited.stop();
});

test('pub -f: a binary file arrives byte-identical at mosquitto_sub, at topicast sub --raw, and at the SDK as bytes', needsMosquitto, async () => {
  const file = join(dir, 'frame.bin');
  const bytes = Buffer.alloc(4096);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7919) & 0xff; // every byte value, NUL and 0x0a included
  writeFileSync(file, bytes);
  const seen = await sdkWatch(broker.url, 'cam/frame');
  const base = await subscriptionCount(broker.httpUrl);
  const raw = subProcess(['-t', 'cam/frame', '-C', '1', '--raw', ...url]);
  const msub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-t', 'cam/frame', '-C', '1', '-N', '-W', '15'], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(msub);
  const mchunks: Buffer[] = [];
  msub.stdout.on('data', (d: Buffer) => mchunks.push(d));
  const mdone = new Promise<number | null>((resolve) => msub.on('exit', resolve));
  await subscribed(broker.httpUrl, base, 2);
  const r = await topicast(['pub', '-t', 'cam/frame', '-f', file, ...url]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(await mdone, 0);
  assert.ok(Buffer.concat(mchunks).equals(bytes), 'mosquitto_sub got the file byte for byte');
  assert.equal(await raw.done, 0, raw.stderr());
  assert.ok(raw.bytes().equals(bytes), 'topicast sub --raw wrote the file byte for byte');
  await waitFor(() => seen.length === 1, 'the SDK delivery');
  assert.equal(seen[0]!.contentType, 'application/octet-stream');
  assert.ok(Buffer.from(seen[0]!.value as Uint8Array).equals(bytes));
});

test('sub -v prints what mosquitto_pub, curl, the SDK and topicast pub sent, by the SDK rules; -C exits 0', needsMosquitto, async () => {
  const base = await subscriptionCount(broker.httpUrl);
  const sub = subProcess(['-t', 'mix/#', '-v', '-C', '11', ...url]);
  await subscribed(broker.httpUrl, base, 1);
  const mqtt = ['-h', '127.0.0.1', '-p', String(broker.mqttPort)];
  // QoS 1: each mosquitto_pub exits once the broker has routed its message, so the order is fixed.
  const mpub = async (args: string[]): Promise<void> => assert.equal((await run('mosquitto_pub', [...mqtt, '-q', '1', ...args])).status, 0);
  await mpub(['-t', 'mix/a', '-m', '7']);
  await mpub(['-t', 'mix/b', '-m', '48.2']);
  await mpub(['-t', 'mix/c', '-m', 'online']);
  await mpub(['-t', 'mix/d', '-m', '{"v": 1}']);
  await mpub(['-V', '5', '-t', 'mix/e', '-m', '7', '-D', 'publish', 'content-type', 'text/plain']);
  const posted = await fetch(`${broker.httpUrl}/api/publish/mix/f`, { method: 'POST', body: '21.5' });
  assert.equal(posted.status, 200);
  const client = await connect(broker.url);
  clients.push(client);
  await client.publish('mix/g', { v: 1, unit: '°C' }, { ack: true });
  await client.publish('mix/h', 'kitchen', { ack: true });
  await client.publish('mix/i', new Uint8Array([1, 2, 3]), { ack: true });
  await client.publish('mix/j', [1.5, null, true], { ack: true });
  assert.equal((await topicast(['pub', '-t', 'mix/k', '-m', '{"a": [1, 2]}', ...url])).status, 0);
  assert.equal(await sub.done, 0, sub.stderr());
  assert.equal(sub.stderr(), '');
  assert.deepEqual(sub.lines, [
    'mix/a 7',
    'mix/b 48.2',
    'mix/c online',
    'mix/d {"v":1}',
    'mix/e 7',
    'mix/f 21.5',
    'mix/g {"v":1,"unit":"°C"}',
    'mix/h kitchen',
    'mix/i AQID', // bytes as base64
    'mix/j [1.5,null,true]',
    'mix/k {"a":[1,2]}',
  ]);
});

test('sub: retained first, -R skips them, -W ends with status 27 and one line, --codec forces a decoder', async () => {
  assert.equal((await topicast(['pub', '-t', 'ret/a', '-m', '1', '-r', ...url])).status, 0);
  const first = await topicast(['sub', '-t', 'ret/#', '-C', '1', ...url]);
  assert.equal(first.status, 0, first.stderr);
  assert.equal(first.stdout, '1\n');
  const skipped = await topicast(['sub', '-t', 'ret/#', '-R', '-W', '1', ...url]);
  assertFailure(skipped, 'sub', 27, /^topicast sub: timed out after 1 s \(-W 1\)$/m); // and no retained value on stdout
  const text = await topicast(['sub', '-t', 'ret/a', '-C', '1', '--codec', 'text', ...url]);
  assert.equal(text.stdout, '1\n');
  assert.equal((await topicast(['pub', '-t', 'ret/b', '-m', 'word', '-r', ...url])).status, 0);
  const forced = await topicast(['sub', '-t', 'ret/b', '-C', '1', '-W', '2', '--codec', 'json', ...url]);
  // The payload is not JSON: the line says so on stderr, the command goes on (and here times out).
  assert.equal(forced.status, 27);
  assert.match(forced.stderr, /^topicast sub: cannot decode a message on ret\/b with json: /);
  assert.doesNotMatch(forced.stderr, /^\s+at /m);
});

test('sub: a reader that goes away (| head -1) ends the command with status 0', async () => {
  const base = await subscriptionCount(broker.httpUrl);
  const r = run('bash', ['-c', `set -o pipefail; "${process.execPath}" "${BROKER_MAIN}" sub -t pipe/# -W 30 --url ${broker.url} | head -n 1`]); // -W: gone by itself even if this test fails
  await subscribed(broker.httpUrl, base, 1);
  // The first line satisfies head; the second write finds the pipe closed.
  for (let i = 0; i < 50; i++) {
    await topicast(['pub', '-t', 'pipe/x', '-m', String(i), ...url]);
    const settled = await Promise.race([r.then(() => true), new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 100))]);
    if (settled) break;
  }
  const result = await r;
  assert.equal(result.status, 0, result.stderr);
  assert.equal(result.stdout, '0\n');
  assert.equal(result.stderr, '');
});

test('env: TOPICAST_URL replaces --url', async () => {
  const seen = await sdkWatch(broker.url, 'env/a');
  const r = await topicast(['pub', '-t', 'env/a', '-m', 'via-env'], { env: { ...process.env, TOPICAST_URL: broker.url } });
  assert.equal(r.status, 0, r.stderr);
  await waitFor(() => seen.length === 1, 'the message');
  assert.equal(seen[0]!.value, 'via-env');
});

test('sub across a broker restart: one stderr line when the connection is lost, one when it is back, then messages again', async () => {
  const port = await freePort();
  const first = await startBroker({ port, mqttOff: true });
  const base = await subscriptionCount(first.httpUrl);
  const sub = subProcess(['-t', 'restart/#', '-v', '-C', '1', '--url', first.url]);
  await subscribed(first.httpUrl, base, 1);
  first.kill('SIGKILL');
  await first.exited;
  await waitFor(() => sub.stderr().includes('reconnecting'), 'the lost-connection line', 10_000);
  const second = await startBroker({ port, mqttOff: true });
  await waitFor(() => sub.stderr().includes('reconnected'), 'the reconnected line', 20_000);
  assert.equal((await topicast(['pub', '-t', 'restart/a', '-m', 'back', '--url', second.url])).status, 0);
  assert.equal(await sub.done, 0);
  assert.deepEqual(sub.lines, ['restart/a back']);
  const lines = sub.stderr().trimEnd().split('\n');
  assert.equal(lines.length, 2, sub.stderr());
  assert.match(lines[0]!, /^topicast sub: connection lost \(.*\); reconnecting$/);
  assert.equal(lines[1], 'topicast sub: reconnected');
  await second.stop();
});

test('sub ends with status 1 and one line when the broker closes the connection for good (token expired)', async () => {
  const secret = join(dir, 'jwt-secret');
  writeFileSync(secret, 'a-shared-secret-of-at-least-32-bytes!!');
  const jwtBroker = await startBroker({ args: ['--auth-jwt-key-file', secret, '--auth-clock-skew-sec', '0'], mqttOff: true });
  const token = signJwt('HS256', readFileSync(secret), { sub: 'cli', exp: nowSec() + 6, topicast: { subscribe: ['#'] } });
  const r = await topicast(['sub', '-t', 'devices/#', '--url', jwtBroker.url, '--token', token], { env: { ...process.env, TOPICAST_TOKEN: '' } });
  assertFailure(r, 'sub', 1, new RegExp(`^topicast sub: the broker closed the connection \\(${jwtBroker.url.replace(/[./]/g, '\\$&')}\\): the token expired \\(4001\\): give a fresh --token$`, 'm'));
  await jwtBroker.stop();
});
