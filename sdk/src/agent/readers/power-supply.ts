/**
 * Batteries and power supplies from /sys/class/power_supply/<name>
 * (Documentation/ABI/testing/sysfs-class-power): `power/<name>/...`.
 * Batteries: capacity (%), status (`Charging`, `Discharging`, `Full`...), voltage (V), current (A),
 * power (W; from power_now, else voltage × current), temperature (°C). Mains and USB supplies:
 * online (1 or 0). The ABI's units are µV, µA, µW and tenths of °C.
 */
import type { Reader, ReaderOptions, Sample } from '../types.js';
import { list, readLine, readNumber, round, topicLevel } from './fs.js';

/** @example powerSupplyReader().read(0) // [{ path: 'power/bat0/capacity', value: 87, unit: '%' }, ...] */
export function powerSupplyReader(options: ReaderOptions = {}): Reader {
  const root = options.root ?? '/';
  return {
    name: 'power_supply',
    read(): Sample[] {
      const out: Sample[] = [];
      for (const entry of list(root, 'sys/class/power_supply')) {
        const dir = `sys/class/power_supply/${entry}`;
        const type = readLine(root, `${dir}/type`);
        if (type === undefined) continue;
        const base = `power/${topicLevel(entry)}`;
        if (type === 'Battery') {
          if (readNumber(root, `${dir}/present`) === 0) continue;
          const capacity = readNumber(root, `${dir}/capacity`);
          if (capacity !== undefined) out.push({ path: `${base}/capacity`, value: capacity, unit: '%' });
          const status = readLine(root, `${dir}/status`);
          if (status !== undefined) out.push({ path: `${base}/status`, value: status, unit: '' });
          const uv = readNumber(root, `${dir}/voltage_now`);
          const ua = readNumber(root, `${dir}/current_now`);
          const uw = readNumber(root, `${dir}/power_now`);
          if (uv !== undefined) out.push({ path: `${base}/voltage`, value: round(uv / 1e6, 3), unit: 'V' });
          if (ua !== undefined) out.push({ path: `${base}/current`, value: round(ua / 1e6, 3), unit: 'A' });
          const watts = uw !== undefined ? uw / 1e6 : uv !== undefined && ua !== undefined ? (uv / 1e6) * (ua / 1e6) : undefined;
          if (watts !== undefined) out.push({ path: `${base}/power`, value: round(Math.abs(watts), 2), unit: 'W' });
          const tenths = readNumber(root, `${dir}/temp`);
          if (tenths !== undefined) out.push({ path: `${base}/temperature`, value: round(tenths / 10, 1), unit: '°C' });
        } else {
          const online = readNumber(root, `${dir}/online`);
          if (online !== undefined) out.push({ path: `${base}/online`, value: online, unit: '' });
        }
      }
      return out;
    },
  };
}
