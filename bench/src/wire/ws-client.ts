/**
 * A minimal WebSocket client for the load generator (RFC 6455, client side only):
 * handshake, masked outgoing frames, unmasked incoming frames parsed in place.
 * No per-message allocation on receive: the callback gets the chunk and the
 * message's bounds; only a frame split across TCP reads is copied (carry).
 * Fragmented server messages are reassembled (rare path). Pings are answered.
 *
 * Two reader kinds (`WsOptions.reader`): `data` takes Node's 'data' events (a fresh buffer
 * per read); `onread` reads every socket of the process into one shared buffer
 * (net.Socket's `onread` option), the reader of the outside harness of issue 20: no
 * allocation per read, so the client drains its sockets with less CPU per byte.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';

/** Called once per complete message; `buf[start..end)` is valid only during the call. */
export type OnMessage = (buf: Buffer, start: number, end: number, binary: boolean) => void;

export interface WsOptions {
  host: string;
  port: number;
  path: string;
  protocol?: string;
  timeoutMs?: number;
  /** How received bytes are read (see above); default `data`. */
  reader?: 'data' | 'onread';
}

/** The one buffer every `onread` socket of this process reads into (the outside harness's reader). */
let shared: Buffer | null = null;
export const SHARED_READ_BYTES = 64 * 1024;

export class MiniWs {
  private carry: Buffer | null = null;
  private fragments: Buffer[] | null = null;
  private fragmentBinary = true;
  private readonly mask = randomBytes(4);
  closed = false;
  onClose: (() => void) | null = null;
  /** Socket reads handed to the frame parser by every client of this process (how batched deliveries arrive). */
  static reads = 0;

  private constructor(readonly socket: Socket, private readonly onMessage: OnMessage) {}

  static open(opts: WsOptions, onMessage: OnMessage): Promise<MiniWs> {
    return new Promise((resolve, reject) => {
      let onChunk: (buf: Buffer, n: number) => void = () => undefined;
      const socket = opts.reader === 'onread'
        ? netConnect({
            host: opts.host, port: opts.port, noDelay: true,
            onread: { buffer: (shared ??= Buffer.allocUnsafe(SHARED_READ_BYTES)), callback: (n: number, buf: Uint8Array): boolean => {
              onChunk(buf as Buffer, n);
              return true;
            } },
          })
        : netConnect({ host: opts.host, port: opts.port, noDelay: true });
      const ws = new MiniWs(socket, onMessage);
      if (opts.reader !== 'onread') socket.on('data', (c: Buffer) => onChunk(c, c.length));
      const key = randomBytes(16).toString('base64');
      let head = Buffer.alloc(0);
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`ws handshake timeout ${opts.host}:${opts.port}${opts.path}`));
      }, opts.timeoutMs ?? 10_000);
      const fail = (err: Error): void => {
        clearTimeout(timer);
        reject(err);
      };
      socket.once('error', fail);
      socket.on('connect', () => {
        socket.write(
          `GET ${opts.path} HTTP/1.1\r\nHost: ${opts.host}:${opts.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n` +
            (opts.protocol ? `Sec-WebSocket-Protocol: ${opts.protocol}\r\n` : '') +
            '\r\n',
        );
      });
      const onHead = (chunk: Buffer, n: number): void => {
        head = Buffer.concat([head, chunk.subarray(0, n)]);
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        socket.off('error', fail);
        clearTimeout(timer);
        const status = head.subarray(0, head.indexOf('\r\n')).toString();
        if (!/^HTTP\/1\.1 101/.test(status)) {
          socket.destroy();
          reject(new Error(`ws upgrade refused: ${status}`));
          return;
        }
        onChunk = (c, n) => ws.onData(c, n);
        socket.on('error', () => ws.markClosed());
        socket.on('close', () => ws.markClosed());
        resolve(ws);
        // Bytes that came with the 101 response are parsed after the caller's await resumed
        // (a microtask, so no socket data can overtake them).
        const rest = head.subarray(end + 4);
        if (rest.length > 0) queueMicrotask(() => ws.onData(rest, rest.length));
      };
      onChunk = onHead;
    });
  }

  private markClosed(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClose?.();
  }

  /** `chunk[0..len)` was read; with the shared reader, `chunk` is overwritten by the next read, so a partial frame is copied out (carry). */
  private onData(chunk: Buffer, len: number): void {
    MiniWs.reads++;
    let buf = chunk;
    let n = len;
    if (this.carry) {
      buf = Buffer.concat([this.carry, chunk.subarray(0, len)]);
      n = buf.length;
      this.carry = null;
    }
    let i = 0;
    while (n - i >= 2) {
      const b0 = buf[i]!;
      let len = buf[i + 1]! & 0x7f;
      let h = 2;
      if (len === 126) {
        if (n - i < 4) break;
        len = buf.readUInt16BE(i + 2);
        h = 4;
      } else if (len === 127) {
        if (n - i < 10) break;
        len = buf.readUInt32BE(i + 2) * 0x1_0000_0000 + buf.readUInt32BE(i + 6);
        h = 10;
      }
      if (n - i < h + len) break;
      const start = i + h;
      const end = start + len;
      i = end;
      const op = b0 & 0x0f;
      const fin = (b0 & 0x80) !== 0;
      if (op === 1 || op === 2) {
        if (fin) this.onMessage(buf, start, end, op === 2);
        else {
          this.fragments = [Buffer.from(buf.subarray(start, end))];
          this.fragmentBinary = op === 2;
        }
      } else if (op === 0 && this.fragments) {
        this.fragments.push(Buffer.from(buf.subarray(start, end)));
        if (fin) {
          const whole = Buffer.concat(this.fragments);
          this.fragments = null;
          this.onMessage(whole, 0, whole.length, this.fragmentBinary);
        }
      } else if (op === 9) {
        this.sendFrame(0xa, buf.subarray(start, end));
      } else if (op === 8) {
        this.socket.end();
        this.markClosed();
        return;
      }
    }
    if (i < n) this.carry = Buffer.from(buf.subarray(i, n));
  }

  /** Bytes of one masked frame carrying `payload`, written into `out` at `at`; returns the new offset. */
  frameInto(out: Buffer, at: number, payload: Uint8Array, binary = true): number {
    return this.writeFrame(out, at, binary ? 0x2 : 0x1, payload);
  }

  /** Size of the frame `frameInto` writes for a payload of `len` bytes. */
  static frameSize(len: number): number {
    return len + 4 + (len < 126 ? 2 : len < 65536 ? 4 : 10);
  }

  private writeFrame(out: Buffer, at: number, op: number, payload: Uint8Array): number {
    const len = payload.length;
    out[at++] = 0x80 | op;
    if (len < 126) out[at++] = 0x80 | len;
    else if (len < 65536) {
      out[at++] = 0x80 | 126;
      out.writeUInt16BE(len, at);
      at += 2;
    } else {
      out[at++] = 0x80 | 127;
      out.writeUInt32BE(Math.floor(len / 0x1_0000_0000), at);
      out.writeUInt32BE(len >>> 0, at + 4);
      at += 8;
    }
    const m = this.mask;
    out[at] = m[0]!;
    out[at + 1] = m[1]!;
    out[at + 2] = m[2]!;
    out[at + 3] = m[3]!;
    at += 4;
    for (let j = 0; j < len; j++) out[at + j] = payload[j]! ^ m[j & 3]!;
    return at + len;
  }

  private sendFrame(op: number, payload: Uint8Array): void {
    if (this.closed) return;
    const out = Buffer.allocUnsafe(MiniWs.frameSize(payload.length));
    this.writeFrame(out, 0, op, payload);
    this.socket.write(out);
  }

  send(payload: Uint8Array, binary = true): void {
    this.sendFrame(binary ? 0x2 : 0x1, payload);
  }

  /** Writes pre-framed bytes (several frames built with `frameInto`) in one syscall. */
  writeRaw(bytes: Buffer): boolean {
    if (this.closed) return false;
    return this.socket.write(bytes);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    const out = Buffer.allocUnsafe(MiniWs.frameSize(2));
    this.writeFrame(out, 0, 0x8, Buffer.from([0x03, 0xe8]));
    this.socket.end(out);
    setTimeout(() => this.socket.destroy(), 500).unref();
  }
}
