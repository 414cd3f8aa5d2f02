/**
 * `node bench/dist/payload-conversion.js`: the CPU cost of the one MessagePack → JSON conversion
 * the broker does per message for MQTT subscribers (`--mqtt-payloads json`, MQTT.md "Payload
 * formats"), next to the cost of the MQTT PUBLISH encode it precedes and of msgpackr decoding the
 * same payload plus JSON.stringify (what a naive converter would do). Measured as this process's
 * CPU time (process.cpuUsage) over a fixed count, median of 5 rounds, so other load on the
 * machine inflates it less than wall time would. The conversion runs once per message whatever
 * the number of MQTT subscribers; divide by the fan-out for its share per delivery.
 */
import { Packr } from 'msgpackr';
import mqttPacket from 'mqtt-packet';
import { msgpackToJson } from 'topicast/protocol';

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

const PAYLOADS: [string, unknown][] = [
  ['number (48.2)', 48.2],
  ['string (online)', 'online'],
  ['reading { value, unit, ts }', { value: 21.5, unit: '°C', ts: 1_765_000_000_000 }],
  ['info map (~300 B)', { hostname: 'pi-01', os: 'linux', arch: 'arm64', agent: '0.1.0', sensors: Array.from({ length: 6 }, (_, i) => ({ path: `cpu/core${i}/temperature`, unit: '°C' })) }],
];

function cpuNsPer(count: number, fn: () => void): number {
  const rounds: number[] = [];
  for (let r = 0; r < 5; r++) {
    const t0 = process.cpuUsage();
    for (let i = 0; i < count; i++) fn();
    const d = process.cpuUsage(t0);
    rounds.push(((d.user + d.system) * 1000) / count);
  }
  rounds.sort((a, b) => a - b);
  return rounds[2]!;
}

const count = 200_000;
console.log(`MessagePack → JSON for MQTT subscribers, CPU ns per message (median of 5 × ${count.toLocaleString('en')}), Node ${process.version}\n`);
console.log('| payload | bytes | msgpackToJson | msgpackr unpack + JSON.stringify | MQTT PUBLISH encode (mqtt-packet) |');
console.log('|---|---|---|---|---|');
for (const [name, value] of PAYLOADS) {
  const bytes = packr.pack(value);
  const buf = Buffer.from(bytes);
  let sink = 0;
  const convert = cpuNsPer(count, () => {
    sink += msgpackToJson(bytes)!.payload.length;
  });
  const naive = cpuNsPer(count, () => {
    const v: unknown = packr.unpack(bytes);
    sink += (typeof v === 'string' ? v : JSON.stringify(v)).length;
  });
  const encode = cpuNsPer(count, () => {
    sink += mqttPacket.generate({ cmd: 'publish', topic: 'devices/pi-01/cpu/temperature', payload: buf, qos: 0, dup: false, retain: false }).length;
  });
  if (sink === 0) throw new Error('unreachable');
  console.log(`| ${name} | ${bytes.length} | ${convert.toFixed(0)} | ${naive.toFixed(0)} | ${encode.toFixed(0)} |`);
}
