/**
 * Structured logs: JSON lines on stdout, in pino's format (`{"level":30,"time":"…","pid":…,…,"msg":"…"}`,
 * levels 10 trace … 60 fatal, `err` as `{type, message, stack, …}`), written by the few lines below
 * rather than by pino itself: pino and what it loads (worker_threads, sonic-boom, its serializers)
 * kept about 1.3 MiB resident in an idle broker, a share a small board notices (docs/EMBEDDED.md
 * "Footprint"); the broker never used its transports, redaction or formatters. Tokens and payloads
 * are never logged; connection context is the remote address and a connection id.
 *
 * The destination is ours (StdoutQueue): writes are asynchronous with a bounded queue, so a slow
 * or vanished reader of stdout (a stalled journald pipe, a parent process that died) never blocks
 * the event loop or a shutdown (pino's own destination flushed synchronously at exit and retried a
 * broken pipe forever there; a broker whose parent died then never finished its SIGTERM shutdown).
 */
import { write } from 'node:fs';

/** A log call: a message, or fields and an optional message. */
export interface LogFn {
  (msg: string): void;
  (fields: object, msg?: string): void;
}

export interface Logger {
  fatal: LogFn;
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  trace: LogFn;
  /** A logger whose lines carry `bindings` too (after `pid`, before the call's own fields). */
  child(bindings: Record<string, unknown>): Logger;
  /** The level name this logger writes from (`silent`: nothing). */
  readonly level: string;
}

/** pino's level numbers. */
export const LEVELS: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: Infinity };

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

/** pino-std-serializers' shape for an Error: type, message, stack, then its own enumerable properties. */
function serializeError(err: Error, seen: Set<unknown>): Record<string, unknown> {
  seen.add(err);
  const out: Record<string, unknown> = { type: typeof err.constructor === 'function' ? err.constructor.name : err.name, message: err.message, stack: err.stack };
  for (const key of Object.keys(err)) {
    if (out[key] !== undefined) continue;
    const v = (err as unknown as Record<string, unknown>)[key];
    out[key] = v instanceof Error ? (seen.has(v) ? '[Circular]' : serializeError(v, seen)) : v;
  }
  const cause = (err as { cause?: unknown }).cause;
  if (cause !== undefined && out.cause === undefined) out.cause = cause instanceof Error ? (seen.has(cause) ? '[Circular]' : serializeError(cause, seen)) : cause;
  return out;
}

/** JSON of one value; circular references and BigInts (which JSON.stringify throws on) written as text. */
function stringify(value: unknown): string {
  try {
    return JSON.stringify(value) ?? 'null';
  } catch {
    const seen = new WeakSet<object>();
    return JSON.stringify(value, (_key, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      if (typeof v === 'object' && v !== null) {
        if (seen.has(v)) return '[Circular]';
        seen.add(v);
      }
      return v;
    }) ?? 'null';
  }
}

/** `,"key":value` for each defined field, `err` (an Error) serialized as pino does. */
function fieldsJson(fields: object): string {
  let out = '';
  for (const [key, value] of Object.entries(fields)) {
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol') continue;
    const v = key === 'err' && value instanceof Error ? serializeError(value, new Set()) : value;
    out += `,${JSON.stringify(key)}:${stringify(v)}`;
  }
  return out;
}

const pad = (n: number, width: number): string => String(n).padStart(width, '0');

/**
 * `new Date().toISOString()` by the UTC getters: V8's toISOString sets up its time zone cache on first
 * use, about 0.8 MiB resident for the process's life, which the getters leave alone.
 */
export function isoTime(ms: number): string {
  const d = new Date(ms);
  const y = d.getUTCFullYear();
  const year = y >= 0 && y <= 9999 ? pad(y, 4) : (y < 0 ? '-' : '+') + pad(Math.abs(y), 6);
  return `${year}-${pad(d.getUTCMonth() + 1, 2)}-${pad(d.getUTCDate(), 2)}T${pad(d.getUTCHours(), 2)}:${pad(d.getUTCMinutes(), 2)}:${pad(d.getUTCSeconds(), 2)}.${pad(d.getUTCMilliseconds(), 3)}Z`;
}

function makeLogger(level: string, threshold: number, head: string, out: StdoutQueue): Logger {
  const method = (n: number): LogFn => {
    if (n < threshold) return () => {};
    const prefix = `{"level":${n},"time":"`;
    return (first: object | string, msg?: string): void => {
      let line = prefix + isoTime(Date.now()) + '"' + head;
      if (typeof first === 'string') msg = first;
      else if (first !== null && typeof first === 'object') line += fieldsJson(first);
      if (msg !== undefined) line += `,"msg":${JSON.stringify(msg)}`;
      out.write(line + '}\n');
    };
  };
  return {
    level,
    fatal: method(60),
    error: method(50),
    warn: method(40),
    info: method(30),
    debug: method(20),
    trace: method(10),
    child: (bindings) => makeLogger(level, threshold, head + fieldsJson(bindings), out),
  };
}

/** A logger for `level` (trace, debug, info, warn, error, fatal, silent) writing to stdout. */
export function createLogger(level: string): Logger {
  const destination = new StdoutQueue(1);
  const log = makeLogger(level, LEVELS[level] ?? LEVELS.info!, `,"pid":${process.pid}`, destination);
  destinations.set(log, destination);
  return log;
}

/** Writes out queued log lines before the process exits; gives up after `timeoutMs`. */
export function flushLogs(log: Logger, timeoutMs = 1000): Promise<void> {
  return destinations.get(log)?.flush(timeoutMs) ?? Promise.resolve();
}
