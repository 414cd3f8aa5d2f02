/**
 * Per-IP abuse limits against the real broker process with real clients (ws, raw MQTT over TCP,
 * fetch): each limit trips, is counted in /metrics, and recovers. Tests connect from
 * 127.0.0.1, which is exempt by default, so every broker here clears the exemption.
 */
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect as netConnect } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { SUBPROTOCOL } from 'topicast/protocol';
import { startBroker } from '../helpers/broker.js';
import { NativeClient, scrapeMetrics, sleep } from '../helpers/native-client.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-limits-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const NO_EXEMPTION = '--limits-exempt-ips=';

/** HTTP status of a refused upgrade and its Retry-After, or 101 when it opened. */
async function tryNative(url: string, protocols: string[] = [SUBPROTOCOL]): Promise<{ status: number; retryAfter?: string; client?: NativeClient }> {
  try {
    const client = await NativeClient.connect(url, { protocols, awaitWelcome: false });
    return { status: 101, client };
  } catch (err) {
    const e = err as { status?: number; message: string };
    if (e.status === undefined) throw err;
    return { status: e.status, retryAfter: /Retry-After/i.test(e.message) ? 'present' : undefined };
  }
}

/** A raw WebSocket upgrade request: the HTTP status and Retry-After of a refusal. */
function rawUpgrade(port: number, path: string, protocol: string): Promise<{ status: number; retryAfter: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request({
      host: '127.0.0.1', port, path,
      headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Protocol': protocol },
    });
    req.once('response', (res) => {
      resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'] as string | undefined });
      res.resume();
      req.destroy();
    });
    req.once('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, retryAfter: undefined });
    });
    req.once('error', reject);
    req.end();
  });
}

/** Whether an MQTT TCP connection gets a CONNACK (true) or is closed without one (false). Raw socket: bounded in time. */
function mqttTcpAccepted(port: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('neither CONNACK nor close within 3 s'));
    }, 3000);
    const done = (accepted: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(accepted);
    };
    socket.once('connect', () => socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `lim-${Math.random()}`, keepalive: 30 })));
    socket.once('data', (d: Buffer) => done(d[0] === 0x20)); // CONNACK
    socket.once('close', () => done(false));
    socket.once('error', () => done(false));
  });
}

test('maxConnectionsPerIp: over native, /mqtt and MQTT TCP together; a slot frees when a client leaves', { timeout: 20_000 }, async () => {
  const broker = await startBroker({ args: ['--max-connections-per-ip', '3', '--connect-rate-per-ip', '0', NO_EXEMPTION] });
  const clients: NativeClient[] = [];
  for (let i = 0; i < 3; i++) {
    const r = await tryNative(broker.url);
    assert.equal(r.status, 101);
    clients.push(r.client!);
  }
  const refused = await rawUpgrade(broker.port, '/ws', SUBPROTOCOL);
  assert.equal(refused.status, 429);
  assert.equal(refused.retryAfter, '1');
  assert.equal((await tryNative(`ws://127.0.0.1:${broker.port}/mqtt`, ['mqtt'])).status, 429);
  assert.equal(await mqttTcpAccepted(broker.mqttPort), false, 'the TCP socket is closed before CONNACK');
  clients.pop()!.terminate();
  await sleep(100);
  assert.equal(await mqttTcpAccepted(broker.mqttPort), true, 'recovered once a connection closed');
  await sleep(100);
  assert.equal((await tryNative(broker.url)).status, 101);
  const m = await scrapeMetrics(broker.httpUrl);
  assert.ok((m.get('topicast_limit_connections_per_ip_refused_total') ?? 0) >= 3);
  await broker.stop();
});

test('connectRatePerIp: beyond the burst 429, allowed again as the bucket refills', { timeout: 20_000 }, async () => {
  const broker = await startBroker({ args: ['--connect-rate-per-ip', '5', '--connect-burst-per-ip', '4', NO_EXEMPTION] });
  for (let i = 0; i < 4; i++) {
    const r = await tryNative(broker.url);
    assert.equal(r.status, 101, `connection ${i}`);
    r.client!.terminate();
  }
  assert.equal((await tryNative(broker.url)).status, 429);
  // TCP as well: the same bucket.
  const tcp = netConnect(broker.mqttPort, '127.0.0.1');
  const closedEarly = await new Promise<boolean>((resolve) => {
    tcp.once('close', () => resolve(true));
    setTimeout(() => resolve(false), 1000);
  });
  tcp.destroy();
  assert.equal(closedEarly, true);
  await sleep(450); // 5 per second: two tokens back
  assert.equal((await tryNative(broker.url)).status, 101);
  const m = await scrapeMetrics(broker.httpUrl);
  assert.ok((m.get('topicast_limit_connect_rate_refused_total') ?? 0) >= 2);
  await broker.stop();
});

test('backoff after failed authentication: the address waits, even with a good token, then recovers', { timeout: 20_000 }, async () => {
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, JSON.stringify({ tokens: [{ token: 'good-token-for-limits', subscribe: ['#'], publish: ['#'] }] }));
  const broker = await startBroker({ args: ['--auth-token-file', tokens, '--auth-failures-before-backoff', '2', '--auth-backoff-max-sec', '1', '--connect-rate-per-ip', '0', NO_EXEMPTION] });
  const offer = (t: string) => [SUBPROTOCOL, `topicast.token.${Buffer.from(t).toString('base64url')}`];
  for (let i = 0; i < 2; i++) {
    const r = await tryNative(broker.url, offer(`guess-${i}`));
    assert.equal(r.status, 101);
    assert.equal((await r.client!.closed).code, 4001);
  }
  assert.equal((await tryNative(broker.url, offer('good-token-for-limits'))).status, 429, 'in backoff');
  const post = await fetch(`${broker.httpUrl}/api/publish/x`, { method: 'POST', body: 'v', headers: { Authorization: 'Bearer good-token-for-limits' } });
  assert.equal(post.status, 429, 'HTTP publish shares the backoff');
  assert.equal(post.headers.get('retry-after'), '1');
  await sleep(1100);
  const ok = await tryNative(broker.url, offer('good-token-for-limits'));
  assert.equal(ok.status, 101);
  await ok.client!.ping();
  const m = await scrapeMetrics(broker.httpUrl);
  assert.ok((m.get('topicast_limit_auth_backoff_refused_total') ?? 0) >= 2);
  await broker.stop();
});

test('backoff after failed authentication over MQTT: guesses put the address in backoff, then it recovers', { timeout: 20_000 }, async () => {
  const tokens = join(dir, 'tokens-mqtt.json');
  writeFileSync(tokens, JSON.stringify({ tokens: [{ token: 'good-mqtt-token', subscribe: ['#'], publish: ['#'] }] }));
  const broker = await startBroker({ args: ['--auth-token-file', tokens, '--auth-failures-before-backoff', '2', '--auth-backoff-max-sec', '1', '--connect-rate-per-ip', '0', NO_EXEMPTION] });
  // The CONNACK reason code, or 'closed' when the connection ends without one (refused at accept).
  const attempt = (password: string): Promise<number | 'closed'> => new Promise((resolve, reject) => {
    const socket = netConnect(broker.mqttPort, '127.0.0.1');
    const parser = mqttPacket.parser({ protocolVersion: 5 });
    let answer: number | 'closed' = 'closed';
    parser.on('packet', (p) => {
      if (p.cmd === 'connack') answer = p.reasonCode ?? -1;
      socket.end();
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('close', () => resolve(answer));
    socket.on('error', () => undefined);
    setTimeout(() => reject(new Error('no answer within 5 s')), 5000).unref();
    socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clientId: `c-${password}`, clean: true, keepalive: 30, username: 'dev', password: Buffer.from(password) }, { protocolVersion: 5 }));
  });
  assert.equal(await attempt('guess-1'), 0x86);
  assert.equal(await attempt('guess-2'), 0x86);
  assert.equal(await attempt('good-mqtt-token'), 'closed', 'in backoff, even with the right token: refused at accept');
  await sleep(1100);
  assert.equal(await attempt('good-mqtt-token'), 0, 'recovered');
  const m = await scrapeMetrics(broker.httpUrl);
  assert.ok((m.get('topicast_limit_auth_backoff_refused_total') ?? 0) >= 1);
  await broker.stop();
});

test('publishes per client and subscriptions per client are limited and counted', { timeout: 20_000 }, async () => {
  const broker = await startBroker({ args: ['--max-subscriptions-per-connection', '2', '--max-publishes-per-sec', '1', '--publish-burst', '2'] });
  const c = await NativeClient.connect(broker.url);
  await c.subscribe(['a', 'b']);
  const refused = await c.subscribeRaw(['c']);
  assert.equal(refused.op, 17);
  const answers = [];
  for (let i = 0; i < 3; i++) answers.push((await c.publish('a', new Uint8Array([i]), { ack: true }))?.op);
  assert.deepEqual(answers, [16, 16, 17], 'the third publish within the burst is refused');
  await sleep(1100);
  assert.equal((await c.publish('a', new Uint8Array([9]), { ack: true }))?.op, 16, 'refilled');
  await c.unsubscribe(['b']);
  await c.subscribe(['c']);
  const m = await scrapeMetrics(broker.httpUrl);
  assert.equal(m.get('topicast_subscriptions_refused_total'), 1);
  assert.ok((m.get('topicast_rate_limited_total') ?? 0) >= 1);
  await broker.stop();
});

test('loopback is exempt by default: many connections from 127.0.0.1 are fine', { timeout: 20_000 }, async () => {
  const broker = await startBroker({ args: ['--max-connections-per-ip', '2', '--connect-rate-per-ip', '1', '--connect-burst-per-ip', '1'] });
  const clients = [];
  for (let i = 0; i < 5; i++) clients.push(await NativeClient.connect(broker.url));
  for (const c of clients) c.terminate();
  await broker.stop();
});
