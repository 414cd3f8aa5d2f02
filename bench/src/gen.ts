/**
 * Load generator process (publishers or subscribers; the parent starts one of each,
 * pinned to the other core). Driven over IPC by the parent (control.ts); every
 * command gets one reply. Per delivery it does a counter increment (plus one clock
 * read and a digit parse in latency mode): no allocation of its own.
 *
 * Credit window: the subscriber side reports the slowest link's count ("floor")
 * whenever it advanced by `step`; the parent relays it to the publisher side,
 * which stays at most `window` messages ahead of it.
 */
import { openLink, type Endpoint, type Link } from './wire/index.js';
import { NativeLink } from './wire/native.js';
import { MiniWs } from './wire/ws-client.js';

export type GenCommand =
  | { t: 'open'; ep: Endpoint; /** when given, link i connects to eps[i % eps.length] (subscribers spread over nodes) */ eps?: Endpoint[]; count: number; /** `{i}` is replaced by the link's index, `{s}` by a sensor name (one of four, by index) */ topic: string; subscribe?: string; concurrency?: number; track?: 'count' | 'latency' | 'retained'; step?: number; maxSamples?: number }
  | { t: 'subscribe'; filter: string; target: number; timeoutMs: number }
  | { t: 'mark' }
  | { t: 'credit-run'; window: number; payloadBytes: number; maxBatch: number; /** fan-in: messages per publisher write (default 1) */ perWrite?: number }
  | { t: 'credit'; floor: number }
  | { t: 'rate-run'; rate: number; durationMs: number; payloadBytes: number }
  /** Device mix: every link publishes `perLinkPerSec` readings per second on its own topic, evenly spread, each stamped; `counted` links' publishes are also counted apart. */
  | { t: 'devices-run'; perLinkPerSec: number; durationMs: number; payloadBytes: number; retain: boolean; counted: number }
  /** Starts the latency samples afresh (after a warm-up); delivery counts keep running. */
  | { t: 'latency-reset' }
  | { t: 'retained-fill'; count: number; prefix: string; payloadBytes: number; timeoutMs: number; /** default true; false fills history instead */ retain?: boolean; /** cycle over this many topics (default: one per message) */ topics?: number }
  | { t: 'replay'; filter: string; target: number; timeoutMs: number }
  | { t: 'stop' }
  | { t: 'stall'; index: number }
  | { t: 'resume'; index: number }
  | { t: 'latency' }
  | { t: 'close' };

const links: Link[] = [];
const SENSORS = ['temp', 'humidity', 'battery', 'rssi'];
let topics: string[] = [];
let counts = new Float64Array(0);
let total = 0;
let stalled = -1;
let step = 100;
let sinceCheck = 0;
let checkEvery = 100;
let lastFloor = -1;
let samples = new Float64Array(0);
let nSamples = 0;
let latencyOver = 0;
let retainedTarget = 0;
let retainedDone: ((n: number) => void) | null = null;

// publisher state
let sent = 0;
let floor = 0;
let windowMsgs = 0;
let running = false;
let pumping = false;
let maxBatch = 64;
let perWrite = 1;
let payloadBytes = 64;

const reply = (m: object): void => {
  process.send!(m);
};

function floorNow(): number {
  let min = Infinity;
  for (let i = 0; i < counts.length; i++) if (i !== stalled && counts[i]! < min) min = counts[i]!;
  return min === Infinity ? 0 : min;
}

function checkFloor(fromTimer = false): void {
  sinceCheck = 0;
  const f = floorNow();
  if (f - lastFloor >= step || (fromTimer && f > lastFloor)) {
    lastFloor = f;
    reply({ t: 'floor', v: f });
  }
}

/** Parses the 20-digit send timestamp (ns, monotonic clock) that starts each latency payload. */
function stampOf(buf: Buffer, at: number): number {
  let v = 0;
  for (let i = at; i < at + 20; i++) v = v * 10 + (buf[i]! - 0x30);
  return v;
}

function makeHandler(i: number, track: string) {
  if (track === 'latency') {
    return function onLatencyDelivery(buf: Buffer, _ts: number, _te: number, ps: number): void {
      const lat = Number(process.hrtime.bigint()) - stampOf(buf, ps);
      counts[i]!++;
      total++;
      if (nSamples < samples.length) samples[nSamples++] = lat;
      else latencyOver++;
    };
  }
  if (track === 'retained') {
    return function onRetainedDelivery(): void {
      counts[i]!++;
      if (++total === retainedTarget && retainedDone) retainedDone(total);
    };
  }
  return function onCountedDelivery(): void {
    counts[i]!++;
    total++;
    if (++sinceCheck >= checkEvery) checkFloor();
  };
}

async function open(c: Extract<GenCommand, { t: 'open' }>): Promise<void> {
  const t0 = Date.now();
  counts = new Float64Array(c.count);
  topics = [];
  step = c.step ?? 100;
  checkEvery = Math.max(1, Math.floor((c.count * step) / 4));
  if (c.track === 'latency') samples = new Float64Array(c.maxSamples ?? 2_000_000);
  let next = 0;
  let failed: Error | null = null;
  const worker = async (): Promise<void> => {
    while (next < c.count && !failed) {
      const i = next++;
      try {
        const link = await openLink(c.eps?.[i % c.eps.length] ?? c.ep);
        link.onDelivery = makeHandler(i, c.track ?? 'count');
        links[i] = link;
        const topic = c.topic.replace('{i}', String(i)).replace('{s}', SENSORS[i % SENSORS.length]!);
        topics[i] = topic;
        if (c.subscribe !== undefined) await link.subscribe(c.subscribe.replace('{i}', String(i)));
      } catch (err) {
        failed = err as Error;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(c.concurrency ?? 50, c.count) }, worker));
  if (failed) throw failed;
  // Fallback for the credit window: report a floor that moved less than `step` in a while.
  if ((c.track ?? 'count') === 'count') setInterval(() => checkFloor(true), 5).unref();
  reply({ t: 'opened', n: links.length, ms: Date.now() - t0 });
}

function noFill(): void {}

function pump(): void {
  pumping = false;
  if (!running) return;
  let can = floor + windowMsgs - sent;
  if (can <= 0) return;
  if (links.length === 1) {
    const k = Math.min(can, maxBatch);
    const ok = links[0]!.publishBatch(topics[0]!, payloadBytes, k, noFill);
    sent += k;
    if (!ok) {
      void links[0]!.drained().then(schedulePump);
      return;
    }
  } else {
    // Fan-in: round-robin over the publisher links, `perWrite` messages per link per turn (one write).
    can = Math.min(can, maxBatch);
    let congested: Link | null = null;
    let turn = Math.floor(sent / perWrite);
    for (let j = 0; j < can; turn++) {
      const idx = turn % links.length;
      const k = Math.min(perWrite, can - j);
      if (!links[idx]!.publishBatch(topics[idx]!, payloadBytes, k, noFill)) congested = links[idx]!;
      sent += k;
      j += k;
    }
    if (congested) {
      void congested.drained().then(schedulePump);
      return;
    }
  }
  schedulePump();
}

function schedulePump(): void {
  if (pumping || !running) return;
  pumping = true;
  setImmediate(pump);
}

function stampFill(buf: Buffer, at: number): void {
  const s = process.hrtime.bigint().toString().padStart(20, '0');
  buf.write(s, at, 'latin1');
}

async function rateRun(c: Extract<GenCommand, { t: 'rate-run' }>): Promise<void> {
  const link = links[0]!;
  const t0 = Date.now();
  const totalMsgs = Math.floor((c.rate * c.durationMs) / 1000);
  let n = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(function ratePublish() {
      const due = Math.min(totalMsgs, Math.floor(((Date.now() - t0) * c.rate) / 1000));
      // Each message gets its own stamp, taken when it is written.
      while (n < due) {
        link.publishBatch(topics[0]!, c.payloadBytes, 1, stampFill);
        n++;
      }
      if (n >= totalMsgs || Date.now() - t0 > c.durationMs + 5000) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  sent = n;
  reply({ t: 'rate-done', sent: n, ms: Date.now() - t0 });
}

/** The device mix's publishers: link j publishes at phase j/N of every period, a stamped reading each time. */
async function devicesRun(c: Extract<GenCommand, { t: 'devices-run' }>): Promise<void> {
  const t0 = Date.now();
  const perSec = links.length * c.perLinkPerSec;
  const totalMsgs = Math.floor((perSec * c.durationMs) / 1000);
  let n = 0;
  let counted = 0;
  await new Promise<void>((resolve) => {
    const timer = setInterval(function devicePublish() {
      const due = Math.min(totalMsgs, Math.floor(((Date.now() - t0) * perSec) / 1000));
      while (n < due) {
        const idx = n % links.length;
        links[idx]!.publishBatch(topics[idx]!, c.payloadBytes, 1, stampFill, c.retain);
        if (idx < c.counted) counted++;
        n++;
      }
      if (n >= totalMsgs || Date.now() - t0 > c.durationMs + 5000) {
        clearInterval(timer);
        resolve();
      }
    }, 2);
  });
  sent = n;
  reply({ t: 'devices-done', sent: n, counted, ms: Date.now() - t0 });
}

async function retainedFill(c: Extract<GenCommand, { t: 'retained-fill' }>): Promise<void> {
  const link = links[0]!;
  const t0 = Date.now();
  const sentinel = 'bench/sentinel';
  let seen: () => void = () => undefined;
  const got = new Promise<void>((r) => (seen = r));
  link.onDelivery = () => seen();
  await link.subscribe(sentinel);
  const payload = Buffer.alloc(c.payloadBytes, 0x72);
  const SENTINEL_BYTES = 8;
  // Only the sentinel's own 8 payload bytes: a longer copy ran over the native PUBLISH's flags field
  // behind the payload (flags 0x72), which the broker rightly closes as a malformed frame.
  const fill = (buf: Buffer, at: number): void => void payload.copy(buf, at, 0, SENTINEL_BYTES);
  const retain = c.retain ?? true;
  for (let i = 0; i < c.count; i++) {
    // One-off topics: publish without caching a template per topic.
    link.publish(`${c.prefix}${c.topics === undefined ? i : i % c.topics}`, payload, retain);
    if (i % 1000 === 999) await link.drained();
  }
  link.publishBatch(sentinel, SENTINEL_BYTES, 1, fill);
  await Promise.race([got, new Promise((_, rej) => setTimeout(() => rej(new Error('retained fill: sentinel not delivered')), c.timeoutMs))]);
  reply({ t: 'retained-filled', ms: Date.now() - t0 });
}

async function timedSubscribe(c: Extract<GenCommand, { t: 'subscribe' }>): Promise<void> {
  retainedTarget = c.target;
  total = 0; // counts this subscription only (a replay may have run on this link before)
  const t0 = process.hrtime.bigint();
  const done = new Promise<number>((r) => (retainedDone = r));
  await links[0]!.subscribe(c.filter, c.timeoutMs);
  const n = await Promise.race([done, new Promise<number>((r) => setTimeout(() => r(total), c.timeoutMs))]);
  reply({ t: 'subscribed', n, ms: Number(process.hrtime.bigint() - t0) / 1e6 });
}

/**
 * History replay (native only): learns the stream's epoch from a plain SUBSCRIBE, then resumes
 * `filter` from offset 0 and times until `target` replayed deliveries arrived.
 */
async function timedReplay(c: Extract<GenCommand, { t: 'replay' }>): Promise<void> {
  const link = links[0]!;
  if (!(link instanceof NativeLink)) throw new Error('replay needs the native protocol');
  await link.subscribe('bench/epoch-probe');
  const epoch = link.lastSubscribe?.epoch;
  if (epoch === undefined) throw new Error('the broker keeps no history (no epoch in the SUBSCRIBE ACK)');
  retainedTarget = c.target;
  total = 0;
  const t0 = process.hrtime.bigint();
  const done = new Promise<number>((r) => (retainedDone = r));
  await link.subscribeWith(c.filter, { resume: { epoch, offset: 0 } }, c.timeoutMs);
  if (link.lastSubscribe?.recovered !== true) throw new Error(`resume not recovered: ${JSON.stringify(link.lastSubscribe)}`);
  const n = await Promise.race([done, new Promise<number>((r) => setTimeout(() => r(total), c.timeoutMs))]);
  reply({ t: 'replayed', n, ms: Number(process.hrtime.bigint() - t0) / 1e6, announced: link.lastSubscribe.replayed });
}

function latencyReport(): void {
  const s = samples.subarray(0, nSamples).sort();
  const q = (p: number): number => (s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))]! / 1e6 : NaN);
  reply({ t: 'latency', received: total, samples: nSamples, over: latencyOver, p50: q(0.5), p99: q(0.99), p999: q(0.999), max: s.length ? s[s.length - 1]! / 1e6 : NaN });
}

async function handle(c: GenCommand): Promise<void> {
  switch (c.t) {
    case 'open':
      return open(c);
    case 'subscribe':
      return timedSubscribe(c);
    case 'replay':
      return timedReplay(c);
    case 'mark': {
      // "others": every link but the first, the one a slow-consumer run stalls, so free and stalled phases compare the same 99 links.
      const others = counts.length > 1 ? total - counts[0]! : total;
      return reply({ t: 'mark', total, others, floor: floorNow(), closed: links.filter((l) => l.closed).length, reads: MiniWs.reads });
    }
    case 'credit-run':
      windowMsgs = c.window;
      payloadBytes = c.payloadBytes;
      maxBatch = c.maxBatch;
      perWrite = c.perWrite ?? 1;
      running = true;
      schedulePump();
      return reply({ t: 'running' });
    case 'credit':
      floor = Math.max(floor, c.floor);
      schedulePump();
      return;
    case 'rate-run':
      return rateRun(c);
    case 'devices-run':
      return devicesRun(c);
    case 'latency-reset':
      nSamples = 0;
      latencyOver = 0;
      return reply({ t: 'latency-reset', received: total });
    case 'retained-fill':
      return retainedFill(c);
    case 'stop':
      running = false;
      return reply({ t: 'stopped', sent });
    case 'stall':
      stalled = c.index;
      links[c.index]?.pause();
      return reply({ t: 'stalled' });
    case 'resume':
      links[c.index]?.resume();
      return reply({ t: 'resumed' });
    case 'latency':
      return latencyReport();
    case 'close':
      for (const l of links) l?.close();
      reply({ t: 'closed' });
      setTimeout(() => process.exit(0), 200);
      return;
  }
}

process.on('message', (c: GenCommand) => {
  handle(c).catch((err: Error) => reply({ t: 'error', message: err.message }));
});
process.on('disconnect', () => process.exit(0));
