/**
 * `node bench/dist/command-round-trip.js [count]`: the round trip of a command from a page to a
 * device program and back (README "Commands to devices"), on loopback: an SDK client's
 * `client.request('devices/bench/set/<name>', value)` → broker → `topicast-agent` (a separate
 * process, native transport) → the actuator's program → its answer → broker → the client. One
 * request at a time (each waits for its answer), `count` (default 1,000) per actuator after 50 of
 * warm-up; reported: median, p90, p99 and max in ms.
 *
 * Actuators measured: `per-command` (a shell script that writes the value to a file and prints it:
 * one fork + exec of /bin/sh per command, the usual case) and `long-running` (the same in a
 * `while read` loop: no process start per command), and for reference a plain SDK responder
 * (`client.reply`) in the agent's place: the broker and SDK share of the trip.
 *
 * The "page" is the SDK in Node: the same client code a page runs (its browser build differs only in
 * the WebSocket object). Latencies are wall time on a machine that may be shared; run it alone.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type Client } from 'topicast';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const count = Number(process.argv[2] ?? 1000);
const WARMUP = 50;

function startBroker(): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(process.execPath, [`${ROOT}broker/dist/main.js`, '--host', '127.0.0.1', '--port', '0', '--mqtt-port', '0', '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let buf = '';
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (chunk: string) => {
      buf += chunk;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.includes('"listening"')) continue;
        const { port } = JSON.parse(line) as { port: number };
        resolve({ proc, url: `ws://127.0.0.1:${port}/ws` });
      }
    });
    proc.once('exit', (code) => reject(new Error(`broker exited (${code})`)));
  });
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function measure(client: Client, topic: string, value: (i: number) => unknown): Promise<number[]> {
  const ms: number[] = [];
  for (let i = 0; i < WARMUP + count; i++) {
    const t0 = performance.now();
    const answer = (await client.request(topic, value(i), { timeoutMs: 30_000 })) as { ok?: boolean } | number;
    const dt = performance.now() - t0;
    if (typeof answer === 'object' ? answer.ok !== true : answer !== value(i)) throw new Error(`${topic}: ${JSON.stringify(answer)}`);
    if (i >= WARMUP) ms.push(dt);
  }
  return ms.sort((a, b) => a - b);
}

const dir = mkdtempSync(join(tmpdir(), 'topicast-bench-cmd-'));
const script = join(dir, 'led.sh');
writeFileSync(script, `#!/bin/sh\nprintf '%s\\n' "$TOPICAST_VALUE" > '${dir}/led'\necho "$TOPICAST_VALUE"\n`);
chmodSync(script, 0o755);
const loop = join(dir, 'loop.sh');
writeFileSync(loop, `#!/bin/sh\nwhile IFS= read -r v; do printf '%s\\n' "$v" > '${dir}/level'; echo "$v"; done\n`);
chmodSync(loop, 0o755);
writeFileSync(
  join(dir, 'agent.json'),
  JSON.stringify({
    actuators: [
      { name: 'led', type: 'boolean', command: [script], maxPerSec: 100_000 },
      { name: 'level', type: 'number', mode: 'long-running', command: [loop], maxPerSec: 100_000 },
    ],
  }),
);

const broker = await startBroker();
const agent = spawn(process.execPath, [`${ROOT}sdk/dist/agent/cli.js`, '--url', broker.url, '--id', 'bench', '--readers', 'none', '--config', join(dir, 'agent.json'), '--log-level', 'warn'], { stdio: ['ignore', 'ignore', 'inherit'] });
const client = await connect(broker.url);
const responder = await connect(broker.url);
try {
  await new Promise<void>((resolve) => void client.subscribe('devices/bench/info', (info) => (info as { actuators?: unknown }).actuators && resolve()));
  await responder.subscribe('bench/echo', (v, meta) => void responder.reply(meta, v));
  const rows: [string, number[]][] = [
    ['per-command shell script (fork + exec per command)', await measure(client, 'devices/bench/set/led', (i) => i % 2 === 0)],
    ['long-running line program', await measure(client, 'devices/bench/set/level', (i) => i)],
    ['SDK responder (client.reply), no program', await measure(client, 'bench/echo', (i) => i)],
  ];
  console.log(`page → device program → page on loopback, ${count.toLocaleString('en')} sequential commands each after ${WARMUP} of warm-up, Node ${process.version}\n`);
  console.log('| responder | median ms | p90 ms | p99 ms | max ms |');
  console.log('|---|---|---|---|---|');
  for (const [name, ms] of rows) {
    console.log(`| ${name} | ${quantile(ms, 0.5).toFixed(2)} | ${quantile(ms, 0.9).toFixed(2)} | ${quantile(ms, 0.99).toFixed(2)} | ${ms[ms.length - 1]!.toFixed(2)} |`);
  }
} finally {
  await client.close();
  await responder.close();
  agent.kill('SIGTERM');
  await new Promise((resolve) => agent.once('exit', resolve));
  broker.proc.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
}
