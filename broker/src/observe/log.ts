/**
 * Structured logs: pino, JSON lines on stdout. Tokens and payloads are never
 * logged; connection context is the remote address and a connection id.
 *
 * The destination is ours (StdoutQueue), not `pino.destination()`: writes are
 * asynchronous with a bounded queue, so a slow or vanished reader of stdout (a
 * stalled journald pipe, a parent process that died) never blocks the event
 * loop or a shutdown. pino's own destination flushes synchronously at exit and
 * retries a broken pipe forever there (sonic-boom 4.2 `flushSync`); a broker
 * whose parent died then never finished its SIGTERM shutdown.
 */
import { write } from 'node:fs';
import { pino, type Logger } from 'pino';

export type { Logger };

const MAX_QUEUED_BYTES = 8 * 1024 * 1024; // minutes of logs at info level; beyond it lines are dropped
const STUCK_MS = 2000; // a reader that takes nothing for this long is treated as gone
const RETRY_MS = 10;

/** An append-only, bounded, asynchronous writer to a file descriptor. */
export class StdoutQueue {
  private queue: string[] = [];
  private queuedBytes = 0;
  private writing = false;
  private broken = false;
  private stuckSince = 0;
  private idle: (() => void)[] = [];
  /** Lines dropped because the queue was full or the descriptor broken. */
  dropped = 0;

  constructor(private readonly fd = 1) {}

  write(line: string): boolean {
    if (this.broken || this.queuedBytes + line.length > MAX_QUEUED_BYTES) {
      this.dropped++;
      return false;
    }
    this.queue.push(line);
    this.queuedBytes += line.length;
    if (!this.writing) this.pump();
    return true;
  }

  /** Resolves once everything queued is written, the descriptor broke, or `timeoutMs` passed. */
  flush(timeoutMs: number): Promise<void> {
    if (!this.writing) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.idle.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  private pump(): void {
    if (this.queue.length === 0 || this.broken) {
      this.writing = false;
      for (const f of this.idle.splice(0)) f();
      return;
    }
    this.writing = true;
    const buf = Buffer.from(this.queue.join(''));
    this.queue = [];
    this.queuedBytes = 0;
    this.writeAll(buf, 0);
  }

  private writeAll(buf: Buffer, offset: number): void {
    write(this.fd, buf, offset, buf.length - offset, null, (err, n) => {
      if (err) {
        const now = Date.now();
        if (err.code === 'EAGAIN' && (this.stuckSince === 0 || now - this.stuckSince < STUCK_MS)) {
          if (this.stuckSince === 0) this.stuckSince = now;
          setTimeout(() => this.writeAll(buf, offset), RETRY_MS);
          return;
        }
        // EPIPE, EBADF, or stuck: stdout is gone. Nothing left to tell, and nowhere to tell it.
        this.broken = true;
        this.dropped += this.queue.length + 1;
        this.queue = [];
        this.pump();
        return;
      }
      this.stuckSince = 0;
      if (offset + n < buf.length) this.writeAll(buf, offset + n);
      else this.pump();
    });
  }
}

const destinations = new WeakMap<Logger, StdoutQueue>();

export function createLogger(level: string): Logger {
  const destination = new StdoutQueue(1);
  const log = pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }, destination);
  destinations.set(log, destination);
  return log;
}

/** Writes out queued log lines before the process exits; gives up after `timeoutMs`. */
export function flushLogs(log: Logger, timeoutMs = 1000): Promise<void> {
  return destinations.get(log)?.flush(timeoutMs) ?? Promise.resolve();
}
