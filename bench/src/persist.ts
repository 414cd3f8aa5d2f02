/**
 * What persistence (`--data DIR`, broker/STORAGE.md) costs, Topicast against itself in the same run:
 *
 * - `persist-cost`: MQTT 3.1.1 QoS 1 publishes, `window` outstanding, 64-byte payloads, with and
 *   without `--data` on a fresh temporary directory (same disk as the repository, not tmpfs).
 *   Workload `retained`: retained publishes over 10,000 topics (each one a durable retained write).
 *   Workload `session`: plain publishes to one persistent subscriber (clean session 0, QoS 1, online,
 *   acknowledging): each publish is stored in its session, and removed again on its PUBACK.
 *   Broker CPU per publish from /proc over the measured window, publishes acknowledged per second,
 *   and the publisher's send → PUBACK latency (persistence holds the PUBACK until the fsync).
 * - `restart`: time from spawning the broker to its "listening" line with N retained topics in
 *   `--data` (written beforehand by the store itself), the broker's CPU seconds and RSS at that
 *   moment, and the store's own load time; a broker without `--data` is the baseline (process
 *   start and module loading).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Gen } from './control.js';
import { cpuSeconds, coreBusySeconds, freePort, rssBytes, sleep, spawnChild, waitFor } from './proc.js';
import { BROKER_CPU, BROKER_MAIN, GEN_CPU, ROOT, type Target } from './peers.js';
import { round, type Row, type Timing } from './scenarios.js';

const PERSIST_GEN = fileURLToPath(new URL('./persist-gen.js', import.meta.url));

/** Not tmpfs: /tmp is on the root disk here; `TOPICAST_BENCH_DATA` picks another parent directory. */
function dataDir(): string {
  return mkdtempSync(join(process.env.TOPICAST_BENCH_DATA ?? tmpdir(), 'topicast-bench-data-'));
}

interface Variant {
  cpuUsPerPublish: number | null;
  publishesPerSec: number;
  p50Ms: number;
  p99Ms: number;
  brokerCpuShare: number;
  foreignCpuShare: number;
}

async function measure(t: Target, workload: 'retained' | 'session', data: boolean, window: number, timing: Timing): Promise<Variant> {
  const dir = data ? dataDir() : undefined;
  const running = await t.start({ args: dir ? ['--data', dir] : [] });
  const gen = new Gen(spawnChild(process.execPath, [PERSIST_GEN], { cpu: GEN_CPU, ipc: true }), 'persist');
  try {
    const port = running.ep.port;
    await gen.request({ t: 'open', port, workload } as never, 'opened', 30_000);
    await gen.request({ t: 'run', window, payloadBytes: 64, topics: 10_000 } as never, 'running');
    await sleep(timing.warmMs);
    await gen.request({ t: 'record' } as never, 'recording');
    const c0 = cpuSeconds(running.child.pid);
    const k0 = coreBusySeconds();
    const g0 = gen.cpu();
    const t0 = performance.now();
    await sleep(timing.measureMs);
    const m = await gen.request({ t: 'mark' } as never, 'mark');
    const sec = (performance.now() - t0) / 1000;
    const cpu = cpuSeconds(running.child.pid) - c0;
    const k1 = coreBusySeconds();
    const g = gen.cpu() - g0;
    await gen.request({ t: 'stop' } as never, 'stopped', 30_000);
    const acked = m.acked as number;
    const foreign = Math.max(0, (k1[BROKER_CPU]! - k0[BROKER_CPU]! - cpu) / sec, (k1[GEN_CPU]! - k0[GEN_CPU]! - g) / sec);
    return {
      cpuUsPerPublish: acked > 0 ? round((cpu / acked) * 1e6, 2) : null,
      publishesPerSec: Math.round(acked / sec),
      p50Ms: round(m.p50Ms as number, 3),
      p99Ms: round(m.p99Ms as number, 3),
      brokerCpuShare: round(cpu / sec, 2),
      foreignCpuShare: round(foreign, 2),
    };
  } finally {
    await gen.close();
    await running.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

/** One workload without and with `--data`, back to back; the row holds both and their ratios. */
export async function persistCost(t: Target, workload: 'retained' | 'session', run: number, timing: Timing): Promise<Row> {
  const window = 100;
  const off = await measure(t, workload, false, window, timing);
  const on = await measure(t, workload, true, window, timing);
  const ratio = (a: number | null, b: number | null): number | null => (a !== null && b !== null && b > 0 ? round(a / b, 2) : null);
  return {
    scenario: 'persist-cost', target: t.id, run, window,
    label: workload === 'retained' ? 'retained QoS 1 publishes (10,000 topics)' : 'QoS 1 publishes to a persistent session (online, acking)',
    workload,
    offCpuUsPerPublish: off.cpuUsPerPublish, onCpuUsPerPublish: on.cpuUsPerPublish, cpuRatio: ratio(on.cpuUsPerPublish, off.cpuUsPerPublish),
    offPublishesPerSec: off.publishesPerSec, onPublishesPerSec: on.publishesPerSec,
    offP50Ms: off.p50Ms, onP50Ms: on.p50Ms, offP99Ms: off.p99Ms, onP99Ms: on.p99Ms,
    offBrokerCpuShare: off.brokerCpuShare, onBrokerCpuShare: on.brokerCpuShare,
    foreignCpuShare: Math.max(off.foreignCpuShare, on.foreignCpuShare),
  };
}

/** Writes `count` retained topics into `dir/retained` with the broker's own store (as a broker would have). */
async function fillRetained(dir: string, count: number): Promise<void> {
  const dist = join(ROOT, 'broker/dist');
  const { openLogRetainedStore } = (await import(pathToFileURL(join(dist, 'store/log.js')).href)) as typeof import('@topicast/broker');
  const { createMessage } = (await import(pathToFileURL(join(dist, 'core/message.js')).href)) as typeof import('@topicast/broker');
  const store = await openLogRetainedStore(join(dir, 'retained'));
  const payload = Buffer.from('21.5 degC');
  let last: Promise<void> = Promise.resolve();
  for (let i = 0; i < count; i++) {
    last = store.set(createMessage(`devices/dev-${String(Math.floor(i / 10)).padStart(6, '0')}/sensor/${i % 10}`, payload, true, undefined, 1));
    if (i % 10_000 === 9_999) await last; // bounded batches: memory stays flat and the log is written as a broker would
  }
  await last;
  await store.close();
}

/** Broker start-up with `count` retained topics in `--data` (count 0 without `--data`: the baseline). */
export async function restartTime(t: Target, count: number, run: number): Promise<Row> {
  const dir = count > 0 ? dataDir() : undefined;
  try {
    if (dir) await fillRetained(dir, count);
    const port = await freePort();
    const t0 = performance.now();
    const child = spawnChild(process.execPath, [
      BROKER_MAIN, '--host', '127.0.0.1', '--port', String(port), '--mqtt-port', '0', '--log-level', 'info',
      ...(dir ? ['--data', dir] : []),
    ], { cpu: BROKER_CPU, cwd: ROOT });
    try {
      await waitFor(`topicast listening (${child.logs.slice(-2).join(' | ')})`, () => {
        if (child.proc.exitCode !== null) throw new Error(`topicast exited: ${child.logs.join(' | ')}`);
        return child.logs.some((l) => l.includes('"msg":"listening"'));
      }, 120_000, 5);
      const startMs = performance.now() - t0;
      const cpuSec = cpuSeconds(child.pid);
      const rss = rssBytes(child.pid);
      const loaded = child.logs.find((l) => l.includes('"retained store loaded"'));
      const loadMs = loaded ? (JSON.parse(loaded) as { loadMs: number }).loadMs : null;
      return {
        scenario: 'restart', target: t.id, run, retainedTopics: count,
        label: count > 0 ? `${count.toLocaleString('en-US')} retained topics, --data` : 'no --data (baseline)',
        startMs: round(startMs, 0), cpuSec: round(cpuSec, 2), rssMB: round(rss / 2 ** 20, 1), storeLoadMs: loadMs === null ? null : round(loadMs, 0),
      };
    } finally {
      await child.stop(5000);
    }
  } finally {
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}
