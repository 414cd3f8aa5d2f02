/**
 * A small native-protocol test client over the real `ws` package: raw frames
 * in and out, no SDK logic in between, so tests see exactly what the broker sends.
 *
 * Every frame received is kept in `frames` (unless `record: false`); `expect`
 * takes the first not-yet-taken frame matching a predicate, waiting for it with
 * a timeout. Requests (`subscribe`, `publish`, ...) pick their own ids and await
 * the matching ACK or ERROR. Every client is terminated at the end of the test file.
 *
 * @example
 * const c = await NativeClient.connect(broker.url);
 * const { retained } = await c.subscribe(['devices/#']);
 * await c.publish('devices/a/x', bytes('1'), { ack: true });
 * const d = await c.expect(isDelivery('devices/a/x'));
 */
import { after } from 'node:test';
import WebSocket from 'ws';
import {
  CloseCode, decodeServerFrame, encodeFrame, Flag, Op, SUBPROTOCOL,
  type ClientFrame, type HistoryEndInfo, type HistoryRequest, type ServerFrame, type SubscribeOptions, type WelcomeInfo,
} from 'topicast/protocol';

export type Delivery = Extract<ServerFrame, { op: typeof Op.delivery }>;
export type Ack = Extract<ServerFrame, { op: typeof Op.ack }>;
export type ErrorFrame = Extract<ServerFrame, { op: typeof Op.error }>;
export type HistoryRow = Extract<ServerFrame, { op: typeof Op.historyMessage }>;

export interface ConnectOptions {
  /** Subprotocols offered; default `topicast.v1`. */
  protocols?: string | string[];
  /** Answer WebSocket pings (ws default true); false simulates a peer that never answers. */
  autoPong?: boolean;
  /** Keep every received frame in `frames` (default true). Off for huge streams; use `onFrame`. */
  record?: boolean;
  /** Called for every frame as it arrives, before waiters see it. */
  onFrame?: (frame: ServerFrame) => void;
  /** Wait for the WELCOME frame before resolving (default true). */
  awaitWelcome?: boolean;
  timeoutMs?: number;
  /** Local address to connect from (e.g. 127.0.0.2: another loopback IP for per-IP limits). */
  localAddress?: string;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

const clients = new Set<NativeClient>();
let hooked = false;

export const utf8 = new TextEncoder();
const utf8Decoder = new TextDecoder();
/** UTF-8 bytes of a string, for payloads. */
export const bytes = (s: string): Uint8Array => utf8.encode(s);
/** A payload as text. */
export const text = (b: Uint8Array): string => utf8Decoder.decode(b);

/** Predicate for a DELIVERY, optionally on `topic`, with `payload` (as text) and with exactly `flags`. */
export const isDelivery = (topic?: string, payload?: string, flags?: number) => (f: ServerFrame): f is Delivery =>
  f.op === Op.delivery && (topic === undefined || f.topic === topic) && (payload === undefined || text(f.payload) === payload) && (flags === undefined || f.flags === flags);
export const isRetained = (f: ServerFrame): boolean => f.op === Op.delivery && (f.flags & Flag.retain) !== 0;

interface Waiter {
  predicate: (f: ServerFrame) => boolean;
  resolve: (f: ServerFrame) => void;
  reject: (err: Error) => void;
}

export class NativeClient {
  /** Every frame received, in order (when recording). */
  readonly frames: ServerFrame[] = [];
  /** Frames a broker sent that did not decode: always a broker bug. */
  readonly undecodable: Uint8Array[] = [];
  /** Socket errors (resets, protocol errors); kept so that none goes unhandled. */
  readonly errors: Error[] = [];
  welcome: WelcomeInfo | undefined;
  /** Set once the socket closed. */
  closeInfo: CloseInfo | undefined;
  readonly closed: Promise<CloseInfo>;
  private readonly taken = new Set<number>();
  private waiters: Waiter[] = [];
  private nextId = 1;

  private constructor(readonly ws: WebSocket, private readonly options: ConnectOptions) {
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        clients.delete(this);
        this.closeInfo = { code, reason: reason.toString('utf8') };
        resolve(this.closeInfo);
        // Nothing more can arrive: fail pending waits now instead of at their timeouts.
        const waiters = this.waiters;
        this.waiters = [];
        for (const w of waiters) w.reject(new Error(`connection closed (${code} ${this.closeInfo.reason}) while waiting`));
      });
    });
    ws.on('message', (data, isBinary) => this.onMessage(data as Buffer, isBinary));
    ws.on('error', (err) => this.errors.push(err));
  }

  /** Opens a connection; rejects with the HTTP status in the message when the upgrade is refused. */
  static connect(url: string, options: ConnectOptions = {}): Promise<NativeClient> {
    if (!hooked) {
      hooked = true;
      after(() => {
        for (const c of clients) c.terminate();
      });
    }
    const ws = new WebSocket(url, options.protocols ?? SUBPROTOCOL, { autoPong: options.autoPong ?? true, perMessageDeflate: false, ...(options.localAddress === undefined ? {} : { localAddress: options.localAddress }) });
    ws.binaryType = 'nodebuffer';
    const client = new NativeClient(ws, options);
    clients.add(client);
    const timeoutMs = options.timeoutMs ?? 5000;
    return new Promise<NativeClient>((resolve, reject) => {
      const timer = setTimeout(() => {
        client.terminate();
        reject(new Error(`connect to ${url} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      ws.once('unexpected-response', (_req, res) => {
        clearTimeout(timer);
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          client.terminate();
          reject(Object.assign(new Error(`upgrade refused: HTTP ${res.statusCode} ${body}`), { status: res.statusCode, body }));
        });
      });
      ws.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      ws.once('open', () => {
        if (options.awaitWelcome === false) {
          clearTimeout(timer);
          resolve(client);
          return;
        }
        client.expect((f) => f.op === Op.welcome, timeoutMs).then(
          (w) => {
            clearTimeout(timer);
            client.welcome = (w as Extract<ServerFrame, { op: typeof Op.welcome }>).info;
            resolve(client);
          },
          (err: unknown) => {
            clearTimeout(timer);
            reject(err as Error);
          },
        );
      });
    });
  }

  private onMessage(data: Buffer, isBinary: boolean): void {
    let frame: ServerFrame;
    try {
      if (!isBinary) throw new Error('text message');
      frame = decodeServerFrame(data);
    } catch {
      this.undecodable.push(new Uint8Array(data));
      return;
    }
    this.options.onFrame?.(frame);
    if (this.options.record === false) {
      // Not kept: hand it to a waiter if one wants it.
      const w = this.waiters.findIndex((x) => x.predicate(frame));
      if (w >= 0) {
        const [waiter] = this.waiters.splice(w, 1);
        waiter!.resolve(frame);
      }
      return;
    }
    const index = this.frames.push(frame) - 1;
    const w = this.waiters.findIndex((x) => x.predicate(frame));
    if (w >= 0) {
      this.taken.add(index);
      const [waiter] = this.waiters.splice(w, 1);
      waiter!.resolve(frame);
    }
  }

  /** Sends a frame, or raw bytes as one binary message. */
  send(frame: ClientFrame | Uint8Array): void {
    this.ws.send(frame instanceof Uint8Array ? frame : encodeFrame(frame), { binary: true });
  }

  /** Takes the first received, not-yet-taken frame matching `predicate`, waiting up to `timeoutMs`. */
  expect<F extends ServerFrame>(predicate: ((f: ServerFrame) => f is F) | ((f: ServerFrame) => boolean), timeoutMs = 5000, what = 'a matching frame'): Promise<F> {
    for (let i = 0; i < this.frames.length; i++) {
      if (!this.taken.has(i) && predicate(this.frames[i]!)) {
        this.taken.add(i);
        return Promise.resolve(this.frames[i] as F);
      }
    }
    if (this.closeInfo) return Promise.reject(new Error(`connection closed (${this.closeInfo.code}) before ${what}`));
    return new Promise<F>((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f as F);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== waiter);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last frames: ${describeFrames(this.frames.slice(-5))}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Resolves with the ACK or ERROR answering request `id`. */
  answer(id: number, timeoutMs = 5000): Promise<Ack | ErrorFrame> {
    return this.expect<Ack | ErrorFrame>((f) => (f.op === Op.ack || f.op === Op.error) && f.id === id, timeoutMs, `the answer to request ${id}`);
  }

  /** A fresh request id. */
  id(): number {
    return this.nextId++;
  }

  /** Sends SUBSCRIBE and resolves with its answer (ACK or ERROR). Retained deliveries and SNAPSHOT_END follow. */
  async subscribeRaw(filters: string[], options: SubscribeOptions = {}, timeoutMs = 5000): Promise<Ack | ErrorFrame> {
    const id = this.id();
    this.send({ op: Op.subscribe, id, filters, options });
    return this.answer(id, timeoutMs);
  }

  /**
   * Subscribes and waits for the whole snapshot: ACK, the retained deliveries, SNAPSHOT_END.
   * Throws on ERROR. Only for recording clients.
   */
  async subscribe(filters: string[], options: SubscribeOptions = {}, timeoutMs = 5000): Promise<{ id: number; retained: Delivery[]; count: number }> {
    const id = this.id();
    const ackIndexFrom = this.frames.length;
    this.send({ op: Op.subscribe, id, filters, options });
    const answer = await this.answer(id, timeoutMs);
    if (answer.op === Op.error) throw new Error(`subscribe ${JSON.stringify(filters)} refused: code ${answer.code} ${answer.message}`);
    await this.expect((f) => f.op === Op.snapshotEnd && f.id === id, timeoutMs, `SNAPSHOT_END ${id}`);
    // The retained deliveries are exactly the frames between this ACK and this SNAPSHOT_END flagged retained.
    const start = this.frames.indexOf(answer, ackIndexFrom);
    const end = this.frames.findIndex((f, i) => i > start && f.op === Op.snapshotEnd && f.id === id);
    const retained: Delivery[] = [];
    for (let i = start + 1; i < end; i++) {
      const f = this.frames[i]!;
      if (f.op === Op.delivery && (f.flags & Flag.retain) !== 0) {
        retained.push(f);
        this.taken.add(i);
      }
    }
    return { id, retained, count: answer.result?.retained ?? -1 };
  }

  async unsubscribe(filters: string[], timeoutMs = 5000): Promise<void> {
    const id = this.id();
    this.send({ op: Op.unsubscribe, id, filters });
    const answer = await this.answer(id, timeoutMs);
    if (answer.op === Op.error) throw new Error(`unsubscribe refused: code ${answer.code} ${answer.message}`);
  }

  /**
   * Publishes. With `ack` (default true) waits for the ACK or ERROR and returns it;
   * without, sends with id 0 (no answer) and returns undefined.
   */
  async publish(topic: string, payload: Uint8Array, opts: { retain?: boolean; ack?: boolean } = {}, timeoutMs = 5000): Promise<Ack | ErrorFrame | undefined> {
    const ack = opts.ack ?? true;
    const id = ack ? this.id() : 0;
    this.send({ op: Op.publish, id, topic, payload, flags: opts.retain ? Flag.retain : 0 });
    return ack ? this.answer(id, timeoutMs) : undefined;
  }

  async setWill(topic: string, payload: Uint8Array, retain = false): Promise<void> {
    const id = this.id();
    this.send({ op: Op.will, id, will: { topic, payload, retain } });
    const answer = await this.answer(id);
    if (answer.op === Op.error) throw new Error(`will refused: code ${answer.code} ${answer.message}`);
  }

  /**
   * Sends HISTORY (PROTOCOL.md §4.8) and resolves with its rows and HISTORY_END, or with the ERROR
   * answering it. Only for recording clients.
   */
  async history(filter: string, options: HistoryRequest = {}, timeoutMs = 20_000): Promise<{ rows: HistoryRow[]; end: HistoryEndInfo } | ErrorFrame> {
    const id = this.id();
    const from = this.frames.length;
    this.send({ op: Op.history, id, filter, options });
    const last = await this.expect((f) => (f.op === Op.historyEnd || f.op === Op.error) && f.id === id, timeoutMs, `the answer to HISTORY ${id}`);
    if (last.op === Op.error) return last;
    const rows: HistoryRow[] = [];
    for (let i = from; i < this.frames.length; i++) {
      const f = this.frames[i]!;
      if (f.op === Op.historyMessage && f.id === id) {
        rows.push(f);
        this.taken.add(i);
      }
      if (f === last) break;
    }
    return { rows, end: (last as Extract<ServerFrame, { op: typeof Op.historyEnd }>).info };
  }

  /** Round trip through the broker: everything sent before has been processed once this resolves. */
  async ping(timeoutMs = 5000): Promise<void> {
    const id = this.id();
    this.send({ op: Op.ping, id });
    await this.expect((f) => f.op === Op.pong && f.id === id, timeoutMs, `PONG ${id}`);
  }

  /** Deliveries received so far (optionally for one topic), taken or not. */
  deliveries(topic?: string): Delivery[] {
    return this.frames.filter((f): f is Delivery => f.op === Op.delivery && (topic === undefined || f.topic === topic));
  }

  /** Stops reading from the TCP socket: the broker's writes back up. */
  pause(): void {
    socketOf(this.ws).pause();
  }

  resume(): void {
    socketOf(this.ws).resume();
  }

  /**
   * Reads slowly: after each chunk the socket reads (≤ 64 KiB), pause for `delayMs`.
   * Returns the function that stops throttling (and resumes).
   */
  throttle(delayMs: number): () => void {
    const socket = socketOf(this.ws) as unknown as import('node:net').Socket;
    let timer: NodeJS.Timeout | undefined;
    const onData = (): void => {
      socket.pause();
      clearTimeout(timer);
      timer = setTimeout(() => socket.resume(), delayMs);
    };
    socket.on('data', onData);
    return () => {
      socket.off('data', onData);
      clearTimeout(timer);
      socket.resume();
    };
  }

  /** Clean close (1000 by default); resolves once closed. */
  async close(code: number = CloseCode.normal, reason = ''): Promise<CloseInfo> {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) this.ws.close(code, reason);
    return this.closed;
  }

  /** Abrupt close: the TCP connection is destroyed without a close frame. */
  terminate(): void {
    clients.delete(this);
    this.ws.terminate();
  }

  get isOpen(): boolean {
    return this.ws.readyState === WebSocket.OPEN;
  }
}

function socketOf(ws: WebSocket): { pause(): void; resume(): void } {
  const s = (ws as unknown as { _socket?: { pause(): void; resume(): void } })._socket;
  if (!s) throw new Error('ws has no socket');
  return s;
}

export function describeFrames(frames: ServerFrame[]): string {
  return JSON.stringify(frames.map((f) => (f.op === Op.delivery ? { op: f.op, topic: f.topic, payload: text(f.payload).slice(0, 40), flags: f.flags } : f)));
}

/** Reads /proc/<pid>/status VmRSS in bytes (Linux). */
export async function rssBytes(pid: number): Promise<number> {
  const { readFile } = await import('node:fs/promises');
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

/**
 * Samples a process's RSS every 25 ms from now on; `stop()` takes a last sample and resolves
 * with the baseline (the first sample) and the peak.
 */
export async function watchRss(pid: number): Promise<{ baseline: number; stop(): Promise<{ baseline: number; peak: number }> }> {
  const baseline = await rssBytes(pid);
  let peak = baseline;
  const sampler = setInterval(() => {
    rssBytes(pid).then((v) => (peak = Math.max(peak, v)), () => {});
  }, 25);
  return {
    baseline,
    async stop() {
      clearInterval(sampler);
      peak = Math.max(peak, await rssBytes(pid));
      return { baseline, peak };
    },
  };
}

/** Scrapes /metrics into a map of `name{labels}` → value. */
export async function scrapeMetrics(httpUrl: string): Promise<Map<string, number>> {
  const res = await fetch(`${httpUrl}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const sp = line.lastIndexOf(' ');
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** `promise`'s value, or undefined after `ms`; the timer never outlives the race (no stray handle). */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([promise, new Promise<undefined>((r) => (timer = setTimeout(r, ms, undefined)))]);
  } finally {
    clearTimeout(timer);
  }
}
