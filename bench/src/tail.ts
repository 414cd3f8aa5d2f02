/**
 * The latency tail (issue 20): p99 and p99.9 at a fixed rate × 100 subscribers, Topicast
 * next to raw uWS deferred, runs interleaved, with the evidence for where the tail comes from.
 *
 *   node bench/dist/tail.js [--rates 1000,20000] [--runs 3] [--variants topicast,topicast-semi32] [--warm-ms 2000] [--measure-ms 5000] [--prof]
 *   (also `npm run bench -- --tail ...`)
 *
 * Each run warms up at the same rate for --warm-ms (default 2 s; the latency scenario does the same
 * with its warm-up time), then measures. Every Topicast run is under `node --trace-gc`: the GC events
 * the broker logged during the measured window are counted (scavenges, mark-compacts, their pauses). Variants:
 *   topicast         the broker as shipped;
 *   topicast-semi32  the same with `--max-semi-space-size=32` (MB): far fewer scavenges, so
 *                    if the young-generation GC is the tail, this variant's p99 drops.
 * `--prof` also profiles Topicast at the first rate (node --cpu-prof) and writes the top
 * self-time functions to bench/results/prof/top-latency-<rate>.txt.
 * Output: a Markdown table on stdout and bench/results/prof/tail-<date>.json (not committed:
 * latency on a shared machine moves with its load; the `other load` column says how much).
 */
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadavg } from 'node:os';
import { GEN_CPU, ROOT, target } from './peers.js';
import { pinSelf } from './proc.js';
import { latency, type Row } from './scenarios.js';
import { formatTop, newestProfile, topSelfTime } from './cpuprof.js';

interface Variant {
  id: string;
  target: string;
  nodeArgs: string[];
}

const VARIANTS: Record<string, Variant> = {
  'uws-deferred': { id: 'uws-deferred', target: 'uws-deferred', nodeArgs: [] },
  topicast: { id: 'topicast', target: 'topicast', nodeArgs: ['--trace-gc'] },
  'topicast-semi32': { id: 'topicast-semi32', target: 'topicast', nodeArgs: ['--trace-gc', '--max-semi-space-size=32'] },
  // With TOPICAST_BENCH_BASE=<another build's broker/dist/main.js>: that build, interleaved with this one.
  'topicast-base': { id: 'topicast-base', target: 'topicast-base', nodeArgs: ['--trace-gc'] },
};

const GC_LINE = /ms: (Scavenge|Mark-Compact|Mark-sweep|Minor Mark-Compact|Minor Mark-Sweep)\b.*?MB, ([\d.]+) \/ ([\d.]+) ms/;

export interface GcTally {
  scavenges: number;
  majors: number;
  pauseMs: number;
  maxPauseMs: number;
}

/** Counts the GC lines of `--trace-gc` output that arrive while `on()` is true. */
export function gcCounter(): { onLine: (l: string) => void; measuring: { on: boolean }; tally: GcTally } {
  const tally: GcTally = { scavenges: 0, majors: 0, pauseMs: 0, maxPauseMs: 0 };
  const measuring = { on: false };
  return {
    measuring,
    tally,
    onLine(line: string) {
      if (!measuring.on) return;
      const m = GC_LINE.exec(line);
      if (!m) return;
      if (m[1] === 'Scavenge' || m[1]!.startsWith('Minor')) tally.scavenges++;
      else tally.majors++;
      const pause = Number(m[2]);
      tally.pauseMs += pause;
      tally.maxPauseMs = Math.max(tally.maxPauseMs, pause);
    },
  };
}

export async function tailRun(v: Variant, rate: number, run: number, measureMs: number, extraNodeArgs: string[] = [], warmMs = 2000): Promise<Row> {
  const gc = gcCounter();
  const row = await latency(target(v.target), 100, rate, run, { warmMs, measureMs }, { nodeArgs: [...v.nodeArgs, ...extraNodeArgs], onLine: gc.onLine }, {
    start: () => (gc.measuring.on = true),
    end: () => (gc.measuring.on = false),
  });
  const sec = measureMs / 1000;
  return {
    ...row, scenario: `tail-${rate}`, target: v.id, label: v.id,
    ...(v.nodeArgs.includes('--trace-gc') && {
      scavengesPerSec: Math.round((gc.tally.scavenges / sec) * 10) / 10, majorGcs: gc.tally.majors,
      gcPauseMsPerSec: Math.round((gc.tally.pauseMs / sec) * 100) / 100, gcMaxPauseMs: gc.tally.maxPauseMs,
    }),
  };
}

function table(rows: Row[]): string {
  const cols: [string, string][] = [['scenario', 'rate'], ['label', 'target'], ['run', 'run'], ['p50Ms', 'p50 ms'], ['p99Ms', 'p99 ms'], ['p999Ms', 'p99.9 ms'], ['maxMs', 'max ms'], ['lost', 'lost'], ['brokerCpuShare', 'broker CPU'], ['genCpuShare', 'generator CPU'], ['foreignCpuShare', 'other load'], ['scavengesPerSec', 'scavenges/s'], ['gcPauseMsPerSec', 'GC pause ms/s'], ['gcMaxPauseMs', 'max GC pause ms'], ['majorGcs', 'major GCs']];
  const head = `| ${cols.map((c) => c[1]).join(' | ')} |\n|${cols.map(() => '---').join('|')}|\n`;
  return head + rows.map((r) => `| ${cols.map(([k]) => (r[k] === undefined || r[k] === null ? '–' : String(r[k]))).join(' | ')} |`).join('\n') + '\n';
}

/** p99 (and p99.9) of each Topicast variant ÷ raw uWS deferred's in the same run. */
function ratios(rows: Row[]): string {
  const lines: string[] = [];
  for (const r of rows) {
    if (r.target === 'uws-deferred') continue;
    const u = rows.find((x) => x.target === 'uws-deferred' && x.scenario === r.scenario && x.run === r.run);
    if (!u) continue;
    const q = (k: string): string => (Number(u[k]) > 0 ? (Number(r[k]) / Number(u[k])).toFixed(2) : '–');
    lines.push(`${r.scenario} run ${r.run}: ${r.target} p99 ${q('p99Ms')}× and p99.9 ${q('p999Ms')}× raw uWS deferred`);
  }
  return lines.join('\n');
}

export async function tailMain(argv: string[]): Promise<void> {
  const opt = (name: string, dflt: string): string => (argv.includes(name) ? argv[argv.indexOf(name) + 1] ?? dflt : dflt);
  const rates = opt('--rates', '1000,20000').split(',').map(Number);
  const runs = Number(opt('--runs', '3'));
  const variants = ['uws-deferred', ...opt('--variants', 'topicast').split(',')].map((id) => {
    const v = VARIANTS[id];
    if (!v) throw new Error(`unknown variant ${id}; known: ${Object.keys(VARIANTS).join(', ')}`);
    return v;
  });
  const measureMs = Number(opt('--measure-ms', '5000'));
  const warmMs = Number(opt('--warm-ms', '2000'));
  pinSelf(GEN_CPU);
  const load0 = loadavg().map((x) => x.toFixed(2));
  const rows: Row[] = [];
  const dir = join(ROOT, 'bench/results/prof');
  mkdirSync(dir, { recursive: true });
  if (argv.includes('--prof')) {
    for (const f of readdirSync(dir)) if (f.endsWith('.cpuprofile')) rmSync(join(dir, f));
    const row = await tailRun(VARIANTS.topicast!, rates[0]!, 0, measureMs, ['--cpu-prof', '--cpu-prof-dir', dir], warmMs);
    const file = newestProfile(dir);
    if (file) {
      const text = `Topicast broker, latency at ${rates[0]} msg/s × 100 subscribers (p99 ${row.p99Ms} ms under the profiler), ${file.slice(ROOT.length)}\n${formatTop(topSelfTime(file, 25))}\n`;
      writeFileSync(join(dir, `top-latency-${rates[0]}.txt`), text);
      console.log(text);
    }
  }
  for (let run = 1; run <= runs; run++) {
    for (const rate of rates) {
      for (const v of variants) {
        const r = await tailRun(v, rate, run, measureMs, [], warmMs);
        rows.push(r);
        console.log(`${r.scenario} ${r.label} run ${run}: p50 ${r.p50Ms} p99 ${r.p99Ms} p99.9 ${r.p999Ms} ms, other load ${r.foreignCpuShare}${r.scavengesPerSec !== undefined ? `, ${r.scavengesPerSec} scavenges/s, GC ${r.gcPauseMsPerSec} ms/s (max ${r.gcMaxPauseMs} ms)` : ''}`);
      }
    }
  }
  const load1 = loadavg().map((x) => x.toFixed(2));
  const md = `${new Date().toISOString()} · load average ${load0.join(' / ')} → ${load1.join(' / ')}\n\n${table(rows)}\n${ratios(rows)}\n`;
  console.log(`\n${md}`);
  writeFileSync(join(dir, `tail-${new Date().toISOString().slice(0, 19).replace(/:/g, '')}.json`), JSON.stringify({ load: [load0, load1], rows }, null, 2) + '\n');
}

if (process.argv[1]?.endsWith('tail.js')) {
  tailMain(process.argv.slice(2)).then(
    () => process.exit(0),
    (err: Error) => {
      console.error(`tail: ${err.message}`);
      process.exit(1);
    },
  );
}
