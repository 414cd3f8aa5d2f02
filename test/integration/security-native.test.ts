/**
 * Security on the native protocol and HTTP publish, against the real broker process
 * with real clients (ws through NativeClient, the SDK's `connect`, fetch):
 * every denial path, retained and will filtering, token expiry and refresh through
 * the SDK's token function, origins, metrics, and no token ever in the logs.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import WebSocket from 'ws';
import { connect, ConnectionError, type Client } from 'topicast';
import { ErrorCode, Op, SUBPROTOCOL } from 'topicast/protocol';
import { BROKER_MAIN, startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';
import { bytes, isDelivery, NativeClient, scrapeMetrics, sleep, text, type ErrorFrame } from '../helpers/native-client.js';
import { nowSec, signJwt } from '../unit/broker/auth/jwt-sign.js';

const SECRET = 'integration-secret-0123456789-abcdefghij';
const AUD = 'topicast-test';
const TOKENS = {
  pi: 'pi-01-static-token-value',
  reader: 'reader-static-token-value',
  admin: 'admin-static-token-value',
};
const dir = mkdtempSync(join(tmpdir(), 'topicast-sec-'));
let broker: BrokerProcess;
/** Every token handed to the broker, for the log check at the end. */
const issued = new Set<string>(Object.values(TOKENS));

function tokenFor(sub: string, expInSec: number, perms: Record<string, string[]>, extra: Record<string, unknown> = {}): string {
  const t = signJwt('HS256', SECRET, { sub, aud: AUD, exp: nowSec() + expInSec, topicast: perms, ...extra });
  issued.add(t);
  return t;
}
const protocolsWith = (token: string): string[] => [SUBPROTOCOL, `topicast.token.${Buffer.from(token).toString('base64url')}`];

before(async () => {
  writeFileSync(join(dir, 'secret'), SECRET);
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({
    tokens: [
      { token: TOKENS.pi, sub: 'pi-01', publish: ['devices/{sub}/#'], subscribe: ['devices/{sub}/cmd/#'] },
      { token: TOKENS.reader, sub: 'reader', subscribe: ['devices/#'], denySubscribe: ['devices/+/secret/#'] },
      { token: TOKENS.admin, sub: 'admin', publish: ['#'], subscribe: ['#', '$SYS/#'] },
    ],
  }));
  broker = await startBroker({
    args: [
      '--auth-token-file', join(dir, 'tokens.json'), '--auth-jwt-key-file', join(dir, 'secret'), '--auth-jwt-audience', AUD,
      '--auth-clock-skew-sec', '0', '--allowed-origins', 'https://app.example.com', '--log-level', 'debug',
    ],
  });
});
after(() => rmSync(dir, { recursive: true, force: true }));

async function as(token: string): Promise<NativeClient> {
  return NativeClient.connect(broker.url, { protocols: protocolsWith(token) });
}

/** Connects and expects the broker to end the connection with 4001 and `reason`. */
async function refused(protocols: string[], reason: RegExp): Promise<void> {
  const c = await NativeClient.connect(broker.url, { protocols, awaitWelcome: false });
  const { code, reason: got } = await c.closed;
  assert.equal(code, 4001, `close code (reason ${got})`);
  assert.match(got, reason);
  assert.equal(c.frames.some((f) => f.op === Op.welcome), false, 'no WELCOME before authentication');
}

test('start-up log says authentication is on, not the open-broker warning', () => {
  assert.ok(broker.logs.some((l) => l.includes('authentication on')));
  assert.ok(!broker.logs.some((l) => l.includes('AUTHENTICATION IS OFF')));
});

test('refused at connect: no token, unknown token, bad signature, expired, wrong audience, not yet valid', async () => {
  await refused([SUBPROTOCOL], /token required/);
  await refused(protocolsWith('no-such-token'), /token not accepted/);
  const forged = signJwt('HS256', 'a-different-secret-of-sufficient-length!', { sub: 'x', aud: AUD, exp: nowSec() + 60 });
  issued.add(forged);
  await refused(protocolsWith(forged), /token signature invalid/);
  await refused(protocolsWith(tokenFor('x', -5, {})), /token expired/);
  await refused(protocolsWith(tokenFor('x', 60, {}, { aud: 'other-service' })), /audience/);
  await refused(protocolsWith(tokenFor('x', 60, {}, { nbf: nowSec() + 600 })), /not yet valid/);
});

test('Authorization: Bearer works on the upgrade for non-browser clients', async () => {
  const ws = new WebSocket(broker.url, SUBPROTOCOL, { headers: { Authorization: `Bearer ${TOKENS.admin}` } });
  const first = await new Promise<Buffer>((resolve, reject) => {
    ws.once('message', (d: Buffer) => resolve(d));
    ws.once('close', (code, reason) => reject(new Error(`closed ${code} ${reason.toString()}`)));
  });
  assert.equal(first[1], Op.welcome); // [21, {...}]: fixarray, then the op
  ws.terminate();
});

test('publish: inside the allowed filters routed, outside refused with notAuthorized and not delivered', async () => {
  const admin = await as(TOKENS.admin);
  await admin.subscribe(['devices/#']);
  const pi = await as(TOKENS.pi);
  const ok = await pi.publish('devices/pi-01/cpu', bytes('41'), { ack: true });
  assert.equal(ok?.op, Op.ack);
  const denied = (await pi.publish('devices/pi-02/cpu', bytes('666'), { ack: true })) as ErrorFrame;
  assert.equal(denied.op, Op.error);
  assert.equal(denied.code, ErrorCode.notAuthorized);
  await pi.publish('devices/pi-02/cpu', bytes('667')); // unacknowledged: dropped and counted, connection stays
  await pi.ping();
  await admin.expect(isDelivery('devices/pi-01/cpu', '41'));
  await admin.ping();
  assert.deepEqual(admin.deliveries('devices/pi-02/cpu'), []);
});

test('subscribe: outside the allowed filters refused as a whole; $SYS not covered by #', async () => {
  const pi = await as(TOKENS.pi);
  const denied = (await pi.subscribeRaw(['devices/pi-01/cmd/#', 'devices/#'])) as ErrorFrame;
  assert.equal(denied.op, Op.error);
  assert.equal(denied.code, ErrorCode.notAuthorized);
  const admin = await as(TOKENS.admin);
  await admin.publish('devices/pi-01/cmd/reboot', bytes('now'), { ack: true });
  await pi.ping();
  assert.deepEqual(pi.deliveries(), [], 'the refused request subscribed nothing');
  await pi.subscribe(['devices/pi-01/cmd/#']);
  await admin.publish('devices/pi-01/cmd/reboot', bytes('now'), { ack: true });
  await pi.expect(isDelivery('devices/pi-01/cmd/reboot', 'now'));
  const reader = await as(TOKENS.reader);
  assert.equal(((await reader.subscribeRaw(['#'])) as ErrorFrame).code, ErrorCode.notAuthorized);
  assert.equal(((await reader.subscribeRaw(['$SYS/#'])) as ErrorFrame).code, ErrorCode.notAuthorized);
  assert.equal(((await reader.subscribeRaw(['devices/pi-01/secret/#'])) as ErrorFrame).code, ErrorCode.notAuthorized);
});

test('retained and live messages on a denied topic never pass through a broader allowed wildcard', async () => {
  const admin = await as(TOKENS.admin);
  await admin.publish('devices/r1/secret/key', bytes('hunter2'), { retain: true, ack: true });
  await admin.publish('devices/r1/status', bytes('online'), { retain: true, ack: true });
  const reader = await as(TOKENS.reader);
  const { retained } = await reader.subscribe(['devices/#']);
  const topics = retained.map((d) => d.topic);
  assert.ok(topics.includes('devices/r1/status'), `snapshot ${topics.join()}`);
  assert.ok(!topics.some((t) => t.includes('/secret/')), `snapshot leaked: ${topics.join()}`);
  await admin.publish('devices/r1/secret/key', bytes('hunter3'), { ack: true });
  await admin.publish('devices/r1/temp', bytes('20'), { ack: true });
  await reader.expect(isDelivery('devices/r1/temp', '20'));
  await reader.ping();
  assert.ok(!reader.deliveries().some((d) => d.topic.includes('/secret/')), 'live delivery leaked');
  const m = await scrapeMetrics(broker.httpUrl);
  assert.ok((m.get('topicast_auth_withheld_total') ?? 0) >= 2, 'withheld deliveries counted');
});

test('will on a denied topic is refused and never published', async () => {
  const admin = await as(TOKENS.admin);
  await admin.subscribe(['devices/+/status']);
  const pi = await as(TOKENS.pi);
  const id = pi.id();
  pi.send({ op: Op.will, id, will: { topic: 'devices/pi-02/status', payload: bytes('offline'), retain: true } });
  const answer = (await pi.answer(id)) as ErrorFrame;
  assert.equal(answer.op, Op.error);
  assert.equal(answer.code, ErrorCode.notAuthorized);
  await pi.setWill('devices/pi-01/status', bytes('offline'), false); // allowed: this one is published
  pi.terminate();
  await admin.expect(isDelivery('devices/pi-01/status', 'offline'));
  await sleep(100);
  await admin.ping();
  assert.deepEqual(admin.deliveries('devices/pi-02/status'), []);
});

test('a JWT that expires while connected ends the connection with 4001 "token expired"', async () => {
  const c = await as(tokenFor('short', 1, { subscribe: ['a/#'] }));
  const started = Date.now();
  const { code, reason } = await c.closed;
  assert.equal(code, 4001);
  assert.equal(reason, 'token expired');
  assert.ok(Date.now() - started < 3000);
  const err = c.frames.find((f) => f.op === Op.error) as ErrorFrame | undefined;
  assert.equal(err?.code, ErrorCode.unauthenticated);
});

test('SDK: a token function is called on every attempt and refreshes an expiring token', async () => {
  let calls = 0;
  const client: Client = await connect(broker.url, {
    token: () => {
      calls++;
      return tokenFor('sdk', 1, { publish: ['sdk/#'], subscribe: ['sdk/#'] });
    },
    reconnect: { minDelayMs: 20, maxDelayMs: 100 },
  });
  try {
    const got: unknown[] = [];
    await client.subscribe('sdk/#', (v) => got.push(v));
    await waitFor(() => calls >= 3, 'two refreshes after expiry', 8000);
    await waitFor(() => client.state === 'open', 'open again');
    await client.publish('sdk/y', 7, { ack: true });
    await waitFor(() => got.includes(7), 'delivery after refresh');
  } finally {
    await client.close();
  }
});

test('SDK: a static bad token fails connect with close code 4001', async () => {
  await assert.rejects(connect(broker.url, { token: 'wrong-token' }), (err: unknown) => err instanceof ConnectionError && err.closeCode === 4001);
});

test('HTTP publish: Bearer required; 401 without or with a bad token, 403 outside the filters, 200 inside', async () => {
  const admin = await as(TOKENS.admin);
  await admin.subscribe(['devices/#']);
  const post = (topic: string, token?: string) =>
    fetch(`${broker.httpUrl}/api/publish/${topic}`, { method: 'POST', body: 'v', headers: token ? { Authorization: `Bearer ${token}` } : {} });
  const none = await post('devices/pi-01/http');
  assert.equal(none.status, 401);
  assert.equal(none.headers.get('www-authenticate'), 'Bearer');
  assert.equal(((await none.json()) as { error: { code: number } }).error.code, ErrorCode.unauthenticated);
  assert.equal((await post('devices/pi-01/http', 'bad')).status, 401);
  assert.equal((await post('devices/pi-01/http', tokenFor('pi-01', -5, { publish: ['#'] }))).status, 401);
  const denied = await post('devices/pi-02/http', TOKENS.pi);
  assert.equal(denied.status, 403);
  assert.equal(((await denied.json()) as { error: { code: number } }).error.code, ErrorCode.notAuthorized);
  assert.equal((await post('devices/pi-01/http', TOKENS.pi)).status, 200);
  assert.equal((await post('$SYS/broker/version', TOKENS.admin)).status, 403, '$SYS is the broker\'s own, even for a publish-everything token');
  const jwt = await post('devices/j1/http', tokenFor('j1', 60, { publish: ['devices/{sub}/#'] }));
  assert.equal(jwt.status, 200);
  await admin.expect(isDelivery('devices/pi-01/http', 'v'));
  await admin.expect(isDelivery('devices/j1/http', 'v'));
  await admin.ping();
  assert.deepEqual(admin.deliveries('devices/pi-02/http'), []);
});

test('origin allowlist: another site refused with 403, listed and own origins allowed', async () => {
  const open = (origin: string, url = broker.url, protocols = protocolsWith(TOKENS.admin)) =>
    new Promise<number>((resolve) => {
      const ws = new WebSocket(url, protocols, { origin });
      ws.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode ?? 0);
        ws.terminate();
      });
      ws.once('open', () => {
        resolve(101);
        ws.terminate();
      });
      ws.once('error', () => resolve(-1));
    });
  assert.equal(await open('https://evil.example'), 403);
  assert.equal(await open('https://app.example.com'), 101);
  assert.equal(await open(`http://127.0.0.1:${broker.port}`), 101);
  // MQTT over WebSocket is guarded the same way.
  const mqttUrl = `ws://127.0.0.1:${broker.port}/mqtt`;
  assert.equal(await open('https://evil.example', mqttUrl, ['mqtt']), 403);
  assert.equal(await open('https://app.example.com', mqttUrl, ['mqtt']), 101);
  const m = await scrapeMetrics(broker.httpUrl);
  assert.ok((m.get('topicast_origin_refused_total') ?? 0) >= 1);
});

test('topicast pub / sub: --token (or TOPICAST_TOKEN) authenticates; without it the command fails with the reason', async () => {
  const run = promisify(execFile);
  const sub = run(process.execPath, [BROKER_MAIN, 'sub', '-t', 'devices/pi-01/cmd/#', '-C', '1', '--codec', 'text', '--url', broker.url, '--token', TOKENS.pi], { timeout: 10_000 });
  // Publish until the CLI subscriber (started concurrently) has seen one: bounded at 50 tries.
  const out = (async () => (await sub).stdout)();
  for (let i = 0; i < 50; i++) {
    await run(process.execPath, [BROKER_MAIN, 'pub', '-t', 'devices/pi-01/cmd/go', '-m', 'now', '--codec', 'text', '--url', broker.url], { env: { ...process.env, TOPICAST_TOKEN: TOKENS.admin }, timeout: 10_000 });
    const settled = await Promise.race([out.then(() => true), sleep(100).then(() => false)]);
    if (settled) break;
  }
  assert.equal((await out).trim(), 'now');
  const refused = await run(process.execPath, [BROKER_MAIN, 'pub', '-t', 'devices/pi-01/x', '-m', '1', '--url', broker.url], { timeout: 10_000, env: { ...process.env, TOPICAST_TOKEN: '' } }).then(
    () => 'exit 0',
    (err: { code?: number; stderr?: string }) => `exit ${err.code}: ${err.stderr ?? ''}`,
  );
  assert.match(refused, /^exit [1-9]/);
  assert.match(refused, /token required|4001/);
});

test('metrics count failures and denials; the logs never contain a token', async () => {
  const m = await scrapeMetrics(broker.httpUrl);
  assert.ok((m.get('topicast_auth_failures_total') ?? 0) >= 6);
  assert.ok((m.get('topicast_auth_denied_total') ?? 0) >= 4);
  assert.ok((m.get('topicast_auth_expired_total') ?? 0) >= 1);
  const logs = broker.logs.join('\n');
  assert.ok(logs.includes('authentication failed'), 'refusals are logged (without the token)');
  for (const t of issued) {
    assert.ok(!logs.includes(t), 'a token appears in the broker log');
    assert.ok(!logs.includes(Buffer.from(t).toString('base64url')), 'an encoded token appears in the broker log');
  }
  assert.ok(!logs.includes(SECRET));
});

test('without any auth setting: anonymous and unrestricted, with a loud warning at start-up', async () => {
  const open = await startBroker();
  assert.ok(open.logs.some((l) => l.includes('"level":40') && l.includes('AUTHENTICATION IS OFF')), open.logs.join('\n'));
  const c = await NativeClient.connect(open.url, { protocols: protocolsWith('ignored-token') });
  await c.subscribe(['$SYS/#', '#']);
  const r = await fetch(`${open.httpUrl}/api/publish/any/topic`, { method: 'POST', body: 'x' });
  assert.equal(r.status, 200);
  await c.expect(isDelivery('any/topic', 'x'));
  assert.equal(text(c.deliveries('any/topic')[0]!.payload), 'x');
  await open.stop();
});
