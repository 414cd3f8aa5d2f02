/**
 * Network interfaces from /proc/net/dev: received and sent bytes per second, and the cumulative
 * receive and transmit error counts (`net/<if>/{rx,tx,rx_errors,tx_errors}`). Errors stay counters:
 * they are rare, and a count that grows is what an operator looks for. The loopback and
 * interfaces whose operstate is `down` are left out (`unknown`, as for tunnels, counts as up).
 * Rates need two reads; a counter that goes backwards (32-bit wrap, driver reload) skips one round.
 */
import type { Reader, ReaderOptions, Sample } from '../types.js';
import { readLine, readText, topicLevel } from './fs.js';

interface Counters {
  rx: number;
  tx: number;
  atMs: number;
}

/** @example netReader().read(t0); netReader().read(t0 + 5000) // net/eth0/rx, net/eth0/tx, ... */
export function netReader(options: ReaderOptions = {}): Reader {
  const root = options.root ?? '/';
  let previous = new Map<string, Counters>();
  return {
    name: 'net',
    read(nowMs: number): Sample[] {
      const text = readText(root, 'proc/net/dev');
      if (text === undefined) return [];
      const current = new Map<string, Counters>();
      const out: Sample[] = [];
      for (const line of text.split('\n')) {
        const colon = line.indexOf(':');
        if (colon < 0) continue;
        const name = line.slice(0, colon).trim();
        if (name === 'lo' || name === '') continue;
        if (readLine(root, `sys/class/net/${name}/operstate`) === 'down') continue; // unplugged or unused (ifb, spare NICs)
        const f = line.slice(colon + 1).trim().split(/\s+/).map(Number);
        if (f.length < 16 || f.some((x) => !Number.isFinite(x))) continue;
        const iface = topicLevel(name);
        const c: Counters = { rx: f[0]!, tx: f[8]!, atMs: nowMs };
        current.set(iface, c);
        const p = previous.get(iface);
        const dt = p ? (nowMs - p.atMs) / 1000 : 0;
        if (p && dt > 0 && c.rx >= p.rx && c.tx >= p.tx) {
          out.push(
            { path: `net/${iface}/rx`, value: Math.round((c.rx - p.rx) / dt), unit: 'B/s' },
            { path: `net/${iface}/tx`, value: Math.round((c.tx - p.tx) / dt), unit: 'B/s' },
          );
        }
        out.push({ path: `net/${iface}/rx_errors`, value: f[2]!, unit: '' }, { path: `net/${iface}/tx_errors`, value: f[10]!, unit: '' });
      }
      previous = current;
      return out;
    },
  };
}
