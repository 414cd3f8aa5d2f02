/** Seconds since boot from /proc/uptime (whole seconds: finer is noise for a dashboard). */
import type { Reader, ReaderOptions, Sample } from '../types.js';
import { readLine } from './fs.js';

/** @example uptimeReader().read(Date.now()) // [{ path: 'uptime', value: 86400, unit: 's' }] */
export function uptimeReader(options: ReaderOptions = {}): Reader {
  const root = options.root ?? '/';
  return {
    name: 'uptime',
    read(): Sample[] {
      const line = readLine(root, 'proc/uptime');
      const seconds = line === undefined ? NaN : Number(line.split(/\s+/)[0]);
      return Number.isFinite(seconds) ? [{ path: 'uptime', value: Math.floor(seconds), unit: 's' }] : [];
    },
  };
}
