/**
 * Results: medians over runs, the issue's ratios, and the three outputs —
 * JSON (<date>.json and latest.json), a Markdown table (results.md, also quoted in
 * bench/README.md between markers) and a hand-written SVG chart (chart.svg).
 */
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { cpus, totalmem, release } from 'node:os';
import { join } from 'node:path';
import type { Row } from './scenarios.js';
import type { VerifyResult } from './verify.js';

export interface Ratio {
  id: string;
  what: string;
  value: number | null;
  target: string;
  /** true when met, false when missed, null when not measured. */
  met: boolean | null;
  /** Largest share of a pinned core taken by other processes in the measurements behind this ratio. */
  otherLoad?: number;
}

/** Above this, a ratio is reported but marked as measured on a busy machine. */
export const CONTENDED = 0.25;

export interface Results {
  date: string;
  mode: 'quick' | 'full';
  command: string;
  machine: { cpu: string; cores: number; memGB: number; kernel: string };
  node: string;
  /** 1/5/15-minute load averages at start and end: the machine is shared. */
  loadAverage: { start: number[]; end: number[] };
  durationSec: number;
  verify: VerifyResult[];
  runs: Row[];
  medians: Row[];
  errors: { scenario: string; target: string; run: number; error: string }[];
  skipped: { target: string; reason: string }[];
  ratios: Ratio[];
  profile?: string;
}

export function machine(): Results['machine'] {
  return { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, memGB: Math.round(totalmem() / 2 ** 30), kernel: release() };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** One row per (scenario, label): numeric metrics are medians over runs; others from the first run. */
export function medians(rows: Row[]): Row[] {
  const groups = new Map<string, Row[]>();
  for (const r of rows) {
    const k = `${r.scenario}|${r.label}`;
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
  return [...groups.values()].map((g) => {
    const out: Row = { ...g[0]!, run: 0, runs: g.length };
    for (const key of Object.keys(g[0]!)) {
      if (key === 'run') continue;
      const vals = g.map((r) => r[key]).filter((v): v is number => typeof v === 'number');
      if (vals.length === g.length) {
        const m = median(vals);
        out[key] = Number.isInteger(vals[0]) && Number.isInteger(m) ? m : Math.round(m * 1000) / 1000;
      }
    }
    if (g.length > 1 && typeof g[0]!.limit === 'string') out.limit = g.map((r) => r.limit).join('/');
    return out;
  });
}

const find = (rows: Row[], scenario: string, target: string, label?: string): Row | undefined =>
  rows.find((r) => r.scenario === scenario && r.target === target && (label === undefined || r.label === label));

const num = (r: Row | undefined, k: string): number | null => (r && typeof r[k] === 'number' ? (r[k] as number) : null);

function ratio(id: string, what: string, a: number | null, b: number | null, target: string, ok: (v: number) => boolean, rows: (Row | undefined)[] = []): Ratio {
  const value = a !== null && b !== null && b > 0 ? Math.round((a / b) * 100) / 100 : null;
  const loads = rows.map((r) => num(r, 'foreignCpuShare')).filter((v): v is number => v !== null);
  const r: Ratio = { id, what, value, target, met: value === null ? null : ok(value) };
  if (loads.length) r.otherLoad = Math.max(...loads);
  return r;
}

export function ratios(m: Row[]): Ratio[] {
  const out: Ratio[] = [];
  for (const subs of [1000, 100]) {
    const sc = `fanout-${subs}`;
    const t = find(m, sc, 'topicast');
    const u = find(m, sc, 'uws-deferred');
    const q = find(m, sc, 'mosquitto-ws');
    const tc = num(t, 'cpuSecPerMillion');
    out.push(ratio(`${sc}-vs-uws`, `fan-out 1→${subs}: Topicast CPU per delivery ÷ raw uWS deferred`, tc, num(u, 'cpuSecPerMillion'), '≤ 1.3', (v) => v <= 1.3, [t, u]));
    out.push(ratio(`${sc}-mosquitto-ws`, `fan-out 1→${subs}: Mosquitto WS CPU per delivery ÷ Topicast`, num(q, 'cpuSecPerMillion'), tc, '≥ 20', (v) => v >= 20, [t, q]));
  }
  for (const subs of [1000, 100]) {
    const sc = `fanout-${subs}-onread`;
    const t = find(m, sc, 'topicast');
    const u = find(m, sc, 'uws-deferred');
    if (t && u) out.push(ratio(`${sc}-vs-uws`, `fan-out 1→${subs}, onread readers: Topicast CPU per delivery ÷ raw uWS deferred`, num(t, 'cpuSecPerMillion'), num(u, 'cpuSecPerMillion'), '≤ 1.0', (v) => v <= 1.0, [t, u]));
  }
  // The same target for the JavaScript fan-out floor (peer/uws.ts --mode jsloop): how far under raw uWS any
  // fan-out written in JavaScript over uWebSockets.js's `ws.send` can go, i.e. what Topicast's routing may cost.
  for (const sc of ['fanout-100', 'fanout-1000', 'fanout-100-onread', 'fanout-1000-onread']) {
    const floor = find(m, sc, 'uws-jsloop');
    const u = find(m, sc, 'uws-deferred');
    const what = `fan-out 1→${sc.split('-')[1]}${sc.endsWith('onread') ? ', onread readers' : ''}`;
    if (floor && u) out.push(ratio(`${sc}-floor-vs-uws`, `${what}: JavaScript fan-out floor CPU per delivery ÷ raw uWS deferred`, num(floor, 'cpuSecPerMillion'), num(u, 'cpuSecPerMillion'), '≤ 1.0', (v) => v <= 1.0, [floor, u]));
  }
  const mt = find(m, 'fanin', 'mosquitto-tcp');
  const ft = find(m, 'fanin', 'topicast');
  out.push(ratio('fanin-vs-mosquitto-tcp', 'fan-in wildcard: Topicast (native) CPU per message ÷ Mosquitto TCP', num(ft, 'cpuSecPerMillion'), num(mt, 'cpuSecPerMillion'), '≤ 1', (v) => v <= 1, [ft, mt]));
  const fm = find(m, 'fanin', 'topicast-mqtt');
  // Issue 16's target for MQTT TCP fan-in: ≤ 0.8× Mosquitto TCP.
  if (fm) out.push(ratio('fanin-mqtt-vs-mosquitto-tcp', 'fan-in wildcard: Topicast (MQTT TCP) CPU per message ÷ Mosquitto TCP', num(fm, 'cpuSecPerMillion'), num(mt, 'cpuSecPerMillion'), '≤ 0.8', (v) => v <= 0.8, [fm, mt]));
  // The same target for the bare Node forwarder (peer/bare-fanin.ts): whether a Node server's read path alone fits under it.
  const floor = find(m, 'fanin', 'bare-net-fanin');
  if (floor) out.push(ratio('fanin-floor-vs-mosquitto-tcp', 'fan-in wildcard: bare Node net forwarder (Node\'s read-path floor) CPU per message ÷ Mosquitto TCP', num(floor, 'cpuSecPerMillion'), num(mt, 'cpuSecPerMillion'), '≤ 0.8', (v) => v <= 0.8, [floor, mt]));
  // TOPICAST_BENCH_BASE: this build against the base build in the same run (no regression).
  const fb = find(m, 'fanin', 'topicast-mqtt-base');
  if (fm && fb) out.push(ratio('fanin-mqtt-vs-base', 'fan-in wildcard: Topicast (MQTT TCP) CPU per message ÷ the base build (TOPICAST_BENCH_BASE)', num(fm, 'cpuSecPerMillion'), num(fb, 'cpuSecPerMillion'), '≤ 1', (v) => v <= 1, [fm, fb]));
  const uws = [find(m, 'latency', 'uws-deferred'), find(m, 'latency', 'uws-inline')].filter((r) => num(r, 'p99Ms') !== null).sort((a, b) => num(a, 'p99Ms')! - num(b, 'p99Ms')!);
  const lt = find(m, 'latency', 'topicast');
  out.push(ratio('latency-p99-vs-uws', 'latency p99 at 1,000 msg/s × 100 subs: Topicast ÷ best raw uWS', num(lt, 'p99Ms'), num(uws[0], 'p99Ms'), '≤ 1.2', (v) => v <= 1.2, [lt, uws[0]]));
  out.push(ratio('memory-vs-uws', 'bytes per idle subscribed connection: Topicast ÷ raw uWS', num(find(m, 'memory', 'topicast'), 'bytesPerConnection'), num(find(m, 'memory', 'uws-deferred'), 'bytesPerConnection'), '≤ 1.5', (v) => v <= 1.5));
  for (const r of m.filter((x) => x.scenario === 'slow-consumer' && x.target === 'topicast')) {
    const v = num(r, 'othersRatio');
    out.push({ id: `slow-${r.policy}`, what: `slow consumer [${r.policy}]: others' rate stalled ÷ free`, value: v, target: '≥ 0.9', met: v === null ? null : v >= 0.9 });
  }
  return out;
}

// ---- Markdown -----------------------------------------------------------------

function table(rows: Row[], cols: [string, string][]): string {
  if (rows.length === 0) return '_not measured_\n';
  const head = `| ${cols.map((c) => c[1]).join(' | ')} |\n|${cols.map(() => '---').join('|')}|\n`;
  return head + rows.map((r) => `| ${cols.map(([k]) => fmt(r[k])).join(' | ')} |`).join('\n') + '\n';
}

function fmt(v: unknown): string {
  if (typeof v === 'number') return v >= 10_000 ? v.toLocaleString('en-US', { maximumFractionDigits: 0 }) : String(v);
  if (v === undefined || v === null) return '–';
  return String(v);
}

const THROUGHPUT: [string, string][] = [
  ['label', 'target'], ['deliveriesPerSec', 'deliveries/s'], ['cpuSecPerMillion', 'broker CPU-s per 1M deliveries'],
  ['brokerCpuShare', 'broker CPU share'], ['genCpuShare', 'generator CPU share'], ['limit', 'limited by'], ['foreignCpuShare', 'other load'],
];

const CROSS_NODE: [string, string][] = [
  ['label', 'target'], ['deliveriesPerSec', 'deliveries/s'], ['cpuSecPerMillion', 'CPU-s per 1M deliveries, all processes'],
  ['nodesCpuSecPerMillion', 'of which Topicast nodes'], ['publisherNodeCpuSecPerMillion', 'of these, node A (publisher)'], ['natsCpuSecPerMillion', 'of which nats-server'], ['natsCpuSecPerMillionRelayed', 'nats-server CPU-s per 1M messages relayed'],
  ['brokerCpuShare', 'broker core share'], ['genCpuShare', 'generator CPU share'], ['limit', 'limited by'], ['foreignCpuShare', 'other load'],
];

const FANIN_CROSS_NODE: [string, string][] = [
  ['label', 'target'], ['deliveriesPerSec', 'messages/s'], ['cpuSecPerMillion', 'CPU-s per 1M messages, all processes'],
  ['publisherNodeCpuSecPerMillion', 'of which node A (publishers)'], ['natsCpuSecPerMillion', 'of which nats-server'], ['subscriberNodeCpuSecPerMillion', 'of which node B (subscriber)'],
  ['brokerCpuShare', 'broker core share'], ['genCpuShare', 'generator CPU share'], ['limit', 'limited by'], ['foreignCpuShare', 'other load'],
];

export function ratioTable(r: Ratio[]): string {
  const busy = (x: Ratio): string => (x.otherLoad !== undefined && x.otherLoad > CONTENDED ? ` (busy machine: other load ${x.otherLoad})` : '');
  return '| ratio (same run) | measured | target | met |\n|---|---|---|---|\n' +
    r.map((x) => `| ${x.what} | ${x.value === null ? '–' : `${x.value}×`} | ${x.target} | ${x.met === null ? 'not measured' : x.met ? 'yes' : '**no**'}${busy(x)} |`).join('\n') + '\n';
}

export function markdown(res: Results): string {
  const m = res.medians;
  const by = (s: string): Row[] => m.filter((r) => r.scenario === s);
  const runs = res.mode === 'full' ? 'medians of 2 interleaved runs' : 'one run each';
  let md = `# Topicast benchmark results\n\n`;
  md += `${res.date} · \`${res.command}\` (${res.mode}, ${runs}, ${res.durationSec} s) · ${res.machine.cpu}, ${res.machine.cores} cores, ${res.machine.memGB} GB, Linux ${res.machine.kernel} · Node ${res.node}\n\n`;
  md += `Broker pinned to CPU 0, load generator (publisher and subscriber processes, and the orchestrator) to CPU 1. Broker CPU = utime+stime from /proc over the measured window. "limited by": broker = broker core ≥ 85 % busy; generator = generator core ≥ 85 % busy; window = neither (the credit window's round trip bounds the rate; CPU per delivery is still exact). "other load": the largest share of a pinned core used by processes outside the bench during the window (the machine is shared; in the full run a measurement with more than 0.25 is repeated once and the quieter kept). Load average at start ${res.loadAverage.start.join(' / ')}, at end ${res.loadAverage.end.join(' / ')}.\n\n`;
  md += `## Targets\n\n${ratioTable(res.ratios)}\n`;
  md += `## Fan-out 1 → 1,000 subscribers (64-byte payloads, credit window)\n\n${table(by('fanout-1000'), THROUGHPUT)}\n`;
  const crossNode = by('fanout-1000-cross-node');
  if (crossNode.length) {
    const single = m.filter((r) => r.scenario === 'fanout-1000' && r.target === 'topicast').map((r): Row => ({ ...r, label: `${r.label}, 1 node, no bus`, nodesCpuSecPerMillion: r.cpuSecPerMillion ?? null, natsCpuSecPerMillion: 0 }));
    md += `## Fan-out 1 → 1,000 across nodes (Topicast nodes on one local nats-server, same run)\n\nSame scenario as above; the publisher on node A, the subscribers on the other nodes, so every delivery crosses NATS. Every node and nats-server pinned to the broker core; CPU summed over them.\n\n${table([...single, ...crossNode], CROSS_NODE)}\n`;
  }
  md += `## Fan-out 1 → 100 subscribers\n\n${table(by('fanout-100'), THROUGHPUT)}\n`;
  for (const subs of [1000, 100]) {
    const rows = by(`fanout-${subs}-onread`);
    if (rows.length) md += `## Fan-out 1 → ${subs}, subscribers reading with \`onread\` into one shared buffer\n\n${table(rows, [...THROUGHPUT, ['windowMsgs', 'credit window, messages']])}\n`;
  }
  md += `## Fan-in: 1,000 publishers on devices/<i>/temp → 1 subscriber on devices/+/temp\n\n${table(by('fanin'), THROUGHPUT)}\n`;
  const faninCross = by('fanin-cross-node');
  if (faninCross.length) {
    const single = m.filter((r) => r.scenario === 'fanin' && r.target === 'topicast').map((r): Row => ({ ...r, label: `${r.label}, 1 node, no bus` }));
    md += `## Fan-in across two nodes (publishers on A, the devices/+/temp subscriber on B, one local nats-server)\n\nEvery message crosses NATS once. CPU per message summed over both nodes and nats-server, then split.\n\n${table([...single, ...faninCross], FANIN_CROSS_NODE)}\n`;
  }
  md += `## Latency at 1,000 msg/s × 100 subscribers (every delivery timed)\n\n${table(by('latency'), [['label', 'target'], ['p50Ms', 'p50 ms'], ['p99Ms', 'p99 ms'], ['p999Ms', 'p99.9 ms'], ['maxMs', 'max ms'], ['received', 'received'], ['lost', 'not received 0.5 s after the end'], ['brokerCpuShare', 'broker CPU share'], ['genCpuShare', 'generator CPU share'], ['foreignCpuShare', 'other load']])}\n`;
  md += `## Memory: idle connections, each subscribed to its own topic\n\n${table(by('memory'), [['label', 'target'], ['connections', 'connections'], ['idleRssMB', 'idle RSS MB'], ['loadedRssMB', 'RSS with connections MB'], ['bytesPerConnection', 'bytes per connection'], ['connectMs', 'connect ms']])}\n`;
  if (by('slow-consumer').length) md += `## Slow consumer: 1 stalled subscriber of 100\n\n${table(by('slow-consumer'), [['label', 'target'], ['ratePerSec', 'msg/s'], ['payloadBytes', 'payload B'], ['othersPerSecFree', 'others deliveries/s, no stall'], ['othersPerSecStalled', 'others deliveries/s, stalled'], ['othersRatio', 'ratio'], ['rssFreeMB', 'RSS MB no stall'], ['rssStalledMaxMB', 'RSS MB stalled'], ['rssStalled2MaxMB', 'RSS MB stalled, later'], ['stalledDisconnected', 'stalled one disconnected']])}\n`;
  if (by('replay').length) md += `## History replay after a resume (100 topics, 64-byte payloads)\n\n${table(by('replay'), [['label', 'target'], ['messages', 'messages'], ['replayPerSec', 'replayed/s'], ['replayCpuUsPerMsg', 'broker CPU µs per replayed'], ['snapshotPerSec', 'retained snapshot/s (same run)'], ['snapshotCpuUsPerMsg', 'broker CPU µs per snapshot message'], ['replayVsSnapshot', 'replay ÷ snapshot rate'], ['rssMB', 'RSS MB']])}\n`;
  if (by('retained').length) md += `## Retained snapshot to a # subscriber\n\n${table(by('retained'), [['label', 'target'], ['retainedTopics', 'retained topics'], ['received', 'received'], ['snapshotMs', 'snapshot ms'], ['brokerCpuSec', 'broker CPU-s'], ['rssMB', 'RSS MB']])}\n`;
  if (by('storm').length) md += `## Reconnect storm: SDK clients dropped by a broker restart\n\n${table(by('storm'), [['label', 'target'], ['clients', 'clients'], ['resubscribedMs', 'all resubscribed ms'], ['resubscribed', 'resubscribed'], ['peakCpuShare', 'broker peak CPU share'], ['peakRssMB', 'broker peak RSS MB']])}\n`;
  if (by('persist-cost').length) md += `## Persistence cost: MQTT QoS 1 publishes with \`--data\` (on) and without (off), same run\n\n${table(by('persist-cost'), [['label', 'workload'], ['offCpuUsPerPublish', 'broker CPU µs/publish off'], ['onCpuUsPerPublish', 'on'], ['cpuRatio', 'on ÷ off'], ['offPublishesPerSec', 'acked publishes/s off'], ['onPublishesPerSec', 'on'], ['offP50Ms', 'PUBACK p50 ms off'], ['onP50Ms', 'on'], ['offP99Ms', 'PUBACK p99 ms off'], ['onP99Ms', 'on'], ['window', 'outstanding'], ['foreignCpuShare', 'other load']])}\n`;
  if (by('restart').length) md += `## Restart: broker start to listening with N retained topics in \`--data\`\n\n${table(by('restart'), [['label', 'store'], ['startMs', 'spawn → listening ms'], ['cpuSec', 'broker CPU-s at listening'], ['storeLoadMs', 'retained store load ms'], ['rssMB', 'RSS MB']])}\n`;
  if (by('scale').length) {
    const capped = by('scale').find((r) => typeof r.cappedBy === 'string');
    md += `## Scale: idle subscribed connections on one node, keepalive ${fmt(by('scale')[0]!.keepaliveSec)} s\n\n`;
    if (capped) md += `Asked for ${fmt(capped.requested)} connections, measured at ${fmt(capped.connections)}: ${capped.cappedBy}.\n\n`;
    md += table(by('scale'), [['label', 'target'], ['subscribed', 'connections subscribed'], ['failed', 'failed'], ['idleRssMB', 'idle RSS MB'], ['loadedRssMB', 'RSS with connections MB'], ['bytesPerConnection', 'bytes per connection'], ['connectsPerSec', 'connected + subscribed /s'], ['idleCpuShare', 'broker CPU share, no traffic'], ['pingsPerSec', 'pings/s in window'], ['keepaliveCpuShare', 'broker CPU share with pings'], ['cpuUsPerPing', 'broker CPU µs per ping'], ['keepaliveCpuShareAtN', 'keepalive CPU share at N / K pings/s'], ['closedDuringWindow', 'closed during window']]) + '\n';
  }
  if (by('devices').length) md += `## Device mix: 10,000 devices × 1 reading/s (retained), 50 dashboards on devices/#, 200 on one device each\n\n${table(by('devices'), [['label', 'target'], ['publishedPerSec', 'readings/s'], ['deliveriesPerSec', 'deliveries/s'], ['brokerCpuShare', 'broker CPU share'], ['rssMB', 'RSS MB'], ['p50Ms', 'devices/# p50 ms'], ['p99Ms', 'p99 ms'], ['p999Ms', 'p99.9 ms'], ['maxMs', 'max ms'], ['lostAll', 'not received'], ['singleP50Ms', 'one device p50 ms'], ['singleP99Ms', 'p99 ms'], ['singleP999Ms', 'p99.9 ms'], ['lostSingle', 'not received'], ['genCpuShare', 'generator CPU share'], ['foreignCpuShare', 'other load']])}\n`;
  md += `## Minimal clients checked byte for byte against independent clients\n\n| target | result | messages | detail |\n|---|---|---|---|\n`;
  md += res.verify.map((v) => `| ${v.target} | ${v.ok ? 'identical' : '**differs**'} | ${v.checked} | ${v.detail} |`).join('\n') + '\n';
  if (res.skipped.length) md += `\nSkipped: ${res.skipped.map((s) => `${s.target} (${s.reason})`).join('; ')}\n`;
  if (res.errors.length) md += `\nErrors: ${res.errors.map((e) => `${e.scenario}/${e.target} run ${e.run}: ${e.error}`).join('; ')}\n`;
  return md;
}

// ---- SVG ----------------------------------------------------------------------

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

export function svg(res: Results): string {
  const W = 860;
  const fan = res.medians.filter((r) => r.scenario === 'fanout-1000' && typeof r.cpuSecPerMillion === 'number').sort((a, b) => (a.cpuSecPerMillion as number) - (b.cpuSecPerMillion as number));
  const ratiosShown = res.ratios.filter((r) => r.value !== null);
  const rowH = 24;
  const top1 = 60;
  const h1 = Math.max(1, fan.length) * rowH;
  const top2 = top1 + h1 + 70;
  const H = top2 + Math.max(1, ratiosShown.length) * rowH + 40;
  const x0 = 250;
  const bw = W - x0 - 120;
  const parts: string[] = [];
  parts.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`);
  parts.push(`<rect width="${W}" height="${H}" fill="#fff"/>`);
  parts.push(`<text x="10" y="22" font-size="15" font-weight="bold">Topicast bench ${esc(res.date.slice(0, 10))} · ${esc(res.machine.cpu)} · Node ${esc(res.node)} (${res.mode})</text>`);
  parts.push(`<text x="10" y="${top1 - 12}" font-size="13">Fan-out 1→1,000: broker CPU-seconds per million deliveries (log scale, lower is better)</text>`);
  const vals = fan.map((r) => r.cpuSecPerMillion as number);
  const lo = Math.log10(Math.min(0.05, ...vals));
  const hi = Math.log10(Math.max(1, ...vals) * 1.5);
  const xs = (v: number): number => ((Math.log10(v) - lo) / (hi - lo)) * bw;
  fan.forEach((r, i) => {
    const y = top1 + i * rowH;
    const v = r.cpuSecPerMillion as number;
    const isT = String(r.target).startsWith('topicast');
    parts.push(`<text x="${x0 - 8}" y="${y + 15}" text-anchor="end">${esc(String(r.label))}</text>`);
    parts.push(`<rect x="${x0}" y="${y + 3}" width="${Math.max(2, xs(v)).toFixed(1)}" height="${rowH - 8}" fill="${isT ? '#d9480f' : '#4c6ef5'}"/>`);
    parts.push(`<text x="${(x0 + Math.max(2, xs(v)) + 6).toFixed(1)}" y="${y + 15}">${v} s</text>`);
  });
  parts.push(`<text x="10" y="${top2 - 12}" font-size="13">Topicast against the issue's targets (bar = measured ÷ allowed; the line at 1 is the target, shorter is better)</text>`);
  const maxScore = 3;
  const xr = (v: number): number => (Math.min(v, maxScore) / maxScore) * bw;
  ratiosShown.forEach((r, i) => {
    const y = top2 + i * rowH;
    const limit = Number(r.target.replace(/[^\d.]/g, ''));
    const score = r.target.startsWith('≥') ? limit / Math.max(1e-9, r.value!) : r.value! / limit;
    parts.push(`<text x="${x0 - 8}" y="${y + 15}" text-anchor="end">${esc(r.id)}</text>`);
    parts.push(`<rect x="${x0}" y="${y + 3}" width="${Math.max(2, xr(score)).toFixed(1)}" height="${rowH - 8}" fill="${r.met ? '#2f9e44' : '#e03131'}"/>`);
    const busy = r.otherLoad !== undefined && r.otherLoad > CONTENDED ? '*' : '';
    parts.push(`<text x="${x0 + bw + 8}" y="${y + 15}">${r.value}×${busy} (${esc(r.target)})</text>`);
  });
  const x1 = x0 + xr(1);
  parts.push(`<line x1="${x1}" y1="${top2 - 4}" x2="${x1}" y2="${top2 + ratiosShown.length * rowH}" stroke="#000" stroke-dasharray="4 3"/>`);
  parts.push(`<text x="10" y="${top2 + ratiosShown.length * rowH + 22}" font-size="11">* measured while other processes took more than ${CONTENDED * 100} % of a pinned core (shared machine); bars are capped at ${maxScore}×.</text>`);
  parts.push('</svg>');
  return parts.join('\n') + '\n';
}

export function writeResults(res: Results, dir: string, readme: string, o: { json: boolean } = { json: true }): void {
  mkdirSync(dir, { recursive: true });
  if (o.json) {
    const json = JSON.stringify(res, null, 2) + '\n';
    writeFileSync(join(dir, `${res.date.slice(0, 10)}-${res.mode}.json`), json);
    writeFileSync(join(dir, 'latest.json'), json);
  }
  const md = markdown(res);
  writeFileSync(join(dir, 'results.md'), md);
  writeFileSync(join(dir, 'chart.svg'), svg(res));
  if (existsSync(readme)) {
    const text = readFileSync(readme, 'utf8');
    const start = '<!-- results:start -->';
    const end = '<!-- results:end -->';
    const a = text.indexOf(start);
    const b = text.indexOf(end);
    if (a >= 0 && b > a) writeFileSync(readme, `${text.slice(0, a + start.length)}\n${md.replace(/^# .*\n\n/, '').replace(/^## /gm, '### ')}\n${text.slice(b)}`);
  }
}
