/**
 * The agent's small vocabulary, shared by readers, exec sensors, transports and the scheduler.
 *
 * A reader turns files under a root directory into samples; the agent turns samples into
 * readings on `devices/<id>/<path>`; a transport carries them. Nothing here touches the clock
 * or the network, so every piece can be tested with fixture trees and fakes.
 */

/** One measured value of one sensor, as produced by a reader or an exec sensor. */
export interface Sample {
  /** Sensor path below `devices/<id>/`, e.g. `cpu/usage` or `hwmon/coretemp/temperature/package_id_0`. */
  path: string;
  /** Numbers for measurements; strings for states such as a battery's `Charging`. */
  value: number | string;
  /** Unit symbol (`%`, `°C`, `B`, `B/s`, `V`, `RPM`, `W`, `A`, `s`, `MHz`) or `''` for plain numbers. */
  unit: string;
  /** Marks a temperature that can stand for the CPU's; the agent publishes the first one also as `cpu/temperature`. */
  cpuTemperature?: boolean;
}

/**
 * A hardware source. `read` is synchronous on purpose: every source is a small file in /proc or
 * /sys (or one statfs call), cheaper to read than to schedule as a promise.
 * Rate readers (cpu usage, disk I/O, network) keep the previous counters and return their rates
 * from the second read on.
 * @example
 * const r = cpuReader({ root: '/' }); r.read(Date.now()); setTimeout(() => console.log(r.read(Date.now())), 500);
 */
export interface Reader {
  readonly name: string;
  read(nowMs: number): Sample[];
}

export interface ReaderOptions {
  /** Directory that stands for `/`: `/` on a device, a fixture tree in tests. */
  root?: string;
}

/** What the agent puts on the wire: a number, a state string or boolean, a `{ value, unit, ts }` reading, or metadata. */
export type Payload = number | string | boolean | { readonly [key: string]: unknown };

/**
 * A message the agent receives (a command for an actuator, Home Assistant's birth message).
 * @example
 * transport.subscribe?.('devices/pi-01/set/+', (m: Inbound) => console.log(m.topic, m.value, m.responseTopic));
 */
export interface Inbound {
  topic: string;
  /** Decoded by its content type (MessagePack, JSON, text), untagged payloads by the JSON-or-text rule. */
  value: unknown;
  /** From the retained store rather than live. */
  retained: boolean;
  /** Where the sender wants an answer (MQTT 5 Response Topic, SDK `request`). */
  responseTopic?: string;
  correlationData?: Uint8Array;
}

/**
 * Where readings go. Implemented by transport/native.ts (the SDK), transport/mqtt.ts, and the
 * broker's in-process transport (`topicast --agent`: publishes straight into its router).
 * Contract: `publish` resolves once the message was handed to an open connection and rejects
 * when it could not be (the agent then keeps it as the latest value of its topic);
 * `onOpen` fires on every (re)connect, after the will is registered.
 */
export interface AgentTransport {
  readonly kind: 'native' | 'mqtt' | 'in-process';
  isOpen(): boolean;
  onOpen(listener: () => void): () => void;
  /** `correlationData` marks an answer to a request (MQTT 5 Correlation Data, PROTOCOL.md §9). */
  publish(topic: string, payload: Payload, retain: boolean, options?: { correlationData?: Uint8Array }): Promise<void>;
  /**
   * Delivers live messages matching `filter` until the returned function is called; the subscription
   * is restored on every reconnect. Optional: a transport without it serves no actuators.
   */
  subscribe?(filter: string, handler: (message: Inbound) => void): () => void;
  /** Publishes `last` (retained, acknowledged when the protocol allows) if open, then closes cleanly so no will fires. */
  close(last?: { topic: string; payload: Payload }): Promise<void>;
}

/** Time, injected so the scheduler and the deadband run on a fake clock in tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

export type LogLevel = 'error' | 'warn' | 'info' | 'debug';

export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
}

export const silentLogger: Logger = { error() {}, warn() {}, info() {}, debug() {} };
