/**
 * CPU usage from /proc/stat (total and per core, in %), and per-core frequency from cpufreq (MHz).
 *
 * Usage is a rate: busy jiffies over all jiffies between two reads, so the first read returns
 * frequencies only. Busy = user + nice + system + irq + softirq + steal (guest time is already
 * inside user and nice); idle = idle + iowait. A core that goes offline simply stops reporting.
 */
import type { Reader, ReaderOptions, Sample } from '../types.js';
import { readNumber, readText, round } from './fs.js';

interface Times {
  busy: number;
  total: number;
}

function parseStat(text: string): Map<string, Times> {
  const out = new Map<string, Times>();
  for (const line of text.split('\n')) {
    if (!line.startsWith('cpu')) continue;
    const f = line.trim().split(/\s+/);
    const name = f[0]!;
    const n = f.slice(1, 9).map(Number);
    if (n.length < 4 || n.some((x) => !Number.isFinite(x))) continue;
    const [user = 0, nice = 0, system = 0, idle = 0, iowait = 0, irq = 0, softirq = 0, steal = 0] = n;
    const busy = user + nice + system + irq + softirq + steal;
    out.set(name, { busy, total: busy + idle + iowait });
  }
  return out;
}

/**
 * @example
 * const cpu = cpuReader({ root: '/' }); cpu.read(0); // later: [{ path: 'cpu/usage', value: 12.5, unit: '%' }, ...]
 */
export function cpuReader(options: ReaderOptions = {}): Reader {
  const root = options.root ?? '/';
  let previous: Map<string, Times> | undefined;
  return {
    name: 'cpu',
    read(): Sample[] {
      const samples: Sample[] = [];
      const text = readText(root, 'proc/stat');
      const current = text === undefined ? undefined : parseStat(text);
      if (current && previous) {
        for (const [name, now] of current) {
          const before = previous.get(name);
          if (!before) continue;
          const total = now.total - before.total;
          if (total <= 0) continue; // no tick elapsed (reads too close together) or counters reset
          const busy = Math.min(Math.max(now.busy - before.busy, 0), total);
          const path = name === 'cpu' ? 'cpu/usage' : `cpu/${name.slice(3)}/usage`;
          samples.push({ path, value: round((100 * busy) / total, 1), unit: '%' });
        }
      }
      if (current) previous = current;
      if (current) {
        for (const name of current.keys()) {
          if (name === 'cpu') continue;
          const khz = readNumber(root, `sys/devices/system/cpu/${name}/cpufreq/scaling_cur_freq`);
          if (khz !== undefined) samples.push({ path: `cpu/${name.slice(3)}/frequency`, value: round(khz / 1000, 0), unit: 'MHz' });
        }
      }
      return samples;
    },
  };
}
