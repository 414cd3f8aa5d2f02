/**
 * Exec sensors, in the spirit of websocketd: any program (a GPIO script, an old CGI binary, a
 * vendor tool) becomes a sensor. Each line it prints on stdout is a reading:
 *
 *   `21.5`                         → a number on the sensor's topic (`exec/<name>` by default)
 *   `{"value":3,"unit":"lux"}`     → a reading with its own unit
 *   `{"temperature":21.5,"rh":40}` → one sensor per key: `<topic>/temperature`, `<topic>/rh`
 *   `temperature 21.5`             → `<topic>/temperature` = 21.5 (`name value`; the value may be text)
 *   `open`                         → the string `open` on the sensor's topic
 *
 * Modes. `periodic` runs the program every `intervalSec` (never two runs at once; a run that
 * outlives `timeoutSec` is terminated). `long-running` starts it once and reads lines as they
 * come; when it exits it is restarted after a backoff that doubles from `minDelaySec` to
 * `maxDelaySec` and resets once a run has lasted `stableSec`. stderr goes to the agent's log, one
 * line per entry. A string command runs through `/bin/sh -c` (pipes and redirections work); an
 * array runs without a shell. Each program gets its own process group, so stopping the agent
 * stops a whole pipeline.
 *
 * Bounds: a stdout or stderr line longer than `MAX_LINE_BYTES` is dropped (and logged), so a
 * program that prints binary garbage cannot grow the agent's memory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Clock, Logger, Sample } from './types.js';
import { silentLogger, systemClock } from './types.js';
import { topicLevel } from './readers/fs.js';

export interface ExecSensorConfig {
  /** Names the sensor in logs and in its default topic `exec/<name>`. */
  name: string;
  /** A shell command line (run by `/bin/sh -c`), or an argv array run directly. */
  command: string | string[];
  /** Default: `periodic` when `intervalSec` is set, else `long-running`. */
  mode?: 'periodic' | 'long-running';
  intervalSec?: number;
  /** Periodic runs only: terminate a run after this long. Default: the interval, at most 60 s. */
  timeoutSec?: number;
  /** Sensor path below `devices/<id>/`. Default `exec/<name>`. */
  topic?: string;
  /** Unit of bare numbers. Default `''`. */
  unit?: string;
  restart?: { minDelaySec?: number; maxDelaySec?: number; stableSec?: number };
  env?: Record<string, string>;
  cwd?: string;
}

/** Where parsed readings go: the Agent. */
export interface ExecSink {
  offer(sample: { path: string; value: Sample['value'] | object; unit: string }, options: { gate: boolean }): void;
  declareSensor(path: string, unit: string): void;
}

export interface ExecExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  ranMs: number;
  /** Delay before the next start (long-running), or undefined when none is scheduled. */
  restartInMs: number | undefined;
}

export interface ExecSensorOptions {
  clock?: Clock;
  log?: Logger;
  onExit?: (exit: ExecExit) => void;
}

export const MAX_LINE_BYTES = 64 * 1024; // far above any sensor line, far below anything that could hurt a small board
const KILL_GRACE_MS = 2000; // SIGTERM, then SIGKILL: time enough for a script to release a GPIO line
const DEFAULT_RESTART = { minDelaySec: 1, maxDelaySec: 60, stableSec: 30 }; // quick first retry, at most a restart a minute for a broken program

type ParsedValue = Sample['value'] | object;

/**
 * Turns one line of a program's output into samples below `base` (see the file header for the rules).
 * Returns [] for blank lines and a reason string for lines it cannot use.
 * @example parseExecLine('temperature 21.5', 'exec/dht', '') // [{ path: 'exec/dht/temperature', value: 21.5, unit: '' }]
 */
export function parseExecLine(line: string, base: string, unit: string): { path: string; value: ParsedValue; unit: string }[] | string {
  const text = line.trim();
  if (text === '') return [];
  const c = text[0];
  if (c === '{' || c === '[' || c === '"') {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return 'invalid JSON';
    }
    if (typeof parsed === 'string') return [{ path: base, value: parsed, unit }];
    if (Array.isArray(parsed) || parsed === null) return [{ path: base, value: parsed ?? 'null', unit }];
    const obj = parsed as Record<string, unknown>;
    if ('value' in obj) {
      const v = obj.value;
      if (typeof v !== 'number' && typeof v !== 'string') return 'a "value" must be a number or a string';
      return [{ path: base, value: v, unit: typeof obj.unit === 'string' ? obj.unit : unit }];
    }
    const out: { path: string; value: ParsedValue; unit: string }[] = [];
    for (const [k, v] of Object.entries(obj)) {
      if (v === null || v === undefined) continue;
      out.push({ path: `${base}/${topicLevel(k)}`, value: typeof v === 'number' || typeof v === 'string' || typeof v === 'object' ? v : String(v), unit });
    }
    return out;
  }
  if (isNumber(text)) return [{ path: base, value: Number(text), unit }];
  const space = text.search(/\s/);
  if (space < 0) return [{ path: base, value: text, unit }];
  const name = text
    .slice(0, space)
    .split('/')
    .filter((l) => l !== '')
    .map(topicLevel)
    .join('/');
  const rest = text.slice(space).trim();
  if (name === '') return 'empty name';
  return [{ path: `${base}/${name}`, value: isNumber(rest) ? Number(rest) : rest, unit }];
}

function isNumber(s: string): boolean {
  return /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s) && Number.isFinite(Number(s));
}

/** Splits a byte stream into lines, dropping (and reporting) any line longer than the bound. */
function lineSplitter(onLine: (line: string) => void, onTooLong: () => void): (chunk: Buffer) => void {
  let partial = '';
  let skipping = false;
  return function splitLines(chunk: Buffer) {
    const text = partial + chunk.toString('utf8');
    const lines = text.split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      if (skipping) {
        skipping = false; // the rest of an over-long line
        continue;
      }
      if (line.length > MAX_LINE_BYTES) onTooLong();
      else onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
    }
    if (partial.length > MAX_LINE_BYTES) {
      partial = '';
      if (!skipping) onTooLong();
      skipping = true;
    }
  };
}

/**
 * One supervised program.
 * @example
 * const s = new ExecSensor({ name: 'gpio', command: 'cat /sys/class/gpio/gpio4/value', intervalSec: 10 }, agent);
 * s.start(); ... await s.stop();
 */
export class ExecSensor {
  readonly config: ExecSensorConfig;
  readonly mode: 'periodic' | 'long-running';
  readonly base: string;
  /** Times the program was started. */
  starts = 0;
  private readonly sink: ExecSink;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly onExit: ((exit: ExecExit) => void) | undefined;
  private readonly restart: { minDelaySec: number; maxDelaySec: number; stableSec: number };
  private child: ChildProcess | undefined;
  private timer: unknown;
  private killTimer: unknown;
  private failures = 0;
  private running = false;
  private exited: Promise<void> = Promise.resolve();

  constructor(config: ExecSensorConfig, sink: ExecSink, options: ExecSensorOptions = {}) {
    this.config = config;
    this.mode = config.mode ?? (config.intervalSec !== undefined ? 'periodic' : 'long-running');
    this.base = config.topic ?? `exec/${topicLevel(config.name)}`;
    this.sink = sink;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? silentLogger;
    this.onExit = options.onExit;
    this.restart = { ...DEFAULT_RESTART, ...config.restart };
  }

  start(): void {
    if (this.running) return;
    this.running = true;
    this.sink.declareSensor(this.base, this.config.unit ?? '');
    this.launch();
  }

  /** Stops scheduling and terminates the program (SIGTERM, then SIGKILL after a grace period). */
  async stop(): Promise<void> {
    this.running = false;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (this.child) this.terminate(this.child);
    await this.exited;
  }

  private launch(): void {
    if (!this.running) return;
    const { command } = this.config;
    const [file, args] = typeof command === 'string' ? ['/bin/sh', ['-c', command]] : [command[0]!, command.slice(1)];
    const startedAt = this.clock.now();
    let child: ChildProcess;
    try {
      child = spawn(file, args, {
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true, // own process group: stop() signals the whole pipeline
        env: this.config.env ? { ...process.env, ...this.config.env } : process.env,
        cwd: this.config.cwd,
      });
    } catch (err) {
      this.log.error(`exec ${this.config.name}: cannot start: ${(err as Error).message}`);
      this.finish(startedAt, null, null);
      return;
    }
    this.starts++;
    this.child = child;
    const unit = this.config.unit ?? '';
    const name = this.config.name;
    child.stdout!.on(
      'data',
      lineSplitter(
        (line) => {
          const parsed = parseExecLine(line, this.base, unit);
          if (typeof parsed === 'string') {
            this.log.warn(`exec ${name}: ${parsed}: ${line.slice(0, 200)}`);
            return;
          }
          for (const s of parsed) this.sink.offer(s, { gate: false });
        },
        () => this.log.warn(`exec ${name}: stdout line longer than ${MAX_LINE_BYTES} bytes dropped`),
      ),
    );
    child.stderr!.on(
      'data',
      lineSplitter(
        (line) => {
          if (line.trim() !== '') this.log.warn(`exec ${name}: ${line}`);
        },
        () => this.log.warn(`exec ${name}: stderr line longer than ${MAX_LINE_BYTES} bytes dropped`),
      ),
    );
    let done!: () => void;
    this.exited = new Promise<void>((resolve) => (done = resolve));
    let spawnError: Error | undefined;
    child.on('error', (err) => {
      spawnError = err; // ENOENT, EACCES: 'close' follows
    });
    if (this.mode === 'periodic') {
      const timeoutMs = (this.config.timeoutSec ?? Math.min(this.config.intervalSec ?? 60, 60)) * 1000;
      this.killTimer = this.clock.setTimeout(() => {
        this.log.warn(`exec ${name}: still running after ${timeoutMs} ms, terminating`);
        this.terminate(child);
      }, timeoutMs);
    }
    child.on('close', (code, signal) => {
      if (this.killTimer !== undefined) this.clock.clearTimeout(this.killTimer);
      this.killTimer = undefined;
      this.child = undefined;
      if (spawnError) this.log.error(`exec ${name}: cannot start ${file}: ${spawnError.message}`);
      this.finish(startedAt, code, signal);
      done();
    });
  }

  private finish(startedAt: number, code: number | null, signal: NodeJS.Signals | null): void {
    const ranMs = this.clock.now() - startedAt;
    let restartInMs: number | undefined;
    if (this.running) {
      if (this.mode === 'periodic') {
        if (code !== 0) this.log.warn(`exec ${this.config.name}: exited with ${signal ?? `code ${code}`}`);
        restartInMs = Math.max(0, (this.config.intervalSec ?? 60) * 1000 - ranMs);
      } else {
        this.failures = ranMs >= this.restart.stableSec * 1000 ? 0 : this.failures + 1;
        restartInMs = Math.min(this.restart.minDelaySec * 1000 * 2 ** Math.max(0, this.failures - 1), this.restart.maxDelaySec * 1000);
        this.log.warn(`exec ${this.config.name}: exited with ${signal ?? `code ${code}`} after ${ranMs} ms; restarting in ${restartInMs} ms`);
      }
      this.timer = this.clock.setTimeout(() => {
        this.timer = undefined;
        this.launch();
      }, restartInMs);
    }
    this.onExit?.({ code, signal, ranMs, restartInMs });
  }

  private terminate(child: ChildProcess): void {
    const signalGroup = (sig: NodeJS.Signals) => {
      try {
        if (child.pid !== undefined) process.kill(-child.pid, sig);
      } catch {
        // the group is already gone
      }
    };
    signalGroup('SIGTERM');
    const t = setTimeout(() => signalGroup('SIGKILL'), KILL_GRACE_MS);
    child.once('close', () => clearTimeout(t));
  }
}
