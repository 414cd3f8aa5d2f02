/**
 * Persistent MQTT sessions in JetStream (issue 21, cluster/DESIGN.md "Persistent MQTT sessions in
 * JetStream") against the local session log (`--data`), in the same run: what storing a session's
 * change costs per QoS 1 message. One persistent subscriber (MQTT 5, session expiry 600) online
 * and acknowledging, one publisher on the same node; every publish is queued or sent to the
 * session (one record), and its PUBACK from the subscriber completes it (a second record); the
 * publisher's PUBACK waits until the session's record is stored.
 * - latency: 1,000 sequential QoS 1 publishes, send → PUBACK (median, p99);
 * - cost: 5,000 publishes with 100 outstanding: rate, broker CPU (and nats-server CPU) per message.
 * One nats-server with JetStream (R1) on 127.0.0.1; every process on this machine.
 *
 * With `--adoption [N]` (cluster/DESIGN.md "Orphaned sessions"): N (1,000) offline persistent
 * sessions on node A, each subscribed to its own topic; A is drained (SIGTERM) and node B adopts
 * them; then node C starts, B is killed with -9 and C adopts them. For each: the time from the
 * signal until the adopter counts N adopted (`topicast_mqtt_cluster_sessions_adopted_total`),
 * the adopter's and nats-server's CPU per adopted session, and a QoS 1 message published to every
 * session after the adoption, found queued on the adopter. Bus tuning `heartbeatMs=500&nodeTimeoutMs=3000`.
 *
 * Usage: npm run build && node bench/dist/cluster-sessions.js [--adoption [N]]   (under a minute each; prints one JSON object)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { cpuSeconds, freePort, spawnChild, waitFor, type Child } from './proc.js';
import { tcpOpen } from './peers.js';

const BROKER = fileURLToPath(new URL('../../broker/dist/main.js', import.meta.url));
const SEQUENTIAL = 1000;
const PIPELINED = 5000;
const OUTSTANDING = 100;

const round = (n: number, d = 2): number => Math.round(n * 10 ** d) / 10 ** d;
const quantile = (sorted: number[], q: number): number => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;

async function startBroker(extra: string[]): Promise<{ child: Child; mqttPort: number; port: number }> {
  const port = await freePort();
  const mqttPort = await freePort();
  const child = spawnChild(process.execPath, [
    BROKER, '--host', '127.0.0.1', '--port', String(port), '--mqtt-port', String(mqttPort), '--sys-interval-sec', '0', '--log-level', 'warn',
    '--max-publishes-per-sec', '0', ...extra,
  ], {});
  await waitFor('the broker', () => {
    if (child.proc.exitCode !== null) throw new Error(`broker exited: ${child.logs.join(' | ')}`);
    return tcpOpen(mqttPort);
  }, 60_000);
  return { child, mqttPort, port };
}

async function metric(port: number, name: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? 0 : Number(line.slice(name.length + 1));
}

/** Time from `signal` to `n` sessions adopted on `adopter`, and the CPU that cost. */
async function adoptionAfter(signal: () => void, adopter: { child: Child; port: number }, natsPid: number, n: number): Promise<object> {
  const before = await metric(adopter.port, 'topicast_mqtt_cluster_sessions_adopted_total');
  const c0 = cpuSeconds(adopter.child.pid);
  const n0 = cpuSeconds(natsPid);
  const t0 = performance.now();
  signal();
  let firstMs = -1;
  await waitFor('the adoptions', async () => {
    const done = (await metric(adopter.port, 'topicast_mqtt_cluster_sessions_adopted_total')) - before;
    if (done > 0 && firstMs < 0) firstMs = performance.now() - t0;
    return done >= n;
  }, 120_000);
  const ms = performance.now() - t0;
  const cpu = cpuSeconds(adopter.child.pid) - c0;
  const natsCpu = cpuSeconds(natsPid) - n0;
  return {
    sessions: n, firstAdoptedMs: Math.round(firstMs), allAdoptedMs: Math.round(ms), adoptingMs: Math.round(ms - firstMs),
    adopterCpuMsPerSession: round((cpu / n) * 1000, 3), natsCpuMsPerSession: round((natsCpu / n) * 1000, 3),
  };
}

async function adoption(n: number): Promise<object> {
  const dir = mkdtempSync(join(tmpdir(), 'topicast-bench-adoption-'));
  const natsPort = await freePort();
  const nats = spawnChild('nats-server', ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', join(dir, 'js')], {});
  const bus = ['--bus', `nats://127.0.0.1:${natsPort}?heartbeatMs=500&nodeTimeoutMs=3000`];
  const nodes: Child[] = [];
  try {
    await waitFor('nats-server', () => tcpOpen(natsPort), 10_000);
    const a = await startBroker([...bus, '--node-id', 'bench-a']);
    const b = await startBroker([...bus, '--node-id', 'bench-b']);
    nodes.push(a.child, b.child);
    // N persistent sessions on A, each subscribed to its own topic, then offline.
    const t0 = performance.now();
    let next = 0;
    const make = async (): Promise<void> => {
      while (next < n) {
        const i = next++;
        const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${a.mqttPort}`, { protocolVersion: 5, clientId: `adopt-${i}`, clean: false, properties: { sessionExpiryInterval: 3600 }, reconnectPeriod: 0 });
        await c.subscribeAsync(`adopt/${i}`, { qos: 1 });
        await c.endAsync();
      }
    };
    await Promise.all(Array.from({ length: 20 }, make));
    const setupMs = performance.now() - t0;
    await waitFor('A holding every session', async () => (await metric(a.port, 'topicast_mqtt_sessions')) >= n, 30_000);
    const drain = await adoptionAfter(() => a.child.proc.kill('SIGTERM'), b, nats.pid, n);
    await a.child.exited;
    // Each adopted session queues what is published for it after the adoption.
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${b.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0 });
    for (let i = 0; i < n; i++) await pub.publishAsync(`adopt/${i}`, 'after', { qos: 1 });
    await pub.endAsync();
    await waitFor('one message queued per adopted session', async () => (await metric(b.port, 'topicast_mqtt_queued')) >= n, 30_000);
    const c = await startBroker([...bus, '--node-id', 'bench-c']);
    nodes.push(c.child);
    await new Promise((r) => setTimeout(r, 1500)); // B and C hear each other's heartbeats
    const kill = await adoptionAfter(() => b.child.proc.kill('SIGKILL'), c, nats.pid, n);
    const queuedOnC = await metric(c.port, 'topicast_mqtt_queued');
    return { setupMsPerSession: round(setupMs / n, 2), drain, kill9: kill, queuedAfterKill: queuedOnC };
  } finally {
    for (const child of nodes) await child.stop();
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function measure(mqttPort: number, pid: number, natsPid: number | undefined): Promise<object> {
  const url = `mqtt://127.0.0.1:${mqttPort}`;
  const sub = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: 'bench-sub', clean: false, properties: { sessionExpiryInterval: 600 }, reconnectPeriod: 0 });
  await sub.subscribeAsync('s/#', { qos: 1 });
  let received = 0;
  sub.on('message', () => received++);
  const pub = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: 'bench-pub', reconnectPeriod: 0 });
  const payload = Buffer.alloc(64, 0x61);
  const times: number[] = [];
  for (let i = 0; i < SEQUENTIAL; i++) {
    const t0 = performance.now();
    await pub.publishAsync(`s/${i % 100}`, payload, { qos: 1 });
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  await waitFor('sequential deliveries', () => received >= SEQUENTIAL, 30_000);
  const c0 = cpuSeconds(pid);
  const n0 = natsPid === undefined ? 0 : cpuSeconds(natsPid);
  const t0 = performance.now();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < PIPELINED) {
      const i = next++;
      await pub.publishAsync(`s/${i % 100}`, payload, { qos: 1 });
    }
  };
  await Promise.all(Array.from({ length: OUTSTANDING }, worker));
  await waitFor('pipelined deliveries', () => received >= SEQUENTIAL + PIPELINED, 60_000);
  const ms = performance.now() - t0;
  const cpu = cpuSeconds(pid) - c0;
  const natsCpu = natsPid === undefined ? 0 : cpuSeconds(natsPid) - n0;
  await pub.endAsync();
  await sub.endAsync();
  return {
    sequential: { publishes: SEQUENTIAL, pubackMedianMs: round(quantile(times, 0.5)), pubackP99Ms: round(quantile(times, 0.99)) },
    pipelined: { publishes: PIPELINED, outstanding: OUTSTANDING, perSec: Math.round(PIPELINED / (ms / 1000)), brokerCpuUsPerMessage: round((cpu / PIPELINED) * 1e6), natsCpuUsPerMessage: round((natsCpu / PIPELINED) * 1e6) },
  };
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'topicast-bench-sessions-'));
  const out: Record<string, object> = {};
  try {
    const local = await startBroker(['--data', join(dir, 'data')]);
    try {
      out.local = await measure(local.mqttPort, local.child.pid, undefined);
    } finally {
      await local.child.stop();
    }
    const natsPort = await freePort();
    const nats = spawnChild('nats-server', ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', join(dir, 'js')], {});
    try {
      await waitFor('nats-server', () => tcpOpen(natsPort), 10_000);
      const node = await startBroker(['--bus', `nats://127.0.0.1:${natsPort}`, '--node-id', 'bench-sessions']);
      try {
        out.jetstream = await measure(node.mqttPort, node.child.pid, nats.pid);
      } finally {
        await node.child.stop();
      }
    } finally {
      await nats.stop();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify(out, null, 2));
}

const at = process.argv.indexOf('--adoption');
if (at >= 0) console.log(JSON.stringify(await adoption(Number(process.argv[at + 1] ?? 1000) || 1000), null, 2));
else await main();
