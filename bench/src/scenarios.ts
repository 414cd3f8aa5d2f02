/**
 * The scenarios of issue 7. Each run starts a fresh target pinned to the broker
 * core and fresh generator processes pinned to the other, measures, and stops
 * everything it started (finally blocks; proc.ts kills leftovers by PID on exit).
 *
 * Method: broker CPU = utime+stime of the broker PID across the measured window,
 * reported as CPU seconds per million deliveries; the generator's share (its
 * processes plus this orchestrator, all on the generator core) says who the limit is.
 */
import { Gen, linkCredit } from './control.js';
import { coreBusySeconds, cpuSeconds, rssBytes, sleep, tcpOutSegments } from './proc.js';
import { BROKER_CPU, GEN_CPU, type Running, type StartOptions, type Target } from './peers.js';

export interface Row {
  scenario: string;
  target: string;
  label: string;
  run: number;
  [metric: string]: string | number | boolean | null;
}

export interface Timing {
  warmMs: number;
  measureMs: number;
}

export interface Window {
  t: number;
  /** CPU-s of every broker-side process (one broker, or several nodes and their engine). */
  broker: number;
  /** The same, per process, in the order of the pids given to `snapshot`. */
  parts: number[];
  gen: number;
  cores: number[];
  mark: { total: number; others: number; floor: number; closed: number; reads: number };
  /** Machine-wide TCP segments sent (tcpOutSegments). */
  segs: number;
}

async function withTarget<T>(t: Target, o: StartOptions, gens: string[], fn: (r: Running, g: Gen[]) => Promise<T>): Promise<T> {
  const running = await t.start(o);
  const g = gens.map((role) => Gen.start(role, GEN_CPU));
  try {
    return await fn(running, g);
  } finally {
    for (const x of g) x.onFloor = () => undefined; // no more credit relays while closing
    await Promise.all(g.map((x) => x.close()));
    await running.stop();
  }
}

export function selfCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** CPU of the broker-side `pids` and of the generator, the cores' busy time, and the subscribers' counts, at one moment. */
export async function snapshot(pids: number[], sub: Gen, gens: Gen[]): Promise<Window> {
  const t = performance.now();
  const parts = pids.map(cpuSeconds);
  const gen = gens.reduce((s, g) => s + g.cpu(), 0) + selfCpu();
  const cores = coreBusySeconds();
  const segs = tcpOutSegments();
  const mark = (await sub.request({ t: 'mark' }, 'mark', 10_000)) as unknown as Window['mark'];
  return { t, broker: parts.reduce((a, b) => a + b, 0), parts, gen, cores, mark, segs };
}

export function throughputRow(a: Window, b: Window, base: Row, published: number): Row {
  const sec = (b.t - a.t) / 1000;
  const delivered = b.mark.total - a.mark.total;
  const brokerCpu = b.broker - a.broker;
  const brokerShare = brokerCpu / sec;
  const genShare = (b.gen - a.gen) / sec;
  const limit = brokerShare >= 0.85 ? 'broker' : genShare >= 0.85 ? 'generator' : 'window';
  // CPU used on the two pinned cores by processes that are not ours (others sharing the machine).
  const foreignBroker = Math.max(0, (b.cores[BROKER_CPU]! - a.cores[BROKER_CPU]! - brokerCpu) / sec);
  const foreignGen = Math.max(0, (b.cores[GEN_CPU]! - a.cores[GEN_CPU]! - (b.gen - a.gen)) / sec);
  return {
    ...base,
    seconds: round(sec, 2),
    delivered,
    deliveriesPerSec: Math.round(delivered / sec),
    published,
    brokerCpuSec: round(brokerCpu, 2),
    cpuSecPerMillion: delivered > 0 ? round(brokerCpu / (delivered / 1e6), 3) : null,
    brokerCpuShare: round(brokerShare, 2),
    genCpuShare: round(genShare, 2),
    limit,
    foreignCpuShare: round(Math.max(foreignBroker, foreignGen), 2),
    // How batched the deliveries arrive: the subscribers' socket reads (WebSocket clients), and TCP
    // segments sent machine-wide (ACKs and other processes included: a proxy), per 1,000 deliveries.
    readsPerKDelivery: delivered > 0 && b.mark.reads !== undefined ? round(((b.mark.reads - a.mark.reads) * 1000) / delivered, 2) : null,
    segmentsPerKDelivery: delivered > 0 ? round(((b.segs - a.segs) * 1000) / delivered, 2) : null,
  };
}

export function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

/** How the fan-out's subscribers read and how far the publisher may run ahead (issue 20's outside harness). */
export interface FanOutReader {
  /** `data` (Node 'data' events, the default) or `onread` (one shared buffer for every socket). */
  reader: 'data' | 'onread';
  /** Deliveries in flight the credit window allows (default 200,000). */
  inFlight: number;
}

/** Fan-out 1 → `subs` on one topic, 64-byte payloads, credit window. */
export async function fanOut(t: Target, subs: number, run: number, timing: Timing, o: StartOptions = {}, r: FanOutReader = { reader: 'data', inFlight: 200_000 }): Promise<Row> {
  const windowMsgs = Math.max(100, Math.round(r.inFlight / subs)); // ≈ 200k deliveries in flight: enough to keep any broker busy, small enough not to bury one
  const scenario = `fanout-${subs}${r.reader === 'onread' ? '-onread' : ''}`;
  return withTarget(t, o, ['sub', 'pub'], async (running, [sub, pub]) => {
    const topic = 'bench/fanout';
    await sub!.request({ t: 'open', ep: { ...running.ep, reader: r.reader }, count: subs, topic, subscribe: topic, step: Math.ceil(windowMsgs / 4), concurrency: 50 }, 'opened', 60_000);
    await pub!.request({ t: 'open', ep: running.pubEp ?? running.ep, count: 1, topic }, 'opened');
    linkCredit(sub!, pub!);
    await pub!.request({ t: 'credit-run', window: windowMsgs, payloadBytes: 64, maxBatch: 64 }, 'running');
    await sleep(timing.warmMs);
    const a = await snapshot([running.child.pid], sub!, [sub!, pub!]);
    await sleep(timing.measureMs);
    const b = await snapshot([running.child.pid], sub!, [sub!, pub!]);
    const stopped = await pub!.request({ t: 'stop' }, 'stopped');
    return throughputRow(a, b, { scenario, target: t.id, label: t.label, run, subscribers: subs, windowMsgs, reader: r.reader }, stopped.sent as number);
  });
}

/** Fan-in: `pubs` publishers on devices/<i>/temp → one subscriber on devices/+/temp. */
export async function fanIn(t: Target, pubs: number, run: number, timing: Timing, o: StartOptions = {}): Promise<Row> {
  const windowMsgs = 2000;
  return withTarget(t, o, ['sub', 'pub'], async (running, [sub, pub]) => {
    await sub!.request({ t: 'open', ep: running.ep, count: 1, topic: 'devices/+/temp', subscribe: 'devices/+/temp', step: windowMsgs / 4 }, 'opened');
    await pub!.request({ t: 'open', ep: running.ep, count: pubs, topic: 'devices/{i}/temp', concurrency: 50 }, 'opened', 60_000);
    linkCredit(sub!, pub!);
    await pub!.request({ t: 'credit-run', window: windowMsgs, payloadBytes: 64, maxBatch: 256 }, 'running');
    await sleep(timing.warmMs);
    const a = await snapshot([running.child.pid], sub!, [sub!, pub!]);
    await sleep(timing.measureMs);
    const b = await snapshot([running.child.pid], sub!, [sub!, pub!]);
    const stopped = await pub!.request({ t: 'stop' }, 'stopped');
    return throughputRow(a, b, { scenario: 'fanin', target: t.id, label: t.label, run, publishers: pubs, windowMsgs }, stopped.sent as number);
  });
}

/** Latency at a fixed rate to `subs` subscribers; every delivery is timed (stamp in the payload). */
export async function latency(t: Target, subs: number, rate: number, run: number, timing: Timing, o: StartOptions = {}, window: { start?(): void; end?(): void } = {}): Promise<Row> {
  return withTarget(t, o, ['sub', 'pub'], async (running, [sub, pub]) => {
    const topic = 'bench/latency';
    const expected = Math.floor((rate * timing.measureMs) / 1000);
    await sub!.request({ t: 'open', ep: running.ep, count: subs, topic, subscribe: topic, track: 'latency', maxSamples: expected * subs + 1000, concurrency: 50 }, 'opened', 60_000);
    await pub!.request({ t: 'open', ep: running.ep, count: 1, topic }, 'opened');
    // Warm-up at the same rate, then fresh samples: a freshly started Node broker runs its first
    // mark-compact a second or two after start-up (module loading's garbage), which is no part of a
    // running broker's latency (bench/README.md "The tail").
    let warmReceived = 0;
    if (timing.warmMs > 0) {
      await pub!.request({ t: 'rate-run', rate, durationMs: timing.warmMs, payloadBytes: 64 }, 'rate-done', timing.warmMs + 15_000);
      await sleep(200);
      warmReceived = (await sub!.request({ t: 'latency-reset' }, 'latency-reset')).received as number;
    }
    const c0 = cpuSeconds(running.child.pid);
    const k0 = coreBusySeconds();
    const g0 = sub!.cpu() + pub!.cpu() + selfCpu();
    const t0 = performance.now();
    window.start?.();
    const done = await pub!.request({ t: 'rate-run', rate, durationMs: timing.measureMs, payloadBytes: 64 }, 'rate-done', timing.measureMs + 15_000);
    window.end?.();
    await sleep(500); // stragglers
    const c1 = cpuSeconds(running.child.pid);
    const k1 = coreBusySeconds();
    const g1 = sub!.cpu() + pub!.cpu() + selfCpu();
    const sec = (performance.now() - t0) / 1000;
    const foreign = Math.max(0, (k1[BROKER_CPU]! - k0[BROKER_CPU]! - (c1 - c0)) / sec, (k1[GEN_CPU]! - k0[GEN_CPU]! - (g1 - g0)) / sec);
    const l = await sub!.request({ t: 'latency' }, 'latency', 30_000);
    const sent = done.sent as number;
    const received = (l.received as number) - warmReceived;
    return {
      scenario: 'latency', target: t.id, label: t.label, run, subscribers: subs, ratePerSec: rate,
      sent, expected: sent * subs, received, lost: sent * subs - received, warmMs: timing.warmMs,
      p50Ms: round(l.p50 as number, 3), p99Ms: round(l.p99 as number, 3), p999Ms: round(l.p999 as number, 3), maxMs: round(l.max as number, 3),
      brokerCpuShare: round((c1 - c0) / sec, 3), genCpuShare: round((g1 - g0) / sec, 3), foreignCpuShare: round(foreign, 2),
    };
  });
}

/** Broker RSS idle, and per connection for `n` idle connections each subscribed to its own topic. */
export async function memory(t: Target, n: number, run: number, o: StartOptions = {}): Promise<Row> {
  return withTarget(t, o, ['sub'], async (running, [sub]) => {
    await sleep(1000);
    const idle = rssBytes(running.child.pid);
    const t0 = Date.now();
    await sub!.request({ t: 'open', ep: running.ep, count: n, topic: 'idle/{i}', subscribe: 'idle/{i}', concurrency: 100 }, 'opened', 120_000);
    const connectMs = Date.now() - t0;
    await sleep(2000);
    const loaded = rssBytes(running.child.pid);
    return {
      scenario: 'memory', target: t.id, label: t.label, run, connections: n,
      idleRssMB: round(idle / 2 ** 20, 1), loadedRssMB: round(loaded / 2 ** 20, 1),
      bytesPerConnection: Math.round((loaded - idle) / n), connectMs,
    };
  });
}

/**
 * Slow consumer: `subs` subscribers at a fixed rate, first without a stall, then with
 * subscriber 0 no longer reading. The others' delivery rate and the broker's RSS are compared.
 */
export async function slowConsumer(t: Target, policy: string | null, subs: number, rate: number, payloadBytes: number, run: number, timing: Timing): Promise<Row> {
  const o: StartOptions = policy ? { args: ['--slow-consumer-policy', policy] } : {};
  return withTarget(t, o, ['sub', 'pub'], async (running, [sub, pub]) => {
    const topic = 'bench/slow';
    await sub!.request({ t: 'open', ep: running.ep, count: subs, topic, subscribe: topic, concurrency: 50, step: 1e9 }, 'opened', 60_000);
    await pub!.request({ t: 'open', ep: running.ep, count: 1, topic }, 'opened');
    const phase = async (): Promise<{ othersPerSec: number; rssMaxMB: number; rssEndMB: number }> => {
      const m0 = (await sub!.request({ t: 'mark' }, 'mark')) as unknown as Window['mark'];
      const t0 = performance.now();
      let rssMax = 0;
      const sampler = setInterval(() => {
        rssMax = Math.max(rssMax, rssBytes(running.child.pid));
      }, 250);
      try {
        await pub!.request({ t: 'rate-run', rate, durationMs: timing.measureMs, payloadBytes }, 'rate-done', timing.measureMs + 15_000);
        await sleep(300);
      } finally {
        clearInterval(sampler);
      }
      const m1 = (await sub!.request({ t: 'mark' }, 'mark')) as unknown as Window['mark'];
      const sec = (performance.now() - t0 - 300) / 1000;
      return { othersPerSec: (m1.others - m0.others) / sec, rssMaxMB: rssMax / 2 ** 20, rssEndMB: rssBytes(running.child.pid) / 2 ** 20 };
    };
    const free = await phase();
    await sub!.request({ t: 'stall', index: 0 }, 'stalled');
    const stalled = await phase();
    const stalledMore = await phase(); // a second stalled phase: RSS must not keep growing
    // A paused socket does not see the broker's close; read again to find out whether it was disconnected.
    await sub!.request({ t: 'resume', index: 0 }, 'resumed');
    await sleep(500);
    const mark = (await sub!.request({ t: 'mark' }, 'mark')) as unknown as Window['mark'];
    return {
      scenario: 'slow-consumer', target: t.id, label: policy ? `${t.label} [${policy}]` : t.label, run, policy: policy ?? 'default', subscribers: subs, ratePerSec: rate, payloadBytes,
      othersPerSecFree: Math.round(free.othersPerSec), othersPerSecStalled: Math.round(Math.min(stalled.othersPerSec, stalledMore.othersPerSec)),
      othersRatio: round(Math.min(stalled.othersPerSec, stalledMore.othersPerSec) / free.othersPerSec, 3),
      rssFreeMB: round(free.rssMaxMB, 1), rssStalledMaxMB: round(stalled.rssMaxMB, 1), rssStalled2MaxMB: round(stalledMore.rssMaxMB, 1),
      stalledDisconnected: mark.closed > 0,
    };
  });
}

/** Retained snapshot: time for a `#` subscriber to receive `count` retained topics. */
export async function retainedSnapshot(t: Target, count: number, run: number, o: StartOptions = {}): Promise<Row> {
  return withTarget(t, o, ['sub', 'pub'], async (running, [sub, pub]) => {
    await pub!.request({ t: 'open', ep: running.ep, count: 1, topic: 'bench/sentinel' }, 'opened');
    const filled = await pub!.request({ t: 'retained-fill', count, prefix: 'retained/', payloadBytes: 64, timeoutMs: 120_000 }, 'retained-filled', 130_000);
    await sub!.request({ t: 'open', ep: running.ep, count: 1, topic: 'unused', track: 'retained' }, 'opened');
    const c0 = cpuSeconds(running.child.pid);
    const got = await sub!.request({ t: 'subscribe', filter: '#', target: count, timeoutMs: 60_000 }, 'subscribed', 70_000);
    const c1 = cpuSeconds(running.child.pid);
    return {
      scenario: 'retained', target: t.id, label: t.label, run, retainedTopics: count,
      received: got.n as number, snapshotMs: round(got.ms as number, 1), fillMs: filled.ms as number,
      brokerCpuSec: round(c1 - c0, 2), rssMB: round(rssBytes(running.child.pid) / 2 ** 20, 1),
    };
  });
}

/**
 * History replay (issue 10): `count` messages on 100 history topics, then a subscriber resumes
 * `replay/#` from offset 0 and receives them all, paced by its connection. Its peer in the same
 * broker process is the retained snapshot of as many topics (the other paced stream), so the
 * ratio says what replaying costs next to it. Broker CPU per message for both.
 */
export async function historyReplay(t: Target, count: number, run: number): Promise<Row> {
  const o: StartOptions = {
    args: ['--history-filters', 'replay/#', '--history-max-messages', String(count), '--history-max-bytes', String(1024 * 1024 * 1024)],
  };
  return withTarget(t, o, ['sub', 'pub'], async (running, [sub, pub]) => {
    await pub!.request({ t: 'open', ep: running.ep, count: 1, topic: 'bench/sentinel' }, 'opened');
    const filled = await pub!.request({ t: 'retained-fill', count, prefix: 'replay/t', topics: 100, retain: false, payloadBytes: 64, timeoutMs: 120_000 }, 'retained-filled', 130_000);
    await pub!.request({ t: 'retained-fill', count, prefix: 'retained/', payloadBytes: 64, timeoutMs: 120_000 }, 'retained-filled', 130_000);
    await sub!.request({ t: 'open', ep: running.ep, count: 1, topic: 'unused', track: 'retained' }, 'opened');
    const c0 = cpuSeconds(running.child.pid);
    const replayed = await sub!.request({ t: 'replay', filter: 'replay/#', target: count, timeoutMs: 60_000 }, 'replayed', 70_000);
    const c1 = cpuSeconds(running.child.pid);
    const c2 = cpuSeconds(running.child.pid);
    const snap = await sub!.request({ t: 'subscribe', filter: 'retained/#', target: count, timeoutMs: 60_000 }, 'subscribed', 70_000);
    const c3 = cpuSeconds(running.child.pid);
    const replayPerSec = (replayed.n as number) / ((replayed.ms as number) / 1000);
    const snapshotPerSec = (snap.n as number) / ((snap.ms as number) / 1000);
    return {
      scenario: 'replay', target: t.id, label: t.label, run, messages: count, fillMs: filled.ms as number,
      replayed: replayed.n as number, replayMs: round(replayed.ms as number, 1), replayPerSec: Math.round(replayPerSec),
      replayCpuUsPerMsg: round(((c1 - c0) / (replayed.n as number)) * 1e6, 2),
      snapshotPerSec: Math.round(snapshotPerSec), snapshotCpuUsPerMsg: round(((c3 - c2) / (snap.n as number)) * 1e6, 2),
      replayVsSnapshot: round(replayPerSec / snapshotPerSec, 2),
      rssMB: round(rssBytes(running.child.pid) / 2 ** 20, 1),
    };
  });
}

/** Reads counters from a Topicast broker's /metrics (sum over label sets). */
async function topicastMetrics(httpPort: number, names: string[]): Promise<Record<string, number>> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/metrics`);
  const text = await res.text();
  const out: Record<string, number> = {};
  for (const name of names) {
    out[name] = 0;
    for (const line of text.split('\n')) {
      if (line.startsWith(`${name} `) || line.startsWith(`${name}{`)) out[name] += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return out;
}

/**
 * Flood (issue 20): QoS 0 at the rate the readers keep up with, the publisher held to the
 * slowest subscriber (credit window), then stopped; every subscriber must have received every
 * message. `pubs` = 1: fan-out 1 → `subs` on one topic; `pubs` > 1: fan-in to one `+` subscriber,
 * `perWrite` messages per publisher write. Reports the delivered fraction (received ÷ sent ×
 * subscribers, after the stream settled) and, for Topicast, the slow-consumer counters of /metrics.
 */
export async function flood(t: Target, pubs: number, subs: number, perWrite: number, run: number, timing: Timing): Promise<Row> {
  const fanin = pubs > 1;
  // Windows far above the 1 MiB outbox bound (40,000 × 80-byte packets ≈ 3 MiB per subscriber): what a
  // reader that keeps up has not read yet sits in the kernel's socket buffers, not in the broker's queue.
  const windowMsgs = fanin ? 50_000 : Math.max(100, Math.round(4_000_000 / subs));
  return withTarget(t, {}, ['sub', 'pub'], async (running, [sub, pub]) => {
    const subTopic = fanin ? 'flood/+/temp' : 'flood/all';
    await sub!.request({ t: 'open', ep: running.ep, count: subs, topic: subTopic, subscribe: subTopic, step: Math.ceil(windowMsgs / 4), concurrency: 50 }, 'opened', 60_000);
    await pub!.request({ t: 'open', ep: running.ep, count: pubs, topic: fanin ? 'flood/{i}/temp' : 'flood/all', concurrency: 50 }, 'opened', 60_000);
    linkCredit(sub!, pub!);
    const c0 = cpuSeconds(running.child.pid);
    const t0 = performance.now();
    await pub!.request({ t: 'credit-run', window: windowMsgs, payloadBytes: 64, maxBatch: fanin ? 256 : 64, perWrite }, 'running');
    await sleep(timing.warmMs + timing.measureMs);
    const stopped = await pub!.request({ t: 'stop' }, 'stopped');
    const sent = stopped.sent as number;
    const expected = sent * subs;
    // Settle: until everything arrived, or nothing more arrived for five seconds (on a loaded
    // machine a process can be off its core for a second).
    let mark = (await sub!.request({ t: 'mark' }, 'mark')) as unknown as Window['mark'];
    for (let still = 0; mark.total < expected && still < 50; ) {
      await sleep(100);
      const next = (await sub!.request({ t: 'mark' }, 'mark')) as unknown as Window['mark'];
      still = next.total === mark.total ? still + 1 : 0;
      mark = next;
    }
    const sec = (performance.now() - t0) / 1000;
    const brokerCpu = cpuSeconds(running.child.pid) - c0;
    const counters = running.httpPort !== undefined
      ? await topicastMetrics(running.httpPort, ['topicast_conflated_total', 'topicast_dropped_total', 'topicast_slow_consumer_disconnects_total'])
      : undefined;
    return {
      scenario: fanin ? 'flood-fanin' : 'flood', target: t.id, label: t.label, run, publishers: pubs, subscribers: subs, perWrite, windowMsgs,
      sent, expected, delivered: mark.total, deliveredFraction: expected > 0 ? round(mark.total / expected, 4) : null,
      conflated: counters?.topicast_conflated_total ?? null, dropped: counters?.topicast_dropped_total ?? null,
      slowDisconnects: counters?.topicast_slow_consumer_disconnects_total ?? null, closed: mark.closed,
      deliveriesPerSec: Math.round(mark.total / sec), cpuSecPerMillion: mark.total > 0 ? round(brokerCpu / (mark.total / 1e6), 3) : null,
    };
  });
}
