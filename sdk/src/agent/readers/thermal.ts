/**
 * Temperatures of the kernel's thermal zones (/sys/class/thermal/thermal_zoneN/{type,temp}), in °C.
 *
 * Topics are `thermal/<type>/temperature` (a second zone of the same type gets `<type>_<N>`).
 * A zone whose type names the CPU (`cpu-thermal` on a Raspberry Pi, `x86_pkg_temp` on Intel,
 * `soc_thermal`...) is marked so the agent also publishes it as the conventional `cpu/temperature`.
 * Zones that cannot be read right now (some return EINVAL while their device sleeps) are skipped.
 */
import type { Reader, ReaderOptions, Sample } from '../types.js';
import { list, readLine, readNumber, round, topicLevel } from './fs.js';

const CPU_ZONE = /cpu|x86_pkg_temp|soc|coretemp|k10temp|tctl/i;

/** @example thermalReader({ root: '/' }).read(0) // [{ path: 'thermal/cpu-thermal/temperature', value: 48.2, unit: '°C', cpuTemperature: true }] */
export function thermalReader(options: ReaderOptions = {}): Reader {
  const root = options.root ?? '/';
  return {
    name: 'thermal',
    read(): Sample[] {
      const out: Sample[] = [];
      const seen = new Set<string>();
      for (const zone of list(root, 'sys/class/thermal')) {
        if (!zone.startsWith('thermal_zone')) continue;
        const milli = readNumber(root, `sys/class/thermal/${zone}/temp`);
        if (milli === undefined) continue;
        const type = readLine(root, `sys/class/thermal/${zone}/type`) ?? zone;
        let name = topicLevel(type);
        if (seen.has(name)) name = `${name}_${zone.slice('thermal_zone'.length)}`;
        seen.add(name);
        const sample: Sample = { path: `thermal/${name}/temperature`, value: round(milli / 1000, 1), unit: '°C' };
        if (CPU_ZONE.test(type)) sample.cpuTemperature = true;
        out.push(sample);
      }
      return out;
    },
  };
}
