/**
 * What the broker's port refuses at the edge (docs/SECURITY.md "Requests and messages"), against
 * the real process with raw TCP and the `ws` client: ambiguous HTTP framing (request smuggling),
 * symbolic links out of --static, WebSocket messages over the size limit, reserved PUBLISH flags.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import WebSocket from 'ws';
import { CloseCode, encodeFrame, ErrorCode, Op, SUBPROTOCOL } from 'topicast/protocol';
import { startBroker } from '../helpers/broker.js';
import { bytes, isDelivery, NativeClient, scrapeMetrics } from '../helpers/native-client.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-framing-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Sends raw bytes and collects everything the broker answers until it closes (or 2 s pass). */
function rawHttp(port: number, request: string): Promise<{ response: string; closedByBroker: boolean }> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1', () => socket.write(request));
    let response = '';
    let closedByBroker = false;
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => (response += d));
    socket.on('error', () => {});
    socket.on('end', () => (closedByBroker = true));
    const timer = setTimeout(() => socket.destroy(), 2000);
    socket.on('close', (hadError) => {
      clearTimeout(timer);
      resolve({ response, closedByBroker: closedByBroker || hadError });
    });
  });
}

const SMUGGLED = 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n';

test('ambiguous HTTP framing is closed at once: nothing after it is parsed, nothing published', async () => {
  const broker = await startBroker();
  const sub = await NativeClient.connect(broker.url);
  await sub.subscribe(['smuggle/#']);
  const cases = [
    // Two differing Content-Length: uWS would take the first and parse the rest as a second request.
    `POST /api/publish/smuggle/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: ${3 + SMUGGLED.length}\r\n\r\nabc${SMUGGLED}`,
    // Transfer-Encoding other than exactly "chunked": uWS reads these as chunked, a proxy may not.
    `POST /api/publish/smuggle/b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n${SMUGGLED}`,
    `POST /api/publish/smuggle/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n${SMUGGLED}`,
    `POST /api/publish/smuggle/d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n${SMUGGLED}`,
    // A WebSocket upgrade is an HTTP request too.
    `GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${SUBPROTOCOL}\r\nContent-Length: 0\r\nContent-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}`,
  ];
  for (const request of cases) {
    const { response, closedByBroker } = await rawHttp(broker.port, request);
    assert.equal(response, '', `no answer at all, neither to the request nor to what it smuggles: ${JSON.stringify(request.slice(0, 60))}`);
    assert.ok(closedByBroker, 'the broker closed the connection');
  }
  // Content-Length with Transfer-Encoding: uWebSockets.js answers 400 and closes by itself.
  const both = await rawHttp(broker.port, `POST /api/publish/smuggle/e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n${SMUGGLED}`);
  assert.match(both.response, /^HTTP\/1\.1 400 /);
  assert.ok(!both.response.includes('200 OK'));
  const metrics = await scrapeMetrics(broker.httpUrl);
  assert.equal(metrics.get('topicast_http_framing_refused_total'), cases.length);
  const publishes = await rawHttp(broker.port, 'POST /api/publish/smuggle/ok HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
  assert.match(publishes.response, /^HTTP\/1\.1 200 /, 'a repeated identical Content-Length is unambiguous (RFC 9112 §6.3) and accepted');
  await sub.expect(isDelivery('smuggle/ok', 'ok'));
  assert.deepEqual(sub.deliveries().map((d) => d.topic), ['smuggle/ok'], 'none of the refused requests was published');
});

test('a symbolic link inside --static that leads outside it is not served; one that stays inside is', async () => {
  const root = join(dir, 'site');
  mkdirSync(join(root, 'sub'), { recursive: true });
  writeFileSync(join(root, 'index.html'), '<h1>site</h1>');
  writeFileSync(join(root, 'sub', 'page.html'), 'inside');
  writeFileSync(join(dir, 'secret.txt'), 'outside the root');
  mkdirSync(join(dir, 'private'));
  writeFileSync(join(dir, 'private', 'key.pem'), 'outside the root too');
  symlinkSync(join(dir, 'secret.txt'), join(root, 'leak.txt'));
  symlinkSync(join(dir, 'private'), join(root, 'private'));
  symlinkSync(join(root, 'sub', 'page.html'), join(root, 'alias.html'));
  const broker = await startBroker({ args: ['--static', root] });
  for (const path of ['/leak.txt', '/private/key.pem']) {
    const res = await fetch(`${broker.httpUrl}${path}`);
    const body = await res.text();
    assert.equal(res.status, 404, path);
    assert.ok(!body.includes('outside the root'), path);
  }
  const inside = await fetch(`${broker.httpUrl}/alias.html`);
  assert.equal(inside.status, 200);
  assert.equal(await inside.text(), 'inside');
});

/** Sends one binary message of `size` bytes on a fresh native WebSocket; the close the `ws` client sees. */
function sendOversize(url: string, size: number): Promise<{ code: number; reason: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, SUBPROTOCOL);
    ws.on('open', () => ws.send(new Uint8Array(size)));
    ws.on('error', () => {});
    ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() }));
    ws.on('unexpected-response', () => reject(new Error('upgrade refused')));
  });
}

test('a WebSocket message over the limit is closed with 1009 and a close frame, up to four times the limit', async () => {
  const maxPayloadBytes = 1000;
  const broker = await startBroker({ args: ['--max-payload-bytes', String(maxPayloadBytes)] });
  const frameLimit = maxPayloadBytes + 1024 + 1024; // PROTOCOL.md §1: maxPayloadBytes + maxTopicBytes + 1024
  for (const size of [frameLimit + 1, Math.floor(frameLimit * 2.5), frameLimit * 4]) {
    const close = await sendOversize(broker.url, size);
    assert.equal(close.code, CloseCode.messageTooBig, `a message of ${size} bytes: ${JSON.stringify(close)}`);
    assert.match(close.reason, /exceeds/);
  }
  // Beyond that uWebSockets.js cuts the connection at the frame header, unread (documented in docs/SECURITY.md).
  assert.equal((await sendOversize(broker.url, frameLimit * 4 + 1)).code, 1006);
  assert.equal(broker.proc.exitCode, null);
});

test('a native PUBLISH with reserved flag bits set is a malformed frame (PROTOCOL.md §3.3)', async () => {
  const broker = await startBroker();
  const sub = await NativeClient.connect(broker.url);
  await sub.subscribe(['flags/#']);
  for (const flags of [2, 4, 0x80, 0x81]) {
    const c = await NativeClient.connect(broker.url);
    c.send(encodeFrame({ op: Op.publish, id: 7, topic: 'flags/x', payload: bytes('x'), flags }));
    const error = await c.expect((f) => f.op === Op.error);
    assert.equal(error.op === Op.error && error.code, ErrorCode.badFrame, `flags ${flags}`);
    assert.equal((await c.closed).code, CloseCode.protocolError);
  }
  const ok = await NativeClient.connect(broker.url);
  await ok.publish('flags/x', bytes('retain bit only'), { retain: true, ack: true });
  await sub.expect(isDelivery('flags/x', 'retain bit only'));
  assert.equal(sub.deliveries('flags/x').length, 1, 'none of the refused publishes was routed');
});
