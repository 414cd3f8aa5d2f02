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
 * Usage: npm run build && node bench/dist/cluster-sessions.js   (under a minute; prints one JSON object)
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

async function startBroker(extra: string[]): Promise<{ child: Child; mqttPort: number }> {
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
  return { child, mqttPort };
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

await main();
