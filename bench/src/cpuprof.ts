/**
 * A tiny reader of V8 .cpuprofile files (node --cpu-prof): self time per function,
 * summed over samples. The sample at index i is charged the time up to the next
 * sample (timeDeltas[i + 1]), which is how DevTools attributes it.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { basename, join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  /** Monotonic clock, µs (the clock of process.hrtime). */
  startTime: number;
}

export interface SelfTime {
  fn: string;
  where: string;
  selfMs: number;
  percent: number;
}

/** `window`: only samples taken between these two monotonic times (µs, process.hrtime's clock), e.g. a scenario's measured window. */
export function topSelfTime(file: string, n = 15, window?: { fromUs: number; toUs: number }): { total: number; top: SelfTime[] } {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((x) => [x.id, x]));
  const self = new Map<string, { fn: string; where: string; us: number }>();
  let totalUs = 0;
  let at = p.startTime;
  for (let i = 0; i < p.samples.length; i++) {
    at += p.timeDeltas[i] ?? 0;
    if (window && (at < window.fromUs || at > window.toUs)) continue;
    const node = byId.get(p.samples[i]!);
    if (!node) continue;
    const us = p.timeDeltas[i + 1] ?? 0;
    const f = node.callFrame;
    if (f.functionName === '(idle)') continue;
    totalUs += us;
    const where = f.url ? `${basename(f.url)}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName}@${where}`;
    const e = self.get(key) ?? { fn: f.functionName || '(anonymous)', where, us: 0 };
    e.us += us;
    self.set(key, e);
  }
  const top = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, n)
    .map((e) => ({ fn: e.fn, where: e.where, selfMs: Math.round(e.us / 100) / 10, percent: Math.round((1000 * e.us) / Math.max(1, totalUs)) / 10 }));
  return { total: Math.round(totalUs / 1000), top };
}

/** The newest .cpuprofile in `dir`, or null. */
export function newestProfile(dir: string): string | null {
  let best: { f: string; m: number } | null = null;
  for (const f of readdirSync(dir)) {
    if (!f.endsWith('.cpuprofile')) continue;
    const m = statSync(join(dir, f)).mtimeMs;
    if (!best || m > best.m) best = { f: join(dir, f), m };
  }
  return best?.f ?? null;
}

export function formatTop(t: { total: number; top: SelfTime[] }): string {
  const lines = [`self time of ${t.total} ms busy (idle excluded)`, '  self ms      %  function (file:line)'];
  for (const e of t.top) lines.push(`${e.selfMs.toFixed(1).padStart(8)} ${e.percent.toFixed(1).padStart(6)}  ${e.fn} ${e.where ? `(${e.where})` : ''}`);
  return lines.join('\n');
}
