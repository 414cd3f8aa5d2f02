/**
 * Footprint on a small board: resident memory (VmRSS) and CPU of the broker as the release packages
 * run it, next to bare Node and raw uWebSockets.js in the same run.
 *
 *   node bench/dist/footprint.js [--release FILE.tar.xz] [--settle 8] [--seconds 8] [--agent-seconds 30] [--connections 1000] [--no-flags | --flags-only]
 *
 * Rows (each a fresh process on 127.0.0.1, measured after `--settle` seconds, VmRSS averaged over
 * `--seconds`): bare Node (a timer, nothing loaded); raw uWS (one App listening with a WebSocket route);
 * the broker from broker/dist and from the release bundle (defaults: MQTT listener on, no auth); the
 * bundle with the in-process agent at its default 5 s interval (RSS and CPU % of one core over
 * `--agent-seconds`); broker + topicast-agent as two processes (today's `npm start` before --agent);
 * the bundle with `--connections` idle SDK connections; then V8 flag profiles for the broker with its
 * agent. Prints a Markdown table and one JSON line. Linux only; the release tarball defaults to
 * .cache/release-test/ or dist/release/ (build it with `npm run release`).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from 'topicast';
import { cpuSeconds, freePort, rssBytes, sleep, spawnChild, waitFor, type Child } from './proc.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const args = process.argv.slice(2);
const opt = (name: string, fallback: string): string => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1]! : fallback;
};
const settleSec = Number(opt('settle', '8'));
const seconds = Number(opt('seconds', '8'));
const agentSeconds = Number(opt('agent-seconds', '30'));
const connections = Number(opt('connections', '1000'));
const version = (JSON.parse(execFileSync('cat', [join(root, 'broker', 'package.json')], { encoding: 'utf8' })) as { version: string }).version;
const tarball = opt('release', [join(root, '.cache', 'release-test'), join(root, 'dist', 'release')].map((d) => join(d, `topicast-${version}-linux-x64.tar.xz`)).find((f) => existsSync(f)) ?? '');
if (!existsSync(tarball)) {
  console.error('footprint: no release tarball (npm run release, or --release FILE)');
  process.exit(2);
}
const unpacked = mkdtempSync(join(tmpdir(), 'topicast-footprint-'));
process.on('exit', () => rmSync(unpacked, { recursive: true, force: true }));
execFileSync('tar', ['-xJf', tarball, '-C', unpacked]);
const bundle = join(unpacked, `topicast-${version}-linux-x64`, 'lib');

interface Row {
  name: string;
  rssMiB: number;
  cpuPct?: number;
  note?: string;
}
const rows: Row[] = [];
const MiB = 2 ** 20;

async function listening(child: Child): Promise<number> {
  let port = 0;
  await waitFor('listening', () => {
    for (const l of child.logs) {
      if (!l.includes('"listening"') && !l.startsWith('PORT ')) continue;
      port = l.startsWith('PORT ') ? Number(l.slice(5)) : (JSON.parse(l) as { port: number }).port;
      return true;
    }
    return false;
  }, 20_000);
  return port;
}

/** Average VmRSS (all pids summed) over `seconds`, one sample a second; CPU % of one core over the same window. */
async function measure(pids: number[], windowSec = seconds): Promise<{ rssMiB: number; cpuPct: number }> {
  const cpu0 = pids.reduce((n, p) => n + cpuSeconds(p), 0);
  const t0 = Date.now();
  let sum = 0;
  let n = 0;
  for (let i = 0; i < windowSec; i++) {
    await sleep(1000);
    sum += pids.reduce((s, p) => s + rssBytes(p), 0);
    n++;
  }
  const cpu = pids.reduce((s, p) => s + cpuSeconds(p), 0) - cpu0;
  return { rssMiB: Math.round((sum / n / MiB) * 10) / 10, cpuPct: Math.round((cpu / ((Date.now() - t0) / 1000)) * 1000) / 10 };
}

async function row(name: string, cmd: string[], opts: { env?: Record<string, string>; windowSec?: number; cpu?: boolean; note?: string; during?: (port: number) => Promise<() => Promise<void>> } = {}): Promise<void> {
  const child = spawnChild(cmd[0]!, cmd.slice(1), { cwd: join(root, 'bench'), env: { ...process.env, ...opts.env } });
  try {
    const port = await listening(child);
    const done = opts.during ? await opts.during(port) : undefined;
    await sleep(settleSec * 1000);
    const m = await measure([child.pid], opts.windowSec);
    await done?.();
    rows.push({ name, rssMiB: m.rssMiB, ...(opts.cpu ? { cpuPct: m.cpuPct } : {}), ...(opts.note ? { note: opts.note } : {}) });
    console.error(`footprint: ${name}: ${m.rssMiB} MiB${opts.cpu ? `, ${m.cpuPct} % CPU` : ''}`);
  } finally {
    await child.stop();
  }
}

const node = process.execPath;
// info logs the listening line (its port) and nothing at idle.
// The MQTT listener is on, as by default (on a free port: it has no ephemeral mode).
const withPort = async (script: string, extra: string[] = [], nodeFlags: string[] = []): Promise<string[]> =>
  [node, ...nodeFlags, script, '--host', '127.0.0.1', '--port', '0', '--mqtt-port', String(await freePort()), '--log-level', 'info', ...extra];

const baseline = !args.includes('--flags-only');
if (baseline) await row('bare Node (a timer)', [node, '-e', 'console.log("PORT 0"); setInterval(() => {}, 1 << 30)']);
if (baseline) await row('raw uWebSockets.js (App + ws route, listening)', [node, '--input-type=module', '-e', "import uWS from 'uWebSockets.js'; uWS.App().ws('/*', {}).listen('127.0.0.1', 0, (t) => console.log('PORT ' + uWS.us_socket_local_port(t)));"]);
if (baseline) await row('broker, broker/dist (unbundled)', await withPort(join(root, 'broker', 'dist', 'main.js')));
if (baseline) await row('broker, release bundle', await withPort(join(bundle, 'topicast.js')));
if (baseline) await row('broker + in-process agent (--agent, 5 s interval), bundle', await withPort(join(bundle, 'topicast.js'), ['--agent']), { windowSec: agentSeconds, cpu: true });

// Two processes: the broker and topicast-agent (the bundle's), summed.
if (baseline) {
  const broker = spawnChild(node, (await withPort(join(bundle, 'topicast.js'))).slice(1), { cwd: join(root, 'bench') });
  const port = await listening(broker);
  const agent = spawnChild(node, [join(bundle, 'topicast-agent.js'), '--url', `ws://127.0.0.1:${port}/ws`, '--log-level', 'warn']);
  try {
    await sleep(settleSec * 1000);
    const m = await measure([broker.pid, agent.pid], agentSeconds);
    rows.push({ name: 'broker + topicast-agent, two processes, bundle', rssMiB: m.rssMiB, cpuPct: m.cpuPct });
    console.error(`footprint: two processes: ${m.rssMiB} MiB, ${m.cpuPct} % CPU`);
  } finally {
    await agent.stop();
    await broker.stop();
  }
}

if (baseline) await row(`broker, bundle, ${connections} idle SDK connections`, await withPort(join(bundle, 'topicast.js')), {
  during: async (port) => {
    const clients: Client[] = [];
    for (let i = 0; i < connections; i += 50) {
      clients.push(...(await Promise.all(Array.from({ length: Math.min(50, connections - i) }, () => connect(`ws://127.0.0.1:${port}/ws`, { reconnect: false })))));
    }
    return async () => {
      await Promise.all(clients.map((c) => c.close()));
    };
  },
});

if (!args.includes('--no-flags')) {
  const profiles: [string, string[]][] = [
    ['--max-semi-space-size=1', ['--max-semi-space-size=1']],
    ['--max-semi-space-size=1 --max-old-space-size=64', ['--max-semi-space-size=1', '--max-old-space-size=64']],
    ['--optimize-for-size', ['--optimize-for-size']],
    ['--max-semi-space-size=1 --optimize-for-size', ['--max-semi-space-size=1', '--optimize-for-size']],
    ['--no-opt', ['--no-opt']],
    ['--lite-mode', ['--lite-mode']],
  ];
  await row('broker, bundle, --lite-mode', await withPort(join(bundle, 'topicast.js'), [], ['--lite-mode']));
  for (const [label, flags] of profiles) {
    await row(`broker + in-process agent, bundle, ${label}`, await withPort(join(bundle, 'topicast.js'), ['--agent'], flags), { windowSec: agentSeconds, cpu: true });
  }
}

console.log('| process | VmRSS MiB | CPU % of a core |\n|---|---:|---:|');
for (const r of rows) console.log(`| ${r.name} | ${r.rssMiB} | ${r.cpuPct ?? ''} |`);
console.log(JSON.stringify({ node: process.version, arch: process.arch, tarball, settleSec, seconds, agentSeconds, connections, rows }));
process.exit(0);
