/**
 * Scale on one node (issue 20): N idle connections, each subscribed to its own topic,
 * held by a few client processes (scale-client.ts) on the generator core, spread over
 * several loopback source addresses. Every process involved gets a raised descriptor
 * limit (`ulimit -n`, proc.ts `nofile`).
 *
 * Reported per target: broker RSS before and with the connections (bytes per connection),
 * the connect rate (connected and subscribed per second, all client processes at once),
 * and the broker CPU of keepalive traffic at a K-second keepalive: the clients ping
 * round robin so that each connection pings once per K s (N/K pings per second, evenly
 * spread); the broker's CPU is read over a bounded window with the pings running and
 * over an equal window before them (the idle floor: timers), and the difference per
 * ping gives the CPU share the keepalive costs at N connections.
 */
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Gen } from './control.js';
import { cpuSeconds, rssBytes, sleep } from './proc.js';
import { GEN_CPU, type Target } from './peers.js';
import { round, type Row } from './scenarios.js';
import type { ScaleWire } from './scale-client.js';

const CLIENT = fileURLToPath(new URL('./scale-client.js', import.meta.url));
/** Connections per client process at most; Node holds 25,000 sockets in a few hundred MB. */
const MAX_PER_PROCESS = 25_000;
/** Descriptors a process needs besides its connections (the broker's store, bus and listeners; Node's own). */
const RESERVE = 2000;
/** Connections per loopback source address (an address has ~28,000 ephemeral ports). */
const PER_ADDRESS = 10_000;

export interface ScaleOptions {
  keepaliveSec: number;
  /** Length of each CPU window (idle floor, then with keepalive pings). */
  windowMs: number;
  /** Node flags for the broker (e.g. --cpu-prof); the ping window's monotonic bounds are then in the row (`pingWindowUs`). */
  nodeArgs?: string[];
}

let block = 0;

/**
 * The hard descriptor limit processes started from here can raise their soft limit to
 * (`ulimit -Hn`). Raising the hard limit itself needs CAP_SYS_RESOURCE, which a container
 * may not grant: then N is capped to what fits, and the row says so.
 */
export function descriptorCeiling(): number {
  const out = execFileSync('bash', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim();
  return out === 'unlimited' ? Infinity : Number(out);
}

function wireOf(t: Target): ScaleWire {
  if (t.id === 'topicast') return 'native';
  if (t.id.endsWith('-ws')) return 'mqtt-ws';
  return 'mqtt';
}

/** Why the scale scenario cannot run here, or null. */
export function scaleUnavailable(t: Target): string | null {
  if (!['topicast', 'topicast-mqtt', 'mosquitto-tcp', 'mosquitto-ws'].includes(t.id)) return `${t.id}: the scale clients speak native WS and MQTT (TCP, WS) only`;
  return null;
}

export async function scale(t: Target, requested: number, run: number, o: ScaleOptions): Promise<Row> {
  const ceiling = descriptorCeiling();
  // The broker holds every connection in one process; a client process holds PER_PROCESS.
  const n = Math.min(requested, Math.floor((ceiling - RESERVE) / 1000) * 1000);
  const PER_PROCESS = Math.min(MAX_PER_PROCESS, Math.floor((ceiling - RESERVE) / 1000) * 1000);
  if (n <= 0 || PER_PROCESS <= 0) throw new Error(`descriptor hard limit ${ceiling} leaves no room for connections`);
  const procs = Math.max(1, Math.ceil(n / PER_PROCESS));
  const wire = wireOf(t);
  // Fresh source addresses (127.0.0.2-254) per run: sockets of the previous run may still sit in TIME_WAIT.
  const perProcessAddrs = Math.ceil(PER_PROCESS / PER_ADDRESS);
  const b = block;
  block += procs * perProcessAddrs;
  const running = await t.start({
    nofile: Math.min(ceiling, n + 10_000),
    // Every connection comes from a few loopback addresses other than 127.0.0.1 (which the per-IP limits skip by default):
    // lift the per-IP caps on connections, connect rate and pending handshakes, which a fleet behind one NAT would also need.
    ...(o.nodeArgs && { nodeArgs: o.nodeArgs }),
    args: ['--max-pending-connections-per-ip', '0', '--max-pending-connections', '0', '--max-connections-per-ip', '0', '--connect-rate-per-ip', '0', '--max-connections', String(n + 1000)],
  });
  const gens: Gen[] = [];
  try {
    for (let p = 0; p < procs; p++) gens.push(Gen.start(`scale${p}`, GEN_CPU, { script: CLIENT, nofile: Math.min(ceiling, PER_PROCESS + RESERVE) }));
    await sleep(1000);
    const idle = rssBytes(running.child.pid);
    const ep = running.ep;
    const t0 = performance.now();
    const replies = await Promise.all(gens.map((g, p) => {
      const count = Math.min(PER_PROCESS, n - p * PER_PROCESS);
      const addrs = Array.from({ length: Math.ceil(count / PER_ADDRESS) }, (_, k) => `127.0.0.${2 + ((b + p * perProcessAddrs + k) % 253)}`);
      return g.request({ t: 'connect', wire, host: ep.host, port: ep.port, path: ep.path ?? '/', count, first: p * PER_PROCESS, addrs, concurrency: 200, keepaliveSec: o.keepaliveSec, timeoutMs: 300_000 }, 'connected', 310_000);
    }));
    const connectMs = performance.now() - t0;
    const subscribed = replies.reduce((s, r) => s + (r.subscribed as number), 0);
    const failed = replies.reduce((s, r) => s + (r.failed as number), 0);
    const firstError = replies.map((r) => r.error as string).find((e) => e) ?? '';
    if (subscribed === 0) throw new Error(`no connection subscribed: ${firstError}`);
    await sleep(3000);
    const loaded = rssBytes(running.child.pid);
    // Idle floor: the same window with no client traffic at all.
    const c0 = cpuSeconds(running.child.pid);
    const w0 = performance.now();
    await sleep(o.windowMs);
    const c1 = cpuSeconds(running.child.pid);
    const idleSec = (performance.now() - w0) / 1000;
    const idleShare = (c1 - c0) / idleSec;
    await Promise.all(gens.map((g) => g.request({ t: 'keepalive', on: true }, 'keepalive')));
    await sleep(1000); // the ping timers reach their steady rate
    const stats = async (): Promise<{ pings: number; replies: number; closed: number }> => {
      const s = await Promise.all(gens.map((g) => g.request({ t: 'stats' }, 'stats')));
      return {
        pings: s.reduce((a, r) => a + (r.pingsSent as number), 0),
        replies: s.reduce((a, r) => a + (r.replies as number), 0),
        closed: s.reduce((a, r) => a + (r.closedAfter as number), 0),
      };
    };
    const s0 = await stats();
    const k0 = cpuSeconds(running.child.pid);
    const kt0 = performance.now();
    const h0 = process.hrtime.bigint();
    await sleep(o.windowMs);
    const k1 = cpuSeconds(running.child.pid);
    const h1 = process.hrtime.bigint();
    const kSec = (performance.now() - kt0) / 1000;
    await sleep(300); // replies to the last pings
    const s1 = await stats();
    const pings = s1.pings - s0.pings;
    const kaShare = (k1 - k0) / kSec;
    const usPerPing = pings > 0 ? (Math.max(0, kaShare - idleShare) * kSec * 1e6) / pings : null;
    const steadyPingsPerSec = subscribed / o.keepaliveSec;
    return {
      scenario: 'scale', target: t.id, label: t.label, run, requested, connections: n, subscribed, failed,
      ...(n < requested && { cappedBy: `descriptor hard limit ${ceiling} (ulimit -Hn; raising it needs CAP_SYS_RESOURCE)` }),
      clientProcesses: procs, idleRssMB: round(idle / 2 ** 20, 1), loadedRssMB: round(loaded / 2 ** 20, 1),
      bytesPerConnection: Math.round((loaded - idle) / Math.max(1, subscribed)),
      connectSec: round(connectMs / 1000, 2), connectsPerSec: Math.round(subscribed / (connectMs / 1000)),
      keepaliveSec: o.keepaliveSec, windowSec: round(kSec, 1),
      pingsPerSec: Math.round(pings / kSec), replies: s1.replies - s0.replies, closedDuringWindow: s1.closed - s0.closed,
      idleCpuShare: round(idleShare, 4), keepaliveCpuShare: round(kaShare, 4),
      cpuUsPerPing: usPerPing === null ? null : round(usPerPing, 2),
      // The CPU share keepalive costs at N connections and a K s keepalive, from the per-ping cost measured above.
      keepaliveCpuShareAtN: usPerPing === null ? null : round((steadyPingsPerSec * usPerPing) / 1e6, 4),
      ...(firstError && { firstError: firstError.slice(0, 120) }),
      ...(o.nodeArgs && { pingWindowUs: `${h0 / 1000n}-${h1 / 1000n}` }),
    };
  } finally {
    await Promise.all(gens.map((g) => g.close()));
    await running.stop();
  }
}
