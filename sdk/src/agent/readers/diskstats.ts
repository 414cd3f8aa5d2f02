/**
 * Disk I/O from /proc/diskstats: bytes read and written per second and the busy time in %, per
 * whole disk (`diskio/<dev>/{read,write,busy}`). Sectors there are always 512 bytes, whatever the
 * device's block size (Documentation/admin-guide/iostats.rst). Partitions, loop and ram devices are
 * left out; whole disks are the names present in /sys/block. Rates need two reads.
 */
import type { Reader, ReaderOptions, Sample } from '../types.js';
import { list, readText, round } from './fs.js';

interface Counters {
  readBytes: number;
  writeBytes: number;
  ioMs: number;
  atMs: number;
}

const SKIP = /^(loop|ram|zram|fd|sr)\d+$/;

/** @example diskstatsReader().read(t0); diskstatsReader().read(t0 + 5000) // diskio/sda/read, diskio/sda/write, diskio/sda/busy */
export function diskstatsReader(options: ReaderOptions = {}): Reader {
  const root = options.root ?? '/';
  let previous = new Map<string, Counters>();
  return {
    name: 'diskstats',
    read(nowMs: number): Sample[] {
      const text = readText(root, 'proc/diskstats');
      if (text === undefined) return [];
      const disks = new Set(list(root, 'sys/block'));
      const current = new Map<string, Counters>();
      const out: Sample[] = [];
      for (const line of text.split('\n')) {
        const f = line.trim().split(/\s+/);
        const dev = f[2];
        if (!dev || f.length < 14 || SKIP.test(dev)) continue;
        if (disks.size > 0 && !disks.has(dev)) continue;
        const c: Counters = { readBytes: Number(f[5]) * 512, writeBytes: Number(f[9]) * 512, ioMs: Number(f[12]), atMs: nowMs };
        current.set(dev, c);
        const p = previous.get(dev);
        const dt = p ? (nowMs - p.atMs) / 1000 : 0;
        if (!p || dt <= 0) continue;
        const dr = c.readBytes - p.readBytes;
        const dw = c.writeBytes - p.writeBytes;
        const dio = c.ioMs - p.ioMs;
        if (dr < 0 || dw < 0 || dio < 0) continue; // counter wrapped or device replaced
        out.push(
          { path: `diskio/${dev}/read`, value: Math.round(dr / dt), unit: 'B/s' },
          { path: `diskio/${dev}/write`, value: Math.round(dw / dt), unit: 'B/s' },
          { path: `diskio/${dev}/busy`, value: round(Math.min((100 * dio) / (dt * 1000), 100), 1), unit: '%' },
        );
      }
      previous = current;
      return out;
    },
  };
}
