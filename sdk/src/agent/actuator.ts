/**
 * Actuators: commands from pages down to device programs (DESIGN.md "Device topic convention").
 *
 * A command is a publish to `devices/<id>/set/<name>`. The actuator checks the value against its
 * declared type and range, then hands it to its program; the program's answer becomes the new
 * state, published retained on `devices/<id>/<name>` and answered to the requester when the command
 * carried a response topic (MQTT 5 Response Topic + Correlation Data; the SDK's `client.request`).
 * An answer is `{ ok: true, state }` or `{ ok: false, error }`.
 *
 * Programs, never a shell line built from a value:
 * - `per-command` (default): the program runs once per command with the value in the environment
 *   variable `TOPICAST_VALUE` and on stdin (followed by a newline). Exit 0 = success; its stdout
 *   (trimmed), if any, is the new state, else the requested value is. Non-zero exit = failure, with
 *   the last stderr line as the error. The command line is the configuration's, fixed at start-up:
 *   a string runs through `/bin/sh -c` exactly as configured, an array runs without a shell.
 * - `long-running`: started once, reads one command per stdin line (the websocketd model) and
 *   answers each with one stdout line: the new state, or `error: <text>`. Lines it prints on its own
 *   (a wall switch was pressed) are state changes and are published. If it exits or does not answer
 *   within the timeout, the command fails, the program is stopped, and the next command starts it
 *   again. Values with line breaks are refused for it: they would split into two commands.
 *
 * Bounds per actuator: one command runs at a time; at most `maxQueue` wait (more are answered
 * `queue full`); at most `maxPerSec` are accepted per second (more are answered `rate limited`);
 * each run ends after `timeoutSec` (its process group is killed). A command for an unknown
 * actuator or with a value of the wrong type or out of range is answered with an error and runs
 * nothing. Program output is bounded like exec sensors' (MAX_LINE_BYTES).
 *
 * Transport: actuators use the agent transport's `subscribe` (live messages only, restored on every
 * reconnect) and `publish` with correlation data, so they work over the SDK, MQTT 5 and in-process.
 * Retained commands are ignored: a command runs when it is sent, not again at every reconnect.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { MAX_LINE_BYTES } from './exec.js';
import type { AgentTransport, Inbound, Logger, Payload } from './types.js';
import { silentLogger } from './types.js';

/**
 * What an actuator takes: a switch, a slider, a text or choice, a button.
 * @example
 * const type: ActuatorType = 'boolean';
 */
export type ActuatorType = 'boolean' | 'number' | 'string' | 'button';

/**
 * One actuator as configured (the `actuators` array of the agent's config file).
 * @example
 * const fan: ActuatorConfig = { name: 'fan', type: 'number', min: 0, max: 100, step: 5, unit: '%', command: ['/usr/local/bin/fan'] };
 */
export interface ActuatorConfig {
  /** One topic level: commands go to `devices/<id>/set/<name>`, the state is `devices/<id>/<name>`. */
  name: string;
  /** boolean (a switch), number (a slider, with min/max/step), string (a text, or one of `options`), button (no value). */
  type: ActuatorType;
  /** The program: an argv array (no shell), or a fixed shell command line. The value is never put in it. */
  command: string | string[];
  /** Default `per-command`. */
  mode?: 'per-command' | 'long-running';
  min?: number;
  max?: number;
  step?: number;
  unit?: string;
  /** string actuators: the allowed values. */
  options?: string[];
  /** string actuators: the longest value accepted (default 256). */
  maxLength?: number;
  /** Longest run (per-command) or wait for an answer (long-running). Default 10 s. */
  timeoutSec?: number;
  /** Commands waiting while one runs; more are refused. Default 8. */
  maxQueue?: number;
  /** Commands accepted per second (burst the same); more are refused. Default 5. */
  maxPerSec?: number;
  env?: Record<string, string>;
  cwd?: string;
}

/**
 * What `devices/<id>/info` lists per actuator, for dashboards and Home Assistant.
 * @example
 * const info: ActuatorInfo = { name: 'fan', type: 'number', min: 0, max: 100 };
 */
export interface ActuatorInfo {
  name: string;
  type: ActuatorType;
  min?: number;
  max?: number;
  step?: number;
  unit?: string;
  options?: string[];
}

/**
 * The answer to one command, as the requester receives it.
 * @example
 * const r = (await client.request('devices/pi-01/set/led', true)) as CommandResult;
 * if (!r.ok) console.warn(r.error);
 */
export type CommandResult = { ok: true; state?: string | number | boolean } | { ok: false; error: string };

/** @example { name: 'slow', type: 'button', command: ['calibrate'], timeoutSec: 3 * DEFAULT_ACTUATOR_TIMEOUT_SEC } */
export const DEFAULT_ACTUATOR_TIMEOUT_SEC = 10; // a relay or a script answers in milliseconds; ten seconds is a hung program
/** @example { name: 'dimmer', type: 'number', command: ['dim'], maxQueue: DEFAULT_ACTUATOR_MAX_QUEUE * 2 } */
export const DEFAULT_ACTUATOR_MAX_QUEUE = 8; // a user hammering a button; beyond this they are refused, not buffered
/** @example { name: 'dimmer', type: 'number', command: ['dim'], maxPerSec: DEFAULT_ACTUATOR_MAX_PER_SEC * 4 } */
export const DEFAULT_ACTUATOR_MAX_PER_SEC = 5; // faster than a hand, slower than a runaway script flipping a relay
/** @example { name: 'note', type: 'string', command: ['lcd'], maxLength: DEFAULT_STRING_MAX_LENGTH / 8 } */
export const DEFAULT_STRING_MAX_LENGTH = 256; // a label or a mode name; not a file transfer
const KILL_GRACE_MS = 1000; // SIGTERM, then SIGKILL
const ENV_VALUE = 'TOPICAST_VALUE';

/**
 * Where an actuator publishes and how it declares itself; the agent and its transport.
 * @example
 * const host: ActuatorHost = { id: 'pi-01', transport, declareActuator: (a) => agent.declareActuator(a) };
 */
export interface ActuatorHost {
  readonly id: string;
  readonly transport: AgentTransport;
  /** Lists the actuator in `devices/<id>/info`. */
  declareActuator(info: ActuatorInfo): void;
}

/**
 * The descriptor `info` lists (type and range, no program).
 * @example
 * actuatorInfo({ name: 'led', type: 'boolean', command: ['led.sh'] }) // { name: 'led', type: 'boolean' }
 */
export function actuatorInfo(c: ActuatorConfig): ActuatorInfo {
  const out: ActuatorInfo = { name: c.name, type: c.type };
  if (c.min !== undefined) out.min = c.min;
  if (c.max !== undefined) out.max = c.max;
  if (c.step !== undefined) out.step = c.step;
  if (c.unit !== undefined) out.unit = c.unit;
  if (c.options !== undefined) out.options = [...c.options];
  return out;
}

const TRUE_WORDS = new Set(['true', 'on', '1', 'yes']);
const FALSE_WORDS = new Set(['false', 'off', '0', 'no']);

/**
 * Checks a command's value against the actuator's type and range. Returns the typed value and the
 * text the program gets, or the error the requester gets.
 * @example
 * commandValue({ name: 'fan', type: 'number', min: 0, max: 100, command: ['fan'] }, '60') // { value: 60, text: '60' }
 */
export function commandValue(c: ActuatorConfig, raw: unknown): { value: string | number | boolean; text: string } | { error: string } {
  switch (c.type) {
    case 'button':
      return { value: 'press', text: 'press' };
    case 'boolean': {
      if (typeof raw === 'boolean') return { value: raw, text: String(raw) };
      const word = typeof raw === 'number' ? String(raw) : typeof raw === 'string' ? raw.trim().toLowerCase() : undefined;
      if (word !== undefined && TRUE_WORDS.has(word)) return { value: true, text: 'true' };
      if (word !== undefined && FALSE_WORDS.has(word)) return { value: false, text: 'false' };
      return { error: `${c.name} takes true or false, got ${shown(raw)}` };
    }
    case 'number': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : NaN;
      if (!Number.isFinite(n)) return { error: `${c.name} takes a number, got ${shown(raw)}` };
      if (c.min !== undefined && n < c.min) return { error: `${c.name} takes ${range(c)}, got ${n}` };
      if (c.max !== undefined && n > c.max) return { error: `${c.name} takes ${range(c)}, got ${n}` };
      if (c.step !== undefined) {
        const steps = (n - (c.min ?? 0)) / c.step;
        if (Math.abs(steps - Math.round(steps)) > 1e-9) return { error: `${c.name} takes steps of ${c.step}${c.min !== undefined ? ` from ${c.min}` : ''}, got ${n}` };
      }
      return { value: n, text: String(n) };
    }
    case 'string': {
      const s = typeof raw === 'string' ? raw : typeof raw === 'number' || typeof raw === 'boolean' ? String(raw) : undefined;
      if (s === undefined) return { error: `${c.name} takes a string, got ${shown(raw)}` };
      const max = c.maxLength ?? DEFAULT_STRING_MAX_LENGTH;
      if (s.length > max) return { error: `${c.name} takes at most ${max} characters, got ${s.length}` };
      if (c.options !== undefined && !c.options.includes(s)) return { error: `${c.name} takes one of ${c.options.join(', ')}, got ${shown(s)}` };
      if (c.mode === 'long-running' && /[\r\n]/.test(s)) return { error: `${c.name} reads one command per line: a value cannot hold a line break` };
      if (s.includes('\u0000')) return { error: `${c.name} cannot take a NUL character` };
      return { value: s, text: s };
    }
  }
}

function range(c: ActuatorConfig): string {
  if (c.min !== undefined && c.max !== undefined) return `${c.min}..${c.max}`;
  return c.min !== undefined ? `≥ ${c.min}` : `≤ ${c.max}`;
}

function shown(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : v instanceof Uint8Array ? `${v.length} bytes` : JSON.stringify(v) ?? String(v);
  return s.length > 64 ? `${s.slice(0, 61)}...` : s;
}

/** The state a program's output stands for; undefined output means "the requested value". */
function stateOf(c: ActuatorConfig, output: string, requested: string | number | boolean): { state: string | number | boolean } | { error: string } {
  if (output === '') return { state: requested };
  switch (c.type) {
    case 'boolean': {
      const word = output.toLowerCase();
      if (TRUE_WORDS.has(word)) return { state: true };
      if (FALSE_WORDS.has(word)) return { state: false };
      return { error: `the program answered ${shown(output)}, not a state of ${c.name} (true or false)` };
    }
    case 'number': {
      const n = Number(output);
      return Number.isFinite(n) ? { state: n } : { error: `the program answered ${shown(output)}, not a number` };
    }
    default:
      return { state: output };
  }
}

// ---- programs ------------------------------------------------------------------------------

type RunOutcome = { ok: true; output: string } | { ok: false; error: string };

interface Program {
  run(text: string, timeoutMs: number): Promise<RunOutcome>;
  stop(): Promise<void>;
}

function argv(command: string | string[]): [string, string[]] {
  return typeof command === 'string' ? ['/bin/sh', ['-c', command]] : [command[0]!, command.slice(1)];
}

function killGroup(child: ChildProcess): void {
  const signal = (sig: NodeJS.Signals) => {
    try {
      if (child.pid !== undefined) process.kill(-child.pid, sig);
    } catch {
      // the group is gone already
    }
  };
  signal('SIGTERM');
  const t = setTimeout(() => signal('SIGKILL'), KILL_GRACE_MS);
  child.once('close', () => clearTimeout(t));
}

/** Bounded capture of a stream: keeps the first MAX_LINE_BYTES. */
function capture(stream: NodeJS.ReadableStream | null): () => string {
  let text = '';
  stream?.on('data', (chunk: Buffer) => {
    if (text.length < MAX_LINE_BYTES) text += chunk.toString('utf8').slice(0, MAX_LINE_BYTES - text.length);
  });
  return () => text;
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return (lines[lines.length - 1] ?? '').trim().slice(0, 500);
}

/** A program run once per command. */
class PerCommandProgram implements Program {
  private current: ChildProcess | undefined;
  constructor(private readonly config: ActuatorConfig, private readonly env: NodeJS.ProcessEnv) {}

  run(text: string, timeoutMs: number): Promise<RunOutcome> {
    const [file, args] = argv(this.config.command);
    return new Promise<RunOutcome>((resolve) => {
      let child: ChildProcess;
      try {
        child = spawn(file, args, {
          stdio: ['pipe', 'pipe', 'pipe'],
          detached: true, // own process group: a timeout kills the whole pipeline
          env: { ...this.env, [ENV_VALUE]: text },
          cwd: this.config.cwd,
        });
      } catch (err) {
        resolve({ ok: false, error: `cannot start ${file}: ${(err as Error).message}` });
        return;
      }
      this.current = child;
      const stdout = capture(child.stdout);
      const stderr = capture(child.stderr);
      let spawnError: Error | undefined;
      let timedOut = false;
      child.on('error', (err) => (spawnError = err));
      child.stdin!.on('error', () => {}); // a program that does not read stdin closes it: EPIPE is expected
      child.stdin!.end(`${text}\n`);
      const timer = setTimeout(() => {
        timedOut = true;
        killGroup(child);
      }, timeoutMs);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        this.current = undefined;
        if (spawnError) return resolve({ ok: false, error: `cannot start ${file}: ${spawnError.message}` });
        if (timedOut) return resolve({ ok: false, error: `timed out after ${timeoutMs / 1000} s` });
        if (code !== 0) {
          const why = lastLine(stderr());
          return resolve({ ok: false, error: `exited with ${signal ?? `code ${code}`}${why ? `: ${why}` : ''}` });
        }
        resolve({ ok: true, output: stdout().trim() });
      });
    });
  }

  async stop(): Promise<void> {
    const child = this.current;
    if (!child) return;
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));
    killGroup(child);
    await closed;
  }
}

/** A program started once that answers one stdout line per stdin line. */
class LongRunningProgram implements Program {
  private child: ChildProcess | undefined;
  private closed: Promise<void> = Promise.resolve();
  private waiting: ((outcome: RunOutcome) => void) | undefined;
  constructor(
    private readonly config: ActuatorConfig,
    private readonly env: NodeJS.ProcessEnv,
    private readonly unsolicited: (line: string) => void,
    private readonly log: Logger,
  ) {}

  private ensure(): ChildProcess | string {
    if (this.child) return this.child;
    const [file, args] = argv(this.config.command);
    let child: ChildProcess;
    try {
      child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], detached: true, env: this.env, cwd: this.config.cwd });
    } catch (err) {
      return `cannot start ${file}: ${(err as Error).message}`;
    }
    this.child = child;
    const name = this.config.name;
    let spawnError: Error | undefined;
    child.on('error', (err) => (spawnError = err));
    child.stdin!.on('error', () => {}); // its exit is reported by 'close'
    // A program stopped on purpose (timeout, stop) no longer speaks for this actuator: its late lines and its exit are ignored.
    child.stdout!.on('data', lines((line) => this.child === child && this.onLine(line), () => this.log.warn(`actuator ${name}: stdout line longer than ${MAX_LINE_BYTES} bytes dropped`)));
    const stderr = capture(child.stderr);
    let done!: () => void;
    this.closed = new Promise<void>((resolve) => (done = resolve));
    child.on('close', (code, signal) => {
      if (this.child !== child) return done();
      this.child = undefined;
      const why = spawnError ? `cannot start ${file}: ${spawnError.message}` : `exited with ${signal ?? `code ${code}`}${lastLine(stderr()) ? `: ${lastLine(stderr())}` : ''}`;
      this.log.warn(`actuator ${name}: program ${why}; it starts again with the next command`);
      this.answer({ ok: false, error: why });
      done();
    });
    return child;
  }

  private onLine(line: string): void {
    const text = line.trim();
    if (this.waiting === undefined) {
      if (text !== '') this.unsolicited(text);
      return;
    }
    if (/^error:/i.test(text)) this.answer({ ok: false, error: text.slice(6).trim() || 'the program reported an error' });
    else this.answer({ ok: true, output: text });
  }

  private answer(outcome: RunOutcome): void {
    const w = this.waiting;
    this.waiting = undefined;
    w?.(outcome);
  }

  run(text: string, timeoutMs: number): Promise<RunOutcome> {
    const child = this.ensure();
    if (typeof child === 'string') return Promise.resolve({ ok: false, error: child });
    return new Promise<RunOutcome>((resolve) => {
      const timer = setTimeout(() => {
        // A program that stopped answering is out of step with its commands: start afresh.
        this.answer({ ok: false, error: `no answer within ${timeoutMs / 1000} s` });
        if (this.child === child) this.child = undefined;
        killGroup(child);
      }, timeoutMs);
      this.waiting = (outcome) => {
        clearTimeout(timer);
        resolve(outcome);
      };
      child.stdin!.write(`${text}\n`);
    });
  }

  async stop(): Promise<void> {
    const child = this.child;
    if (child) {
      this.child = undefined;
      this.answer({ ok: false, error: `${this.config.name} is stopping` });
      killGroup(child);
    }
    await this.closed;
  }
}

/** Splits a stream into lines, dropping over-long ones (as exec sensors do). */
function lines(onLine: (line: string) => void, onTooLong: () => void): (chunk: Buffer) => void {
  let partial = '';
  return function splitLines(chunk: Buffer) {
    const parts = (partial + chunk.toString('utf8')).split('\n');
    partial = parts.pop()!;
    for (const line of parts) {
      if (line.length > MAX_LINE_BYTES) onTooLong();
      else onLine(line.endsWith('\r') ? line.slice(0, -1) : line);
    }
    if (partial.length > MAX_LINE_BYTES) {
      partial = '';
      onTooLong();
    }
  };
}

// ---- one actuator ---------------------------------------------------------------------------

interface QueuedCommand {
  value: string | number | boolean;
  text: string;
  reply: ((result: CommandResult) => void) | undefined;
}

/**
 * Counters per actuator, for tests and logs.
 * @example
 * const { runs, refused, failed }: ActuatorStats = actuators.byName.get('led')!.stats;
 */
export interface ActuatorStats {
  /** Program runs (or lines written to a long-running program). */
  runs: number;
  /** Commands refused before running: bad value, rate limit, queue full. */
  refused: number;
  /** Runs that failed: non-zero exit, timeout, crash, unusable answer. */
  failed: number;
}

/**
 * One actuator: validation, rate limit, queue, program, state.
 * @example
 * const a = new Actuator({ name: 'led', type: 'boolean', command: ['/usr/local/bin/led'] }, 'pi-01', (s) => publish(s));
 * a.command(true, (result) => console.log(result));
 */
export class Actuator {
  readonly config: ActuatorConfig;
  readonly stats: ActuatorStats = { runs: 0, refused: 0, failed: 0 };
  /** The last confirmed state, republished on every reconnect. */
  state: string | number | boolean | undefined;
  private readonly program: Program;
  private readonly queue: QueuedCommand[] = [];
  private busy = false;
  private tokens: number;
  private refilledAt = Date.now();
  private stopped = false;

  constructor(
    config: ActuatorConfig,
    deviceId: string,
    private readonly onState: (state: string | number | boolean) => void,
    private readonly log: Logger = silentLogger,
  ) {
    this.config = config;
    this.tokens = this.maxPerSec;
    const env = { ...process.env, ...config.env, TOPICAST_ACTUATOR: config.name, TOPICAST_DEVICE: deviceId };
    this.program = config.mode === 'long-running'
      ? new LongRunningProgram(config, env, (line) => this.onUnsolicited(line), log)
      : new PerCommandProgram(config, env);
  }

  private get maxPerSec(): number {
    return this.config.maxPerSec ?? DEFAULT_ACTUATOR_MAX_PER_SEC;
  }

  /** Takes one command: answered at once when refused, else when its run ends. */
  command(raw: unknown, reply?: (result: CommandResult) => void): void {
    const refuse = (error: string) => {
      this.stats.refused++;
      this.log.info(`actuator ${this.config.name}: refused: ${error}`);
      reply?.({ ok: false, error });
    };
    if (this.stopped) return refuse(`${this.config.name} is stopping`);
    const checked = commandValue(this.config, raw);
    if ('error' in checked) return refuse(checked.error);
    if (!this.take()) return refuse(`rate limited: ${this.config.name} takes at most ${this.maxPerSec} commands per second`);
    const maxQueue = this.config.maxQueue ?? DEFAULT_ACTUATOR_MAX_QUEUE;
    if (this.busy && this.queue.length >= maxQueue) return refuse(`queue full: ${maxQueue} commands for ${this.config.name} are waiting`);
    this.queue.push({ value: checked.value, text: checked.text, reply });
    if (!this.busy) void this.drain();
  }

  /** Token bucket: `maxPerSec` per second, burst the same. */
  private take(): boolean {
    const now = Date.now();
    const rate = this.maxPerSec;
    this.tokens = Math.min(rate, this.tokens + ((now - this.refilledAt) / 1000) * rate);
    this.refilledAt = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  private async drain(): Promise<void> {
    this.busy = true;
    const timeoutMs = (this.config.timeoutSec ?? DEFAULT_ACTUATOR_TIMEOUT_SEC) * 1000;
    for (let cmd = this.queue.shift(); cmd !== undefined; cmd = this.queue.shift()) {
      this.stats.runs++;
      const outcome = await this.program.run(cmd.text, timeoutMs);
      let result: CommandResult;
      if (!outcome.ok) result = { ok: false, error: outcome.error };
      else {
        const s = stateOf(this.config, outcome.output, cmd.value);
        result = 'error' in s ? { ok: false, error: s.error } : { ok: true, state: s.state };
      }
      if (result.ok) {
        if (result.state !== undefined && this.config.type !== 'button') this.setState(result.state);
      } else {
        this.stats.failed++;
        this.log.warn(`actuator ${this.config.name}: ${cmd.text} failed: ${result.error}`);
      }
      cmd.reply?.(result);
    }
    this.busy = false;
  }

  private setState(state: string | number | boolean): void {
    this.state = state;
    this.onState(state);
  }

  private onUnsolicited(line: string): void {
    if (this.config.type === 'button') return;
    const s = stateOf(this.config, line, line);
    if ('error' in s) this.log.warn(`actuator ${this.config.name}: ${s.error}`);
    else this.setState(s.state);
  }

  /** Refuses new commands, answers the waiting ones, and stops the program. */
  async stop(): Promise<void> {
    this.stopped = true;
    for (const cmd of this.queue.splice(0)) cmd.reply?.({ ok: false, error: `${this.config.name} is stopping` });
    await this.program.stop();
  }
}

// ---- the device's actuators ----------------------------------------------------------------------

/**
 * Every actuator of a device, on one subscription to `devices/<id>/set/+`.
 * @example
 * const actuators = new Actuators(config.actuators, agent, { log });
 * actuators.start(); ... await actuators.stop();
 */
export class Actuators {
  readonly byName = new Map<string, Actuator>();
  private unsubscribe: (() => void) | undefined;
  private offOpen: (() => void) | undefined;
  private readonly log: Logger;

  constructor(configs: readonly ActuatorConfig[], private readonly host: ActuatorHost, options: { log?: Logger } = {}) {
    this.log = options.log ?? silentLogger;
    for (const c of configs) {
      this.byName.set(c.name, new Actuator(c, host.id, (state) => this.publishState(c.name, state), this.log));
    }
  }

  private get prefix(): string {
    return `devices/${this.host.id}/set/`;
  }

  start(): void {
    if (this.byName.size === 0 || this.unsubscribe) return;
    const { transport } = this.host;
    if (transport.subscribe === undefined) {
      this.log.error(`the ${transport.kind} transport takes no commands: ${this.byName.size} actuators are not served`);
      return;
    }
    for (const a of this.byName.values()) this.host.declareActuator(actuatorInfo(a.config));
    this.unsubscribe = transport.subscribe(`${this.prefix}+`, (m) => this.onCommand(m));
    // Confirmed states go out again on every reconnect (a broker restarted without its store).
    this.offOpen = transport.onOpen(() => {
      for (const a of this.byName.values()) if (a.state !== undefined) this.publishState(a.config.name, a.state);
    });
  }

  private onCommand(m: Inbound): void {
    if (m.retained) return; // a command runs when sent, not again at every (re)subscribe
    const name = m.topic.slice(this.prefix.length);
    const answer = m.responseTopic === undefined ? undefined : (result: CommandResult) => this.answer(m, result);
    const actuator = this.byName.get(name);
    if (actuator === undefined) {
      this.log.info(`command for unknown actuator ${JSON.stringify(name)} refused`);
      answer?.({ ok: false, error: `unknown actuator ${JSON.stringify(name)} (known: ${[...this.byName.keys()].join(', ')})` });
      return;
    }
    actuator.command(m.value, answer);
  }

  private answer(m: Inbound, result: CommandResult): void {
    const options = m.correlationData === undefined ? undefined : { correlationData: m.correlationData };
    this.host.transport.publish(m.responseTopic!, result as Payload, false, options).catch((err: Error) => {
      this.log.warn(`answering ${m.topic} on ${m.responseTopic} failed: ${err.message}`);
    });
  }

  private publishState(name: string, state: string | number | boolean): void {
    const { transport } = this.host;
    if (!transport.isOpen()) return; // sent at the next connection (onOpen above)
    transport.publish(`devices/${this.host.id}/${name}`, typeof state === 'boolean' ? (state as unknown as Payload) : state, true).catch((err: Error) => {
      this.log.debug(`publishing the state of ${name} failed; it goes out again at the next connection: ${err.message}`);
    });
  }

  async stop(): Promise<void> {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.offOpen?.();
    await Promise.all([...this.byName.values()].map((a) => a.stop()));
  }
}
