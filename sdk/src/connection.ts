/**
 * One socket's lifetime: open the WebSocket, wait for the broker's WELCOME, pass
 * frames up, keep the link honest with a heartbeat, and report its end exactly once.
 * Reconnecting is the client's business (client.ts): a Connection never comes back.
 *
 * Heartbeat: every `heartbeatMs` the connection sends a PING. If a whole interval
 * that began with a PING passes without any frame from the broker (the PONG or
 * anything else), the link is declared dead and dropped without a handshake. So a
 * silently dead link (a frozen broker, a pulled cable) is detected at most
 * 2 × heartbeatMs after the last frame received. Pings go out even while traffic
 * flows in, because the broker's idle timeout counts frames *from* the client.
 * Cost: one timer per connection and a boolean write per received frame.
 */
import {
  decodeServerFrame,
  encodeFrame,
  Op,
  SUBPROTOCOL,
  type ClientFrame,
  type ServerFrame,
  type WelcomeInfo,
} from './protocol/index.js';
import { ClientErrorCode, ConnectionError, errorFromClose, ErrorCode } from './errors.js';
import type { Transport, TransportSocket } from './transport/types.js';

export interface ConnectionOptions {
  url: string;
  /** Extra `Sec-WebSocket-Protocol` entries after `topicast.v1` (the auth token). */
  extraProtocols: string[];
  transport: Transport;
  heartbeatMs: number;
  connectTimeoutMs: number;
  /** Allocates request ids (shared with the client's requests, so pings never collide with them). */
  nextId: () => number;
}

export interface ConnectionHandlers {
  /** WELCOME arrived: the connection is usable. */
  open(info: WelcomeInfo): void;
  /** Any frame but WELCOME and PONG. */
  frame(frame: ServerFrame): void;
  /** The connection ended without `close()` being called. Called at most once, last. */
  lost(error: ConnectionError): void;
}

/** How long a clean close may take before the socket is dropped: 1 s, the close handshake is one round trip. */
const CLOSE_TIMEOUT_MS = 1000;

export type ConnectionState = 'connecting' | 'open' | 'closing' | 'closed';

export class Connection {
  state: ConnectionState = 'connecting';
  /** The broker's WELCOME, once open. */
  info: WelcomeInfo | undefined;
  readonly url: string;
  private readonly socket: TransportSocket;
  private readonly handlers: ConnectionHandlers;
  private readonly options: ConnectionOptions;
  private timer: ReturnType<typeof setTimeout> | undefined; // connect timeout, then close timeout
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private heartbeatMs = 0;
  private receivedSinceTick = false;
  private pinged = false;
  private lastError: Error | undefined;
  private closeWaiters: (() => void)[] = [];

  constructor(options: ConnectionOptions, handlers: ConnectionHandlers) {
    this.options = options;
    this.handlers = handlers;
    this.url = options.url;
    // The transport may throw (a malformed URL): before any timer exists, so nothing leaks.
    this.socket = options.transport(options.url, [SUBPROTOCOL, ...options.extraProtocols], {
      open: () => {
        // The broker speaks first (WELCOME); nothing to send yet.
      },
      message: (data) => this.onMessage(data),
      error: (err) => {
        this.lastError = err;
      },
      close: (code, reason) => this.onClose(code, reason),
    });
    this.timer = setTimeout(() => {
      this.fail(new ConnectionError(ClientErrorCode.connectFailed, `no WELCOME from ${options.url} within ${options.connectTimeoutMs} ms`, 1006));
    }, options.connectTimeoutMs);
  }

  /** Sends a frame; only valid while open. */
  send(frame: ClientFrame): void {
    this.socket.send(encodeFrame(frame));
  }

  /** Bytes written by `send` that the socket has not flushed yet. */
  get bufferedAmount(): number {
    return this.socket.bufferedAmount;
  }

  /**
   * Closes cleanly with `code` (1000 tells the broker not to publish the will) and
   * resolves once the socket is gone; drops it after CLOSE_TIMEOUT_MS at the latest.
   */
  close(code = 1000, reason = ''): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    const done = new Promise<void>((resolve) => this.closeWaiters.push(resolve));
    if (this.state === 'closing') return done;
    const wasOpen = this.state === 'open';
    this.state = 'closing';
    this.stopTimers();
    if (wasOpen) {
      this.socket.close(code, reason);
      this.timer = setTimeout(() => this.socket.terminate(), CLOSE_TIMEOUT_MS);
    } else {
      this.socket.terminate();
    }
    return done;
  }

  private onMessage(data: Uint8Array): void {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.receivedSinceTick = true;
    let frame: ServerFrame;
    try {
      frame = decodeServerFrame(data);
    } catch (err) {
      this.fail(new ConnectionError(ErrorCode.badFrame, `malformed frame from broker: ${(err as Error).message}`, 1002, { cause: err }), 1002);
      return;
    }
    if (frame.op === Op.welcome) {
      if (this.state !== 'connecting') return;
      this.state = 'open';
      this.info = frame.info;
      clearTimeout(this.timer);
      this.timer = undefined;
      this.startHeartbeat(frame.info);
      this.handlers.open(frame.info);
      return;
    }
    if (frame.op === Op.pong) return; // receivedSinceTick already proves liveness
    this.handlers.frame(frame);
  }

  private startHeartbeat(info: WelcomeInfo): void {
    let interval = this.options.heartbeatMs > 0 ? this.options.heartbeatMs : Infinity; // 0: off
    // Ping at least twice per broker idle timeout, or the broker would drop a quiet client.
    if (info.idleTimeoutSec > 0) interval = Math.min(interval, (info.idleTimeoutSec * 1000) / 2);
    if (!(interval > 0) || !Number.isFinite(interval)) return;
    this.heartbeatMs = interval;
    this.heartbeat = setInterval(() => this.tick(), interval);
  }

  private tick(): void {
    if (this.pinged && !this.receivedSinceTick) {
      const ms = Math.round(this.heartbeatMs);
      this.fail(new ConnectionError(ClientErrorCode.connectionLost, `no frame from broker within a ${ms} ms heartbeat interval`, 1006));
      return;
    }
    this.receivedSinceTick = false;
    this.pinged = true;
    this.send({ op: Op.ping, id: this.options.nextId() });
  }

  /** Ends the connection on our side (dead link, bad frame, connect timeout) and reports it. */
  private fail(error: ConnectionError, closeCode?: number): void {
    if (this.state === 'closed' || this.state === 'closing') return;
    this.state = 'closed';
    this.stopTimers();
    if (closeCode !== undefined) {
      // Tell the broker why (the close frame), but do not wait long for its answer.
      this.socket.close(closeCode, error.message.slice(0, 60));
      this.timer = setTimeout(() => this.socket.terminate(), CLOSE_TIMEOUT_MS);
    } else {
      this.socket.terminate();
    }
    this.handlers.lost(error);
  }

  private onClose(code: number, reason: string): void {
    const previous = this.state;
    this.state = 'closed';
    this.stopTimers();
    for (const resolve of this.closeWaiters.splice(0)) resolve();
    if (previous === 'closed' || previous === 'closing') return;
    const error =
      previous === 'connecting'
        ? new ConnectionError(ClientErrorCode.connectFailed, `could not connect to ${this.url}${this.lastError ? `: ${this.lastError.message}` : ` (close ${code})`}`, code, { cause: this.lastError })
        : errorFromClose(code, reason, this.lastError);
    this.handlers.lost(error);
  }

  private stopTimers(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    clearInterval(this.heartbeat);
    this.heartbeat = undefined;
  }
}
