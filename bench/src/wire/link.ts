/**
 * The load generator's minimal clients share one shape, `Link`: subscribe (resolves
 * on the broker's acknowledgement), batched publishes from a per-topic template
 * patched in place (one buffer and one write per batch), and a delivery callback
 * that receives bounds into the received bytes instead of allocated strings.
 * Each protocol (raw uWS, native, MQTT, Socket.IO, NATS) is one subclass in its
 * own file; the transport is either TCP (stream) or the minimal WebSocket client.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { MiniWs } from './ws-client.js';

export type WireName = 'raw' | 'native' | 'mqtt' | 'sio' | 'nats' | 'sse';

export interface Endpoint {
  wire: WireName;
  transport: 'ws' | 'tcp';
  host: string;
  port: number;
  /** WebSocket path, e.g. `/ws`, `/mqtt`, `/socket.io/?EIO=4&transport=websocket`. */
  path?: string;
  /** WebSocket clients: Node 'data' events (default) or `onread` into one shared buffer (ws-client.ts). */
  reader?: 'data' | 'onread';
}

/** One delivery: topic bytes `buf[topicStart..topicEnd)`, payload `buf[payloadStart..payloadEnd)`, valid during the call. */
export type OnDelivery = (buf: Buffer, topicStart: number, topicEnd: number, payloadStart: number, payloadEnd: number) => void;

/** Patches payload `i` of a batch in place: `buf[at..at+len)`. */
export type Fill = (buf: Buffer, at: number, i: number) => void;

export interface Template {
  /** One complete protocol packet (before WebSocket framing). */
  bytes: Buffer;
  /** Offset of the payload inside `bytes`. */
  payloadAt: number;
}

interface CachedTemplate extends Template {
  payloadBytes: number;
  retain: boolean;
}

const noop = (): void => undefined;

export abstract class Link {
  protected ws: MiniWs | null = null;
  protected sock: Socket | null = null;
  protected readonly binary: boolean = true;
  private readonly waiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  private readonly templates = new Map<string, CachedTemplate>();
  onDelivery: OnDelivery = noop;
  onClose: () => void = noop;
  closed = false;

  constructor(readonly ep: Endpoint) {}

  /** Opens the transport and runs the protocol's handshake. */
  async open(timeoutMs = 10_000): Promise<void> {
    const ready = this.expectAck(timeoutMs, 'handshake');
    ready.catch(noop); // awaited below; a transport failure rejects it through markClosed
    try {
      await this.openTransport(timeoutMs);
    } catch (err) {
      this.markClosed();
      throw err;
    }
    this.afterOpen();
    await ready;
  }

  private async openTransport(timeoutMs: number): Promise<void> {
    if (this.ep.transport === 'ws') {
      this.ws = await MiniWs.open(
        { host: this.ep.host, port: this.ep.port, path: this.ep.path ?? '/', protocol: this.subprotocol(), timeoutMs, ...(this.ep.reader && { reader: this.ep.reader }) },
        (buf, start, end) => this.onBytes(buf, start, end),
      );
      this.ws.onClose = () => this.markClosed();
      this.sock = this.ws.socket;
    } else {
      const sock = netConnect({ host: this.ep.host, port: this.ep.port, noDelay: true });
      this.sock = sock;
      await new Promise<void>((resolve, reject) => {
        sock.once('connect', resolve);
        sock.once('error', reject);
      });
      sock.on('data', (c: Buffer) => this.onBytes(c, 0, c.length));
      sock.on('error', () => this.markClosed());
      sock.on('close', () => this.markClosed());
    }
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    for (const w of this.waiters.splice(0)) w.reject(new Error(`${this.ep.wire} connection closed`));
    this.onClose();
  }

  /** WebSocket subprotocol to request, if any. */
  protected subprotocol(): string | undefined {
    return undefined;
  }

  /** Sends the protocol's hello, if the client speaks first. */
  protected afterOpen(): void {}

  /** Received bytes: a whole message (ws) or a stream chunk (tcp). */
  protected abstract onBytes(buf: Buffer, start: number, end: number): void;

  protected abstract template(topic: string, payloadBytes: number, retain: boolean): Template;

  protected abstract sendSubscribe(filter: string): void;

  /** A promise resolved by the next `ack()` in order (handshake, then subscribes). */
  protected expectAck(timeoutMs: number, what: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.ep.wire}: no ${what} ack within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  protected ack(): void {
    this.waiters.shift()?.resolve();
  }

  protected fail(why: string): void {
    this.waiters.shift()?.reject(new Error(`${this.ep.wire}: ${why}`));
  }

  /** Sends one protocol packet (framed when on WebSocket). */
  protected sendPacket(bytes: Buffer): void {
    if (this.closed) return;
    if (this.ws) this.ws.send(bytes, this.binary);
    else this.sock!.write(bytes);
  }

  subscribe(filter: string, timeoutMs = 10_000): Promise<void> {
    const acked = this.expectAck(timeoutMs, `subscribe ${filter}`);
    this.sendSubscribe(filter);
    return acked;
  }

  /**
   * Publishes `count` messages with `payloadBytes`-byte payloads on `topic` in one write.
   * `fill` writes each payload in place. Returns false when the socket buffers (wait for `drained`).
   */
  publishBatch(topic: string, payloadBytes: number, count: number, fill: Fill, retain = false): boolean {
    if (this.closed || count <= 0) return false;
    let t = this.templates.get(topic);
    if (!t || t.payloadBytes !== payloadBytes || t.retain !== retain) {
      t = { ...this.template(topic, payloadBytes, retain), payloadBytes, retain };
      this.templates.set(topic, t);
    }
    const len = t.bytes.length;
    const ws = this.ws;
    const one = ws ? MiniWs.frameSize(len) : len;
    const out = Buffer.allocUnsafe(one * count);
    let at = 0;
    for (let i = 0; i < count; i++) {
      fill(t.bytes, t.payloadAt, i);
      if (ws) at = ws.frameInto(out, at, t.bytes, this.binary);
      else {
        t.bytes.copy(out, at);
        at += len;
      }
    }
    return this.sock!.write(out);
  }

  /** Publishes one payload (verification path; allocates). */
  publish(topic: string, payload: Uint8Array, retain = false): void {
    const t = this.template(topic, payload.length, retain);
    Buffer.from(payload.buffer, payload.byteOffset, payload.length).copy(t.bytes, t.payloadAt);
    this.sendPacket(t.bytes);
  }

  drained(): Promise<void> {
    const s = this.sock;
    if (!s || !s.writableNeedDrain || this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      s.once('drain', resolve);
      s.once('close', resolve);
    });
  }

  /** Stops reading from the socket (a stalled consumer). */
  pause(): void {
    this.sock?.pause();
  }

  resume(): void {
    this.sock?.resume();
  }

  close(): void {
    if (this.ws) this.ws.close();
    else this.sock?.end();
    this.closed = true;
    setTimeout(() => this.sock?.destroy(), 500).unref();
  }
}

/** Concatenates a leftover partial packet with the next chunk (stream protocols). */
export class Carry {
  private rest: Buffer | null = null;

  /** Returns the bytes to parse and their bounds. */
  join(buf: Buffer, start: number, end: number): [Buffer, number, number] {
    if (!this.rest) return [buf, start, end];
    const joined = Buffer.concat([this.rest, buf.subarray(start, end)]);
    this.rest = null;
    return [joined, 0, joined.length];
  }

  keep(buf: Buffer, from: number, end: number): void {
    if (from < end) this.rest = Buffer.from(buf.subarray(from, end));
  }
}
