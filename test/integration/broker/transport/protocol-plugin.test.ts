/**
 * A protocol is a plug-in (broker/src/session/handler.ts): the HTTP transport serves whatever
 * WebSocket endpoint, streams and requests a ProtocolHandler declares, admits and authenticates
 * them like the built-in ones, and names none. Proven here with a protocol the broker does not
 * ship: an echo over WebSocket `/echo`, a stream at `/api/echo-stream`, requests under `/api/echo/`.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import WebSocket from 'ws';
import { createContext, loadConfig, type Connection, type ProtocolHandler } from '@topicast/broker';
import type * as UwsModule from '../../../../broker/src/transport/uws.js';
import type * as AdmissionModule from '../../../../broker/src/session/admission.js';

const dist = (p: string): string => new URL(`../../../../../broker/dist/${p}`, import.meta.url).href;
const { listenHttp } = (await import(dist('transport/uws.js'))) as typeof UwsModule;
const { createGate } = (await import(dist('session/admission.js'))) as typeof AdmissionModule;

const silent = { level: 'silent', info() {}, warn() {}, error() {}, debug() {}, trace() {}, fatal() {}, child() { return silent; } };
const ctx = createContext(loadConfig(['--log-level', 'silent'], {}), silent as unknown as Parameters<typeof createContext>[1]);
const encoder = new TextEncoder();
const open = new Set<Connection>();
ctx.counters.open.echo = 0;

const echo: ProtocolHandler = {
  name: 'echo',
  websocket: { path: '/echo', subprotocol: 'echo.v1', maxMessageBytes: 64, authentication: 'in-band' },
  open(conn) {
    open.add(conn);
    ctx.counters.open.echo!++;
    return {
      onMessage: (bytes) => conn.send(bytes.slice().reverse()),
      onDrain() {},
      onClose() {
        open.delete(conn);
        ctx.counters.open.echo!--;
      },
    };
  },
  streams: [{
    path: '/api/echo-stream',
    headers: { 'Content-Type': 'text/plain; charset=utf-8' },
    accept(query) {
      const word = new URLSearchParams(query).get('word');
      if (word === null) return { status: 400, code: 16, message: 'word required' };
      return {
        token: undefined,
        check: () => undefined,
        open(conn) {
          conn.send(encoder.encode(`${word}\n`));
          conn.close(1000, 'said it');
          return { onMessage() {}, onDrain() {}, onClose() {} };
        },
      };
    },
  }],
  requests: [{ prefix: '/api/echo/', methods: ['POST'], maxBodyBytes: 8, handle: (_method, rest) => (rest === 'ok' ? { status: 204 } : { status: 404, code: 0, message: `no ${rest}` }) }],
  closeAll() {
    for (const conn of [...open]) conn.close(1001, 'bye');
  },
};

const gate = createGate(undefined);
const http = await listenHttp(ctx, {
  host: '127.0.0.1', port: 0, staticRoot: '/nonexistent', dashboardRoot: '/nonexistent', sdkRoot: '/nonexistent',
  protocols: [echo], gate, ready: () => true,
});
after(() => {
  echo.closeAll!();
  http.stopListening();
});
const base = `127.0.0.1:${http.port}`;

test('its WebSocket endpoint: upgraded with its subprotocol, bytes both ways, its own message limit, a plain GET told to upgrade', async () => {
  const ws = new WebSocket(`ws://${base}/echo`, 'echo.v1');
  await new Promise((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const answer = new Promise<Buffer>((resolve) => ws.once('message', (d) => resolve(d as Buffer)));
  ws.send(Buffer.from('abc'));
  assert.equal((await answer).toString(), 'cba');
  assert.equal(ctx.counters.open.echo, 1, 'counted under its name');
  const closed = new Promise<number>((resolve) => ws.once('close', resolve));
  ws.send(Buffer.alloc(65));
  assert.equal(await closed, 1009, 'beyond maxMessageBytes: close 1009');
  assert.equal((await fetch(`http://${base}/echo`)).status, 426);
  const wrong = new WebSocket(`ws://${base}/echo`, 'other');
  const status = await new Promise<number>((resolve) => wrong.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
  assert.equal(status, 400, 'without its subprotocol: 400');
});

test('its stream and its requests, and the admission every protocol gets: draining refuses a new stream or upgrade with 503', async () => {
  assert.equal((await fetch(`http://${base}/api/echo-stream`)).status, 400, 'its own request check');
  const r = await fetch(`http://${base}/api/echo-stream?word=hello`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get('content-type'), 'text/plain; charset=utf-8', 'its headers');
  assert.equal(await r.text(), 'hello\n');
  assert.equal((await fetch(`http://${base}/api/echo/ok`, { method: 'POST', body: 'x' })).status, 204);
  assert.equal((await fetch(`http://${base}/api/echo/nope`, { method: 'POST', body: 'x' })).status, 404);
  assert.equal((await fetch(`http://${base}/api/echo/ok`, { method: 'DELETE' })).status, 405, 'only its methods');
  assert.equal((await fetch(`http://${base}/api/echo/ok`, { method: 'POST', body: 'x'.repeat(9) })).status, 413, 'its body bound');
  gate.draining = true;
  try {
    const refused = await fetch(`http://${base}/api/echo-stream?word=late`);
    assert.equal(refused.status, 503);
    assert.equal(refused.headers.get('retry-after'), '1');
    const ws = new WebSocket(`ws://${base}/echo`, 'echo.v1');
    const status = await new Promise<number>((resolve) => ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0)));
    assert.equal(status, 503);
  } finally {
    gate.draining = false;
  }
});
