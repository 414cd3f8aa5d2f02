#!/usr/bin/env node
// Measures topicast-agent's footprint: resident memory (VmRSS from /proc/<pid>/status, sampled every
// second) and CPU use (utime + stime from /proc/<pid>/stat over the measured window), at the default
// interval unless told otherwise. Linux only.
//
// Usage: node sdk/scripts/agent-footprint.js [--seconds 60] [--warmup 5] [--url ws://HOST:PORT/ws]
//          [--node-options "--max-semi-space-size=1"] [-- agent args...]
// Without --url it starts a broker (broker/dist/main.js) on an ephemeral port on 127.0.0.1 for the run.
// Prints one JSON object on stdout. Build first: npx tsc -b sdk broker
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../dist/agent/cli.js', import.meta.url));
const BROKER = fileURLToPath(new URL('../../broker/dist/main.js', import.meta.url));

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const own = dash < 0 ? argv : argv.slice(0, dash);
const agentArgs = dash < 0 ? [] : argv.slice(dash + 1);
const opt = (name, fallback) => {
  const i = own.indexOf(`--${name}`);
  return i >= 0 && own[i + 1] !== undefined ? own[i + 1] : fallback;
};
const seconds = Number(opt('seconds', '60'));
const warmup = Number(opt('warmup', '5'));
let url = opt('url', undefined);
const nodeOptions = opt('node-options', '').split(' ').filter((o) => o !== '');
if (!(seconds > 0) || !(warmup >= 0)) {
  console.error('agent-footprint: --seconds must be > 0 and --warmup ≥ 0');
  process.exit(2);
}
if (!existsSync(CLI)) {
  console.error(`agent-footprint: ${CLI} is missing; build with: npx tsc -b sdk broker`);
  process.exit(2);
}

let clockTicks = 100;
try {
  clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  // getconf is in libc-bin on every Debian; 100 is the Linux default anyway
}

const children = [];
function cleanup() {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
}
process.on('exit', cleanup);
process.on('SIGINT', () => process.exit(130));

function lines(stream, onLine) {
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (c) => {
    buf += c;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      onLine(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
}

async function startBroker() {
  if (!existsSync(BROKER)) throw new Error(`${BROKER} is missing; pass --url or build the broker`);
  const proc = spawn(process.execPath, [BROKER, '--host', '127.0.0.1', '--port', '0', '--mqtt-port', '0', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the broker did not start within 10 s')), 10_000);
    const onLine = (line) => {
      if (!line.includes('"listening"')) return;
      try {
        const port = JSON.parse(line).port;
        clearTimeout(timer);
        resolve(`ws://127.0.0.1:${port}/ws`);
      } catch {
        // another line
      }
    };
    lines(proc.stdout, onLine);
    lines(proc.stderr, onLine);
    proc.on('exit', (code) => reject(new Error(`the broker exited with ${code}`)));
  });
}

/** VmRSS (what top shows) and its anonymous part (RssAnon: the agent's own memory; the rest is the
 * node binary and libraries mapped from disk, shared with every other Node process). */
function memoryKiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const field = (name) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN);
  return { rss: field('VmRSS'), anon: field('RssAnon') };
}
const stats = (xs) => ({ min: Math.min(...xs), avg: Math.round(xs.reduce((a, b) => a + b, 0) / xs.length), max: Math.max(...xs), last: xs.at(-1) });

function cpuTicks(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime (fields 14 and 15)
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function main() {
  if (!url) url = await startBroker();
  const args = [...nodeOptions, CLI, '--url', url, '--id', `footprint-${process.pid}`, '--log-level', 'warn', ...agentArgs];
  const agent = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(agent);
  const log = [];
  lines(agent.stderr, (l) => log.push(l));
  agent.on('exit', (code, signal) => {
    if (!done) {
      console.error(`agent-footprint: the agent exited early (${signal ?? code})\n${log.join('\n')}`);
      process.exit(1);
    }
  });
  let done = false;
  await sleep(warmup * 1000);
  const startTicks = cpuTicks(agent.pid);
  const startMs = Date.now();
  const rss = [];
  const anon = [];
  const sample = () => {
    const m = memoryKiB(agent.pid);
    rss.push(m.rss);
    anon.push(m.anon);
  };
  for (let i = 0; i < seconds; i++) {
    sample();
    await sleep(1000);
  }
  const ticks = cpuTicks(agent.pid) - startTicks;
  const elapsedSec = (Date.now() - startMs) / 1000;
  sample();
  done = true;
  agent.kill('SIGTERM');
  const cpuSec = ticks / clockTicks;
  const result = {
    command: `node ${args.map((a) => (a.includes(' ') ? JSON.stringify(a) : a)).join(' ')}`,
    warmupSec: warmup,
    measuredSec: Math.round(elapsedSec * 10) / 10,
    rssKiB: stats(rss),
    rssAnonKiB: stats(anon),
    cpuSec: Math.round(cpuSec * 1000) / 1000,
    cpuPercentOfOneCore: Math.round((10000 * cpuSec) / elapsedSec) / 100,
    node: process.version,
    agentWarnings: log.length,
  };
  console.log(JSON.stringify(result, null, 2));
  await new Promise((r) => agent.once('exit', r));
}

main().then(
  () => {
    cleanup();
    process.exit(0);
  },
  (err) => {
    console.error(`agent-footprint: ${err.message}`);
    cleanup();
    process.exit(1);
  },
);
