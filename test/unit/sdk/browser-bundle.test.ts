/**
 * The browser bundle (dist/browser/topicast.js) in Node with a fake global
 * WebSocket: proves the bundle uses the platform WebSocket (not `ws`), speaks the
 * protocol over ArrayBuffers, and handles a text message and a close event.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeClientFrame, encodeFrame, Op, SUBPROTOCOL, type ClientFrame } from 'topicast/protocol';

type Listener = ((e: unknown) => void) | null;

class FakeWebSocket {
  static instances: FakeWebSocket[] = [];
  binaryType = 'blob';
  bufferedAmount = 0;
  readyState = 0;
  onopen: Listener = null;
  onmessage: Listener = null;
  onerror: Listener = null;
  onclose: Listener = null;
  readonly sent: ClientFrame[] = [];
  closedWith: [number | undefined, string | undefined] | undefined;
  constructor(readonly url: string, readonly protocols: string[]) {
    FakeWebSocket.instances.push(this);
  }
  send(data: ArrayBufferView | ArrayBuffer): void {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.sent.push(decodeClientFrame(bytes));
  }
  close(code?: number, reason?: string): void {
    // Like browsers: pages may only send 1000 and 3000–4999.
    if (code !== undefined && code !== 1000 && (code < 3000 || code > 4999)) throw new Error(`InvalidAccessError: close code ${code}`);
    this.closedWith = [code, reason];
    queueMicrotask(() => this.onclose?.({ code: code ?? 1005, reason: reason ?? '' }));
  }
  // test side
  serverOpen(): void {
    this.readyState = 1;
    this.onopen?.({});
    this.serverSend({ op: Op.welcome, info: { version: 1, server: 'fake', maxPayloadBytes: 1000, idleTimeoutSec: 0 } });
  }
  serverSend(frame: Parameters<typeof encodeFrame>[0]): void {
    const bytes = encodeFrame(frame);
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
}

const g = globalThis as { WebSocket?: unknown };
const previous = g.WebSocket;
g.WebSocket = FakeWebSocket;
after(() => {
  g.WebSocket = previous;
});

const flush = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await Promise.resolve();
};

test('the browser bundle runs on the global WebSocket', async () => {
  const specifier: string = 'topicast/browser';
  const { connect } = (await import(specifier)) as { connect: (url: string, o?: object) => Promise<{ state: string; publish(t: string, v: unknown, o?: object): Promise<void>; subscribe(f: string, h: (v: unknown) => void): Promise<unknown>; close(): Promise<void> }> };
  const p = connect('ws://example.test/ws', { reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  await flush();
  const ws = FakeWebSocket.instances.at(-1)!;
  assert.equal(ws.url, 'ws://example.test/ws');
  assert.deepEqual(ws.protocols, [SUBPROTOCOL]);
  assert.equal(ws.binaryType, 'arraybuffer');
  ws.serverOpen();
  const client = await p;
  assert.equal(client.state, 'open');
  const got: unknown[] = [];
  const subP = client.subscribe('a/#', (v) => got.push(v));
  await flush();
  const sub = ws.sent.find((f) => f.op === Op.subscribe)!;
  ws.serverSend({ op: Op.ack, id: sub.id, result: { retained: 0 } });
  await subP;
  ws.serverSend({ op: Op.delivery, topic: 'a/b', payload: new Uint8Array([0xcb, 0x40, 0x48, 0x19, 0x99, 0x99, 0x99, 0x99, 0x9a]), flags: 0, contentType: 'application/msgpack' }); // msgpack 48.2
  ws.serverSend({ op: Op.delivery, topic: 'a/b', payload: new TextEncoder().encode('7'), flags: 0 }); // mosquitto_pub -m 7: untagged
  assert.deepEqual(got, [48.2, 7]);
  await client.publish('a/c', 1);
  assert.deepEqual(ws.sent.at(-1), { op: Op.publish, id: 0, topic: 'a/c', payload: new Uint8Array([1]), flags: 0, contentType: 'application/msgpack' });
  // The link drops: the client reconnects and restores the subscription.
  ws.onclose?.({ code: 1006, reason: '' });
  assert.equal(client.state, 'reconnecting');
  await new Promise((r) => setTimeout(r, 20));
  const next = FakeWebSocket.instances.at(-1)!;
  assert.notEqual(next, ws);
  next.serverOpen();
  assert.equal(client.state, 'open');
  await flush();
  assert.ok(next.sent.some((f) => f.op === Op.subscribe), 'subscription restored');
  const closing = client.close();
  assert.deepEqual(next.closedWith, [1000, '']);
  await closing;
  assert.equal(client.state, 'closed');
});

test('the browser bundle treats a text message as a protocol error (1002, not retried)', async () => {
  const specifier: string = 'topicast/browser';
  const { connect } = (await import(specifier)) as { connect: (url: string, o?: object) => Promise<{ state: string; on(e: 'error', l: (e: { code: number }) => void): void }> };
  const p = connect('ws://example.test/ws', { reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  await flush();
  const ws = FakeWebSocket.instances.at(-1)!;
  ws.serverOpen();
  const client = await p;
  const errors: number[] = [];
  client.on('error', (e) => errors.push(e.code));
  ws.onmessage?.({ data: 'hello' });
  assert.equal(client.state, 'closed');
  assert.equal(ws.closedWith?.[0], undefined); // native close() without a code: not a clean close, the will stays armed
  assert.equal(errors.length, 1);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(FakeWebSocket.instances.at(-1), ws); // no new attempt
});

test('the browser bundle drops a link that sends a malformed frame without throwing (browsers refuse close code 1002)', async () => {
  const specifier: string = 'topicast/browser';
  const { connect } = (await import(specifier)) as { connect: (url: string, o?: object) => Promise<{ state: string; on(e: 'error', l: (e: { code: number }) => void): void }> };
  const p = connect('ws://example.test/ws', { reconnect: { minDelayMs: 1, maxDelayMs: 1 } });
  await flush();
  const ws = FakeWebSocket.instances.at(-1)!;
  ws.serverOpen();
  const client = await p;
  const errors: number[] = [];
  client.on('error', (e) => errors.push(e.code));
  ws.onmessage?.({ data: new Uint8Array([0x92, 0x63, 0xc1]).buffer });
  assert.equal(client.state, 'closed');
  assert.deepEqual(errors, [1]); // ErrorCode.badFrame
  assert.deepEqual(ws.closedWith, [undefined, undefined]);
});
