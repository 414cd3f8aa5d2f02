/**
 * Bytes per idle subscribed MQTT TCP connection (issue 20): Topicast, a bare Node `net` server
 * holding the same sockets (the floor in Node, peer/bare-net.ts) and Mosquitto, in one run.
 *
 *   node bench/dist/conn-memory.js [--connections 5000] [--runs 1] [--settle 2] [--no-heap]
 *
 * Each target is a fresh process pinned to the broker core; the generator (gen.ts, pinned to the
 * other) opens the connections, each MQTT 3.1.1 with keepalive 0, subscribed to its own topic
 * `idle/<i>`. Bytes per connection = (VmRSS with them − VmRSS before) ÷ connections, where
 * "before" already holds 20 such connections: one-time costs of the first connections (lazily
 * loaded code, caches) are not spread over the others. Then, unless --no-heap, Topicast once more under
 * `--heapsnapshot-signal`: a heap snapshot before and after the connections, and the difference
 * per connection by constructor (V8 self size; a snapshot starts with a full GC), largest first.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Gen } from './control.js';
import { GEN_CPU, target } from './peers.js';
import { pinSelf, rssBytes, sleep, waitFor } from './proc.js';
import { round } from './scenarios.js';

const WARM = 20;

/** RSS per connection for one target: `n` connections opened after `WARM` warm-up ones. */
async function rssPerConnection(id: string, n: number): Promise<{ bytes: number; beforeMiB: number; afterMiB: number; ms: number }> {
  const running = await target(id).start();
  const sub = Gen.start('sub', GEN_CPU);
  try {
    await sub.request({ t: 'open', ep: running.ep, count: WARM, topic: 'warm/{i}', subscribe: 'warm/{i}', concurrency: 10 }, 'opened', 60_000);
    await sleep(1500);
    const before = rssBytes(running.child.pid);
    const t0 = Date.now();
    await sub.request({ t: 'open', ep: running.ep, count: n, topic: 'idle/{i}', subscribe: 'idle/{i}', concurrency: 100 }, 'opened', 120_000);
    const ms = Date.now() - t0;
    await sleep(settleSec * 1000);
    const after = rssBytes(running.child.pid);
    return { bytes: Math.round((after - before) / n), beforeMiB: round(before / 2 ** 20, 1), afterMiB: round(after / 2 ** 20, 1), ms };
  } finally {
    await sub.close();
    await running.stop();
  }
}

const argv = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] !== undefined ? argv[i + 1]! : fallback;
};
const connections = Number(opt('connections', '5000'));
const runs = Number(opt('runs', '1'));
/** Seconds between the last connection and the RSS reading (V8 shrinks a grown young generation after a while of quiet). */
const settleSec = Number(opt('settle', '2'));

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
  nodes: number[];
  strings: string[];
}

/** Self size summed by "type name" over a heap snapshot file. */
function bySelfSize(file: string): Map<string, { bytes: number; count: number }> {
  const s = JSON.parse(readFileSync(file, 'utf8')) as Snapshot;
  const fields = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const stride = fields.length;
  const [fType, fName, fSize] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const out = new Map<string, { bytes: number; count: number }>();
  for (let i = 0; i < s.nodes.length; i += stride) {
    const type = types[s.nodes[i + fType!]!]!;
    const name = type === 'object' || type === 'closure' || type === 'native' ? s.strings[s.nodes[i + fName!]!]! : `(${type})`;
    const key = type === 'closure' ? `closure ${name || '(anonymous)'}` : name;
    const e = out.get(key) ?? { bytes: 0, count: 0 };
    e.bytes += s.nodes[i + fSize!]!;
    e.count++;
    out.set(key, e);
  }
  return out;
}

/** Heap snapshot difference per connection for one Node target: constructor → [bytes, objects]. */
async function heapPerConnection(id: string, n: number): Promise<{ total: number; rows: Map<string, [number, number]> }> {
  const dir = mkdtempSync(join(tmpdir(), 'topicast-heap-'));
  const t = target(id);
  const running = await t.start({ nodeArgs: ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`] });
  const sub = Gen.start('sub', GEN_CPU);
  const snap = async (count: number): Promise<string> => {
    process.kill(running.child.pid, 'SIGUSR2');
    let file = '';
    await waitFor('heap snapshot', () => {
      const files = readdirSync(dir).filter((f) => f.endsWith('.heapsnapshot')).sort();
      if (files.length < count) return false;
      file = join(dir, files[count - 1]!);
      // Written when its size stops changing.
      const size = readFileSync(file).length;
      return size > 0 && readFileSync(file).length === size && readFileSync(file, 'utf8').trimEnd().endsWith('}');
    }, 120_000, 500);
    return file;
  };
  try {
    await sub.request({ t: 'open', ep: running.ep, count: WARM, topic: 'warm/{i}', subscribe: 'warm/{i}', concurrency: 10 }, 'opened', 60_000);
    await sleep(1000);
    const before = bySelfSize(await snap(1));
    await sub.request({ t: 'open', ep: running.ep, count: n, topic: 'idle/{i}', subscribe: 'idle/{i}', concurrency: 100 }, 'opened', 120_000);
    await sleep(2000);
    const after = bySelfSize(await snap(2));
    const rows = new Map<string, [number, number]>();
    let total = 0;
    for (const k of new Set([...after.keys(), ...before.keys()])) {
      const a = after.get(k) ?? { bytes: 0, count: 0 };
      const b = before.get(k) ?? { bytes: 0, count: 0 };
      const bytes = (a.bytes - b.bytes) / n;
      total += bytes;
      rows.set(k, [bytes, (a.count - b.count) / n]);
    }
    return { total, rows };
  } finally {
    sub.onFloor = () => undefined;
    await sub.close();
    await running.stop();
    // BENCH_KEEP_HEAP=1 keeps the snapshots for a retainer analysis in DevTools.
    if (process.env.BENCH_KEEP_HEAP) console.log(`${id}: heap snapshots kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  pinSelf(GEN_CPU);
  const ids = ['topicast-mqtt', 'bare-net', 'mosquitto-tcp'];
  const results: Record<string, number[]> = {};
  for (let run = 1; run <= runs; run++) {
    for (const id of ids) {
      const t = target(id);
      const why = t.available();
      if (why) {
        console.log(`${id}: skipped (${why})`);
        continue;
      }
      const row = await rssPerConnection(id, connections);
      (results[id] ??= []).push(row.bytes);
      console.log(`${t.label}: ${row.bytes} B per connection (RSS ${row.beforeMiB} → ${row.afterMiB} MiB, ${connections} connections in ${row.ms} ms; run ${run})`);
    }
  }
  const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)]!;
  const topicast = results['topicast-mqtt'];
  const floor = results['bare-net'];
  if (topicast && floor) console.log(`\nTopicast MQTT TCP − bare Node net: ${median(topicast) - median(floor)} B per connection (median of ${runs})`);
  if (argv.includes('--no-heap')) return;
  const ours = await heapPerConnection('topicast-mqtt', connections);
  const bare = await heapPerConnection('bare-net', connections);
  console.log(`\nV8 heap per idle subscribed connection (${connections} connections; heap snapshot after − before, ÷ ${connections}; a snapshot starts with a full GC):`);
  console.log(`Topicast MQTT TCP ${Math.round(ours.total)} B, bare Node net ${Math.round(bare.total)} B\n`);
  console.log('| constructor | Topicast bytes | objects | bare net bytes | objects |\n|---|---:|---:|---:|---:|');
  const keys = [...new Set([...ours.rows.keys(), ...bare.rows.keys()])]
    .map((k) => [k, ours.rows.get(k) ?? [0, 0], bare.rows.get(k) ?? [0, 0]] as const)
    .filter(([, o, b]) => Math.abs(o[0]) >= 8 || Math.abs(b[0]) >= 8)
    .sort((x, y) => y[1][0] - x[1][0]);
  for (const [k, o, b] of keys.slice(0, 40)) console.log(`| ${k} | ${Math.round(o[0])} | ${round(o[1], 2)} | ${Math.round(b[0])} | ${round(b[1], 2)} |`);
}

main().then(
  () => process.exit(0),
  (err: Error) => {
    console.error(`conn-memory: ${err.message}`);
    process.exit(1);
  },
);
