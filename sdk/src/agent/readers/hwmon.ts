/**
 * Hardware monitoring chips (/sys/class/hwmon/hwmonN): temperatures, fans, voltages, currents, power.
 *
 * Topics are `hwmon/<chip>/<kind>/<label>`, e.g. `hwmon/coretemp/temperature/package_id_0`,
 * `hwmon/thinkpad/fan/fan1`, `hwmon/nct6775/voltage/vcore`. The label comes from `<attr>_label`
 * when the driver gives one, else the attribute's own name (`temp1`). Units follow the sysfs ABI
 * (Documentation/hwmon/sysfs-interface.rst): millidegrees, millivolts, milliamperes, microwatts,
 * converted to °C, V, A, W; fans are RPM. Old kernels keep the attributes under `device/`.
 * The first temperature of a CPU chip (coretemp, k10temp, zenpower, cpu_thermal) is marked as a
 * candidate for `cpu/temperature`.
 */
import type { Reader, ReaderOptions, Sample } from '../types.js';
import { list, readLine, readNumber, round, topicLevel } from './fs.js';

const KINDS = {
  temp: { kind: 'temperature', unit: '°C', scale: 1e-3, digits: 1 },
  fan: { kind: 'fan', unit: 'RPM', scale: 1, digits: 0 },
  in: { kind: 'voltage', unit: 'V', scale: 1e-3, digits: 3 },
  curr: { kind: 'current', unit: 'A', scale: 1e-3, digits: 3 },
  power: { kind: 'power', unit: 'W', scale: 1e-6, digits: 2 },
} as const;
type Prefix = keyof typeof KINDS;

const ATTRIBUTE = /^(temp|fan|in|curr|power)(\d+)_(input|average)$/;
const CPU_CHIP = /^(coretemp|k10temp|zenpower|cpu_thermal|cpu-thermal)$/;

/** @example hwmonReader({ root: '/' }).read(0) // [{ path: 'hwmon/thinkpad/fan/fan1', value: 2900, unit: 'RPM' }, ...] */
export function hwmonReader(options: ReaderOptions = {}): Reader {
  const root = options.root ?? '/';
  return {
    name: 'hwmon',
    read(): Sample[] {
      const out: Sample[] = [];
      const chips = new Set<string>();
      for (const entry of list(root, 'sys/class/hwmon')) {
        let dir = `sys/class/hwmon/${entry}`;
        let chipName = readLine(root, `${dir}/name`);
        if (chipName === undefined && readLine(root, `${dir}/device/name`) !== undefined) {
          dir = `${dir}/device`;
          chipName = readLine(root, `${dir}/name`);
        }
        if (chipName === undefined) continue;
        let chip = topicLevel(chipName);
        if (chips.has(chip)) chip = `${chip}_${entry.replace(/^hwmon/, '')}`;
        chips.add(chip);
        const isCpu = CPU_CHIP.test(chipName);
        let cpuMarked = false;
        const done = new Set<string>();
        const paths = new Set<string>();
        for (const file of list(root, dir)) {
          const m = ATTRIBUTE.exec(file);
          if (!m) continue;
          const prefix = m[1] as Prefix;
          const base = `${prefix}${m[2]}`;
          if (done.has(base)) continue; // power has both _input and _average; the first wins
          const raw = readNumber(root, `${dir}/${file}`);
          if (raw === undefined) continue;
          done.add(base);
          const k = KINDS[prefix];
          const label = readLine(root, `${dir}/${base}_label`) ?? base;
          let path = `hwmon/${chip}/${k.kind}/${topicLevel(label)}`;
          if (paths.has(path)) path = `${path}_${base}`; // two attributes with one label
          paths.add(path);
          const sample: Sample = { path, value: round(raw * k.scale, k.digits), unit: k.unit };
          if (isCpu && prefix === 'temp' && !cpuMarked) {
            sample.cpuTemperature = true;
            cpuMarked = true;
          }
          out.push(sample);
        }
      }
      return out;
    },
  };
}
