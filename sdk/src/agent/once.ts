/**
 * One round of readings without a broker, for `topicast-agent --once --print`: every reader is
 * read twice `sampleMs` apart, so rates (CPU usage, network and disk throughput) have values.
 */
import type { Reader, Sample } from './types.js';

export const ONCE_SAMPLE_MS = 500; // long enough for a few jiffies of CPU time, short enough for a quick check

export interface OnceRound {
  id: string;
  ts: number;
  readings: Record<string, { value: Sample['value']; unit: string }>;
}

/** @example console.log(JSON.stringify(await readOnce('pi-01', createReaders()), null, 2)) */
export async function readOnce(id: string, readers: Reader[], sampleMs = ONCE_SAMPLE_MS, warn: (msg: string) => void = () => {}): Promise<OnceRound> {
  const read = (r: Reader, now: number): Sample[] => {
    try {
      return r.read(now);
    } catch (err) {
      warn(`reader ${r.name} failed: ${(err as Error).message}`);
      return [];
    }
  };
  const t0 = Date.now();
  for (const r of readers) read(r, t0);
  await new Promise((resolve) => setTimeout(resolve, sampleMs));
  const ts = Date.now();
  const readings: OnceRound['readings'] = {};
  let cpu: Sample | undefined;
  for (const r of readers) {
    for (const s of read(r, ts)) {
      readings[s.path] = { value: s.value, unit: s.unit };
      if (s.cpuTemperature && !cpu) cpu = s;
    }
  }
  if (cpu && !readings['cpu/temperature']) readings['cpu/temperature'] = { value: cpu.value, unit: cpu.unit };
  return { id, ts, readings };
}
