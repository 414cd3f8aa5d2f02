/**
 * The agent's scheduler: reads sensors on their intervals, applies the deadband, and publishes
 * readings, device info and status on the device topic convention (DESIGN.md):
 * `devices/<id>/status` (retained `online`/`offline`), `devices/<id>/info` (retained metadata and
 * the sensor list with units), `devices/<id>/<sensor path>` (retained readings).
 *
 * Scheduling. Each sensor has an interval (default 5 s). A reader is read when the earliest of
 * its sensors is due, and a sensor read before its own interval elapsed is not considered. One
 * timer for the whole agent, armed for the earliest due reader: no per-sensor timers.
 *
 * Deadband. A considered value is published only if it differs from the last *published* value
 * by more than the sensor's threshold, or if the last publish is `maxAgeSec` old (default 60 s),
 * so a quiet device sends one message per sensor per minute and a slow drift still shows.
 * Default thresholds depend on the unit (table below); strings and objects publish on change.
 * A threshold of -1 publishes every considered value.
 *
 * Offline and reconnects. The sensor table keeps the latest accepted payload of every sensor
 * (one entry per topic, bounded by `maxSensors`: beyond it new sensor paths are ignored, logged
 * once and counted, so a runaway exec program cannot grow the agent). While the transport is
 * not open nothing is sent and the deadband keeps comparing, so the table holds only the latest
 * value of each topic. On every (re)connect the agent publishes `status` online, then `info`,
 * then the latest payload of every sensor, all retained: what changed while disconnected goes
 * out, and a broker that restarted without its retained store gets every value back at once.
 * The transports' own offline queues are not used for readings. A publish that fails while
 * open (the connection is going down) is counted; the next reconnect sends that topic again.
 *
 * Payload encoding. The agent hands values to the transport; each transport encodes them the way
 * its subscribers expect. Native: the SDK's default codec (MessagePack), so `48.2` is a float and
 * a reading is a map `{ value, unit, ts }`, exactly what SDK subscribers decode. MQTT: JSON text
 * (`48.2`, `{"value":48.2,"unit":"°C","ts":...}`, and bare strings such as `online` as plain text),
 * because generic MQTT tools (mosquitto_sub, Node-RED, Home Assistant) read text and JSON, not
 * MessagePack. A reading is `{ value, unit, ts }` by default (`ts` in ms since the epoch), so a
 * dashboard that opens later sees the unit and how old the retained value is; `payload: 'number'`
 * publishes the bare value instead.
 *
 * Cost per round: one synchronous read of a few small /proc and /sys files per due reader, one
 * comparison per sample, one publish per changed sample. No allocation while nothing changes
 * beyond the readers' own parsing.
 */
import type { ActuatorInfo } from './actuator.js';
import { sensorFilterMatches } from './filter.js';
import type { AgentTransport, Clock, Logger, Payload, Reader, Sample } from './types.js';
import { silentLogger, systemClock } from './types.js';

export interface SensorSettings {
  /** Seconds between two considerations of this sensor. */
  intervalSec: number;
  /** Publish only when |value − last published| > threshold; -1 publishes every considered value. */
  threshold: number;
  /** Publish at least this often even when the value did not move. */
  maxAgeSec: number;
  enabled: boolean;
}

/** Settings for the sensors whose path matches `filter` (MQTT filter syntax: `net/+/rx`, `hwmon/#`). Later rules win. */
export interface SensorRule {
  filter: string;
  settings: Partial<SensorSettings>;
}

/**
 * Default deadband per unit: below these a change is noise on any dashboard, above them it is news.
 * Units not listed publish on any change.
 */
export const DEFAULT_THRESHOLDS: Readonly<Record<string, number>> = {
  '%': 1, // percentage points; CPU usage jitters by tenths between rounds
  '°C': 0.5, // most sensors resolve 0.5 to 1 °C
  B: 1024 * 1024, // memory and disk use move by KiB all the time
  'B/s': 1024, // an idle link still carries a few hundred B/s of broadcast
  V: 0.05, // regulator ripple
  A: 0.05,
  W: 0.2,
  RPM: 50, // fan controllers dither
  MHz: 100, // frequency governors step constantly; 100 MHz is one step on most boards
  s: 59, // uptime: once a minute is enough
};

export const DEFAULT_INTERVAL_SEC = 5; // fresh enough for a dashboard, a few hundred bytes/s for a busy machine
export const DEFAULT_MAX_AGE_SEC = 60; // a quiet sensor still shows it is alive every minute
export const DEFAULT_MAX_SENSORS = 2000; // a laptop has about 100 sensors, a server with many disks a few hundred; the bound is for runaway exec output
const DUE_SLACK_MS = 50; // timers fire late, never early; this absorbs rounding so a 5 s sensor is not skipped at 4.999 s
const FIRST_ROUND_DELAY_MS = 1000; // rates (cpu, net, disk I/O) need two reads; one second gives meaningful first values

export interface DeviceInfo {
  hostname: string;
  os: string;
  arch: string;
  agentVersion: string;
  [key: string]: unknown;
}

export interface AgentOptions {
  id: string;
  transport: AgentTransport;
  readers: Reader[];
  info: DeviceInfo;
  intervalSec?: number;
  maxAgeSec?: number;
  rules?: SensorRule[];
  payload?: 'reading' | 'number';
  maxSensors?: number;
  clock?: Clock;
  log?: Logger;
}

export interface AgentStats {
  /** Publishes handed to the transport. */
  published: number;
  /** Considered values held back by the deadband. */
  suppressed: number;
  /** Publishes the transport rejected. */
  failed: number;
  /** Values of new sensors ignored because the table was full. */
  ignored: number;
}

interface SensorState {
  settings: SensorSettings;
  unit: string;
  dueAt: number;
  lastValue: Sample['value'] | object | undefined;
  lastPublishedAt: number | undefined;
  /** The latest accepted payload: sent now if connected, else at the next connection. */
  payload: Payload | undefined;
}

/** Options for `offer`: exec sensors have their own timing, so they skip the interval gate. */
export interface OfferOptions {
  gate?: boolean;
}

/**
 * @example
 * const agent = new Agent({ id: 'pi-01', transport, readers: createReaders(), info: deviceInfo() });
 * agent.start();
 * process.on('SIGTERM', () => agent.stop().then(() => process.exit(0)));
 */
export class Agent {
  readonly id: string;
  readonly stats: AgentStats = { published: 0, suppressed: 0, failed: 0, ignored: 0 };
  private readonly transport: AgentTransport;
  private readonly readers: Reader[];
  private readonly baseInfo: DeviceInfo;
  private readonly intervalSec: number;
  private readonly maxAgeSec: number;
  private readonly rules: SensorRule[];
  private readonly payloadShape: 'reading' | 'number';
  private readonly maxSensors: number;
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly sensors = new Map<string, SensorState>();
  private readonly readerDue = new Map<Reader, number>();
  private readonly extraSensors = new Map<string, string>();
  private readonly actuators = new Map<string, ActuatorInfo>();
  private readonly infoListeners = new Set<(info: Payload) => void>();
  private cpuSource: string | undefined;
  private infoDirty = false; // a sensor appeared since info was last published
  private timer: unknown;
  private offOpen: (() => void) | undefined;
  private running = false;
  private announced = false; // nothing goes out before status and info; until then values wait in the sensor table

  constructor(options: AgentOptions) {
    this.id = options.id;
    this.transport = options.transport;
    this.readers = options.readers;
    this.baseInfo = options.info;
    this.intervalSec = options.intervalSec ?? DEFAULT_INTERVAL_SEC;
    this.maxAgeSec = options.maxAgeSec ?? DEFAULT_MAX_AGE_SEC;
    this.rules = options.rules ?? [];
    this.payloadShape = options.payload ?? 'reading';
    this.maxSensors = options.maxSensors ?? DEFAULT_MAX_SENSORS;
    this.clock = options.clock ?? systemClock;
    this.log = options.log ?? silentLogger;
  }

  topic(path: string): string {
    return `devices/${this.id}/${path}`;
  }

  /** Primes every reader, announces the device when the transport opens, and starts the rounds. */
  start(): void {
    if (this.running) return;
    this.running = true;
    const now = this.clock.now();
    for (const r of this.readers) {
      this.readerDue.set(r, now + FIRST_ROUND_DELAY_MS);
      this.offerAll(readSafely(r, now, this.log), now, true);
    }
    this.offOpen = this.transport.onOpen(() => this.announce());
    if (this.transport.isOpen()) this.announce();
    this.arm();
  }

  /** Stops the rounds, publishes `status` offline (retained) when connected and closes the transport cleanly. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.offOpen?.();
    await this.transport.close({ topic: this.topic('status'), payload: 'offline' });
  }

  /** Registers a sensor that is not read by a reader (an exec sensor), so `info` lists it before its first value. */
  declareSensor(path: string, unit: string): void {
    if (this.extraSensors.get(path) === unit) return;
    this.extraSensors.set(path, unit);
    this.infoDirty = true;
    this.refreshInfo();
  }

  /** Lists an actuator (actuator.ts) in `info`, so dashboards and Home Assistant offer its control. */
  declareActuator(info: ActuatorInfo): void {
    this.actuators.set(info.name, info);
    this.infoDirty = true;
    this.refreshInfo();
  }

  /** Publishes `info` again now (listeners included), e.g. once actuators and discovery are set up. */
  refresh(): void {
    if (!this.running || !this.announced) return;
    this.infoDirty = false;
    this.publishInfo();
  }

  /** The actuators listed in `info`, in the order declared. */
  actuatorList(): ActuatorInfo[] {
    return [...this.actuators.values()];
  }

  /** Called with every `info` published (each connection, each new sensor): Home Assistant discovery follows it. Returns the removal. */
  onInfo(listener: (info: Payload) => void): () => void {
    this.infoListeners.add(listener);
    return () => this.infoListeners.delete(listener);
  }

  /**
   * Takes one value for one sensor through the interval gate (unless `gate: false`) and the
   * deadband, and publishes it if it passes. Exec sensors call this for every line they parse.
   */
  offer(sample: Sample | { path: string; value: object; unit: string }, options: OfferOptions = {}): void {
    this.offerAt(sample, this.clock.now(), options.gate ?? true);
    this.refreshInfo();
  }

  /** The current sensor list, as published in `info`: every sensor seen so far, sorted by path. */
  sensorList(): { path: string; unit: string }[] {
    const all = new Map<string, string>(this.extraSensors);
    for (const [path, s] of this.sensors) if (s.settings.enabled) all.set(path, s.unit);
    return [...all].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([path, unit]) => ({ path, unit }));
  }

  /** Number of sensors in the table (each with its latest value). */
  get sensorCount(): number {
    return this.sensors.size;
  }

  /** Runs the due readers now; the timer calls this, tests may too. */
  round(): void {
    const now = this.clock.now();
    for (const r of this.readers) {
      const due = this.readerDue.get(r) ?? now;
      if (due - DUE_SLACK_MS > now) continue;
      const samples = readSafely(r, now, this.log);
      this.offerAll(samples, now, true);
      this.readerDue.set(r, now + this.readerIntervalMs(samples));
    }
    this.refreshInfo();
  }

  private arm(): void {
    if (!this.running) return;
    let next = Infinity;
    for (const due of this.readerDue.values()) next = Math.min(next, due);
    if (next === Infinity) return;
    const delay = Math.max(0, next - this.clock.now());
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      if (!this.running) return;
      this.round();
      this.arm();
    }, delay);
  }

  private readerIntervalMs(samples: Sample[]): number {
    let min = Infinity;
    for (const s of samples) {
      const state = this.sensors.get(s.path);
      if (state && state.settings.enabled) min = Math.min(min, state.settings.intervalSec);
    }
    return (min === Infinity ? this.intervalSec : min) * 1000;
  }

  private offerAll(samples: Sample[], now: number, gate: boolean): void {
    let cpu: Sample | undefined;
    for (const s of samples) {
      this.offerAt(s, now, gate);
      if (s.cpuTemperature && (this.cpuSource === undefined || this.cpuSource === s.path) && !cpu) cpu = s;
    }
    if (cpu && !samples.some((s) => s.path === 'cpu/temperature')) {
      this.cpuSource = cpu.path;
      this.offerAt({ path: 'cpu/temperature', value: cpu.value, unit: cpu.unit }, now, gate);
    }
  }

  private settingsFor(path: string, unit: string): SensorSettings {
    const settings: SensorSettings = {
      intervalSec: this.intervalSec,
      threshold: DEFAULT_THRESHOLDS[unit] ?? 0,
      maxAgeSec: this.maxAgeSec,
      enabled: true,
    };
    for (const rule of this.rules) if (sensorFilterMatches(rule.filter, path)) Object.assign(settings, rule.settings);
    return settings;
  }

  private offerAt(sample: { path: string; value: Sample['value'] | object; unit: string }, now: number, gate: boolean): void {
    let s = this.sensors.get(sample.path);
    if (!s) {
      if (this.sensors.size >= this.maxSensors) {
        if (this.stats.ignored++ === 0) this.log.warn(`more than ${this.maxSensors} sensors: ignoring new ones, starting with ${sample.path}`);
        return;
      }
      s = { settings: this.settingsFor(sample.path, sample.unit), unit: sample.unit, dueAt: now, lastValue: undefined, lastPublishedAt: undefined, payload: undefined };
      this.sensors.set(sample.path, s);
      if (s.settings.enabled) this.infoDirty = true;
    }
    if (!s.settings.enabled) return;
    if (gate) {
      if (now < s.dueAt - DUE_SLACK_MS) return;
      s.dueAt = now + s.settings.intervalSec * 1000;
    }
    const value = sample.value;
    const last = s.lastValue;
    const moved =
      last === undefined ||
      (typeof value === 'number' && typeof last === 'number'
        ? s.settings.threshold < 0 || Math.abs(value - last) > s.settings.threshold
        : s.settings.threshold < 0 || !sameValue(value, last));
    const stale = s.lastPublishedAt === undefined || now - s.lastPublishedAt >= s.settings.maxAgeSec * 1000 - DUE_SLACK_MS;
    if (!moved && !stale) {
      this.stats.suppressed++;
      return;
    }
    s.lastValue = value;
    s.lastPublishedAt = now;
    s.payload = this.payload(value, sample.unit, now);
    this.send(this.topic(sample.path), s.payload);
  }

  private payload(value: Sample['value'] | object, unit: string, now: number): Payload {
    if (typeof value === 'object') return value as Payload; // exec JSON: the program chose its shape
    if (this.payloadShape === 'number') return value;
    return { value, unit, ts: now };
  }

  private info(): Payload {
    const info: { [k: string]: unknown } = { ...this.baseInfo, id: this.id, transport: this.transport.kind, intervalSec: this.intervalSec, sensors: this.sensorList() };
    if (this.actuators.size > 0) info.actuators = this.actuatorList();
    return info;
  }

  private publishInfo(): void {
    const info = this.info();
    this.send(this.topic('info'), info);
    if (this.announced && this.transport.isOpen()) for (const l of [...this.infoListeners]) l(info);
  }

  /** Republishes `info` when the sensor list grew (a disk mounted, an exec program printed a new name). */
  private refreshInfo(): void {
    if (!this.running || !this.infoDirty) return;
    this.infoDirty = false;
    this.publishInfo();
  }

  /** On every (re)connect: status, info, then the latest value of every sensor. */
  private announce(): void {
    if (!this.running) return;
    this.announced = true;
    this.log.info(`connected (${this.transport.kind}); publishing status, info and ${this.sensors.size} sensors`);
    this.send(this.topic('status'), 'online');
    this.infoDirty = false;
    this.publishInfo();
    for (const [path, s] of this.sensors) if (s.payload !== undefined) this.send(this.topic(path), s.payload);
  }

  private send(topic: string, payload: Payload): void {
    if (!this.announced || !this.transport.isOpen()) return; // the sensor table keeps it for the next connection
    this.stats.published++;
    this.transport.publish(topic, payload, true).then(undefined, (err: unknown) => {
      this.stats.failed++;
      this.log.debug(`publish ${topic} failed; it goes out again at the next connection: ${String((err as Error)?.message ?? err)}`);
    });
  }
}

function readSafely(reader: Reader, now: number, log: Logger): Sample[] {
  try {
    return reader.read(now);
  } catch (err) {
    log.warn(`reader ${reader.name} failed: ${(err as Error).message}`);
    return [];
  }
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  return JSON.stringify(a) === JSON.stringify(b);
}
