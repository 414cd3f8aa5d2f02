/**
 * Memory and swap from /proc/meminfo, in bytes and %.
 * Used memory is total − MemAvailable (what applications could still get without swapping), as
 * `free` and htop report it; kernels before 3.14 lack MemAvailable, so MemFree + Buffers + Cached
 * stands in there.
 */
import type { Reader, ReaderOptions, Sample } from '../types.js';
import { readText, round } from './fs.js';

function parseMeminfo(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([^:]+):\s+(\d+)(?:\s+kB)?/.exec(line);
    if (m) out.set(m[1]!, Number(m[2]) * (line.endsWith('kB') ? 1024 : 1));
  }
  return out;
}

/** @example memoryReader().read(Date.now()) // memory/total, memory/available, memory/used, memory/usage, swap/... */
export function memoryReader(options: ReaderOptions = {}): Reader {
  const root = options.root ?? '/';
  return {
    name: 'memory',
    read(): Sample[] {
      const text = readText(root, 'proc/meminfo');
      if (text === undefined) return [];
      const m = parseMeminfo(text);
      const total = m.get('MemTotal');
      if (!total) return [];
      const available = m.get('MemAvailable') ?? (m.get('MemFree') ?? 0) + (m.get('Buffers') ?? 0) + (m.get('Cached') ?? 0);
      const used = Math.max(total - available, 0);
      const out: Sample[] = [
        { path: 'memory/total', value: total, unit: 'B' },
        { path: 'memory/available', value: available, unit: 'B' },
        { path: 'memory/used', value: used, unit: 'B' },
        { path: 'memory/usage', value: round((100 * used) / total, 1), unit: '%' },
      ];
      const swapTotal = m.get('SwapTotal');
      const swapFree = m.get('SwapFree');
      if (swapTotal !== undefined && swapFree !== undefined) {
        const swapUsed = Math.max(swapTotal - swapFree, 0);
        out.push({ path: 'swap/total', value: swapTotal, unit: 'B' }, { path: 'swap/used', value: swapUsed, unit: 'B' });
        if (swapTotal > 0) out.push({ path: 'swap/usage', value: round((100 * swapUsed) / swapTotal, 1), unit: '%' });
      }
      return out;
    },
  };
}
