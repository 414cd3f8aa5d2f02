/**
 * The built-in readers, by name, in the order the agent reads them. The order matters once: the
 * first sample marked `cpuTemperature` becomes `cpu/temperature`, and thermal zones come before
 * hwmon chips because they are what the board vendor calls the CPU's.
 */
import type { Reader, ReaderOptions } from '../types.js';
import { cpuReader } from './cpu.js';
import { diskReader } from './disk.js';
import { diskstatsReader } from './diskstats.js';
import { hwmonReader } from './hwmon.js';
import { loadReader } from './load.js';
import { memoryReader } from './memory.js';
import { netReader } from './net.js';
import { powerSupplyReader } from './power-supply.js';
import { thermalReader } from './thermal.js';
import { uptimeReader } from './uptime.js';

export const READERS = {
  cpu: cpuReader,
  load: loadReader,
  memory: memoryReader,
  thermal: thermalReader,
  hwmon: hwmonReader,
  disk: diskReader,
  diskstats: diskstatsReader,
  net: netReader,
  uptime: uptimeReader,
  power_supply: powerSupplyReader,
} as const satisfies Record<string, (o: ReaderOptions) => Reader>;

export type ReaderName = keyof typeof READERS;
export const READER_NAMES = Object.keys(READERS) as ReaderName[];

/** @example createReaders(['cpu', 'memory'], { root: '/' }) */
export function createReaders(names: readonly ReaderName[] = READER_NAMES, options: ReaderOptions = {}): Reader[] {
  return names.map((n) => READERS[n](options));
}

export { cpuReader, diskReader, diskstatsReader, hwmonReader, loadReader, memoryReader, netReader, powerSupplyReader, thermalReader, uptimeReader };
