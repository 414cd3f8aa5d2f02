/** Load averages over 1, 5 and 15 minutes from /proc/loadavg (runnable + uninterruptible tasks, no unit). */
import type { Reader, ReaderOptions, Sample } from '../types.js';
import { readLine } from './fs.js';

/** @example loadReader().read(Date.now()) // [{ path: 'load/1m', value: 0.42, unit: '' }, ...] */
export function loadReader(options: ReaderOptions = {}): Reader {
  const root = options.root ?? '/';
  return {
    name: 'load',
    read(): Sample[] {
      const line = readLine(root, 'proc/loadavg');
      if (line === undefined) return [];
      const f = line.split(/\s+/).slice(0, 3).map(Number);
      const out: Sample[] = [];
      const names = ['load/1m', 'load/5m', 'load/15m'];
      f.forEach((v, i) => {
        if (Number.isFinite(v)) out.push({ path: names[i]!, value: v, unit: '' });
      });
      return out;
    },
  };
}
