/**
 * History in JetStream (issue 21, cluster/DESIGN.md "History in JetStream") against a single
 * node's local history, in the same run:
 * - latency: 2,000 sequential acknowledged publishes (native id > 0) on history topics, each
 *   timed from send to ACK and to its DELIVERY to a subscriber on the same node (median, p99);
 * - cost: 20,000 pipelined publishes (64 B, 100 topics) to one subscriber, broker CPU (and
 *   nats-server CPU) per message;
 * - resume replay speed: a subscriber resumes `h/#` from the start of the stream (20,000 + 2,000
 *   messages) — on the same node for local history, on a second node for JetStream (its mirror);
 * - a third node joining after that: start-up to listening with the whole stream loaded into its
 *   mirror, against the second node's start on an empty stream (the stream's load speed).
 * One nats-server with JetStream (R1) on 127.0.0.1; every process on this machine.
 *
 * Usage: npm run build && node bench/dist/cluster-history.js   (about a minute; prints one JSON object)
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import WebSocket from 'ws';
import { decodeServerFrame, encodeFrame, Op, SUBPROTOCOL, type ServerFrame } from 'topicast/protocol';
import { cpuSeconds, freePort, spawnChild, waitFor, type Child } from './proc.js';
import { tcpOpen } from './peers.js';

const BROKER = fileURLToPath(new URL('../../broker/dist/main.js', import.meta.url));
const SEQUENTIAL = 2000;
const PIPELINED = 20_000;
const TOPICS = 100;

const round = (n: number, d = 2): number => Math.round(n * 10 ** d) / 10 ** d;

class Link {
  private waiting: ((f: ServerFrame) => boolean)[] = [];
  onFrame: ((f: ServerFrame) => void) | undefined;
  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => {
      const f = decodeServerFrame(data);
      this.onFrame?.(f);
      if (this.waiting.length > 0) this.waiting = this.waiting.filter((w) => !w(f));
    });
  }

  static open(url: string): Promise<Link> {
    const ws = new WebSocket(url, SUBPROTOCOL, { perMessageDeflate: false });
    return new Promise((resolve, reject) => {
      ws.once('open', () => resolve(new Link(ws)));
      ws.once('error', reject);
    });
  }

  send(frame: Parameters<typeof encodeFrame>[0]): void {
    this.ws.send(encodeFrame(frame));
  }

  until(on: (f: ServerFrame) => boolean): Promise<void> {
    return new Promise((resolve) => this.waiting.push((f) => (on(f) ? (resolve(), true) : false)));
  }

  close(): void {
    this.ws.close();
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function startBroker(extra: string[]): Promise<{ child: Child; url: string }> {
  const port = await freePort();
  const child = spawnChild(process.execPath, [
    BROKER, '--host', '127.0.0.1', '--port', String(port), '--mqtt-port', '0', '--sys-interval-sec', '0', '--log-level', 'warn',
    '--history-filters', 'h/#', '--history-max-messages', String(PIPELINED * 2), '--history-max-bytes', String(1 << 30),
    '--max-publishes-per-sec', '0', ...extra,
  ], {});
  const url = `ws://127.0.0.1:${port}/ws`;
  await waitFor('the broker', async () => {
    if (child.proc.exitCode !== null) throw new Error(`broker exited: ${child.logs.join(' | ')}`);
    try {
      (await Link.open(url)).close();
      return true;
    } catch {
      return false;
    }
  }, 60_000);
  return { child, url };
}

/** Latency, cost and replay on `pubNode`, replaying on `replayNode`; `natsPid` counts nats-server CPU too. */
async function measure(pubUrl: string, pubPid: number, replayUrl: string, natsPid: number | undefined): Promise<object> {
  const pub = await Link.open(pubUrl);
  const sub = await Link.open(pubUrl);
  let epoch = '';
  sub.send({ op: Op.subscribe, id: 1, filters: ['h/#'], options: {} });
  await sub.until((f) => {
    if (f.op === Op.ack && f.id === 1) epoch = f.result!.epoch!;
    return f.op === Op.snapshotEnd && f.id === 1;
  });
  const payload = Buffer.alloc(64, 0x61);

  // Sequential: send → ACK, send → DELIVERY.
  const ackMs: number[] = [];
  const deliveryMs: number[] = [];
  let sentAt = 0;
  let delivered = false;
  sub.onFrame = (f) => {
    if (f.op === Op.delivery && !delivered) {
      delivered = true;
      deliveryMs.push(performance.now() - sentAt);
    }
  };
  for (let i = 1; i <= SEQUENTIAL; i++) {
    delivered = false;
    sentAt = performance.now();
    const id = 10 + i;
    pub.send({ op: Op.publish, id, topic: `h/t${i % TOPICS}`, payload, flags: 0 });
    await pub.until((f) => f.op === Op.ack && f.id === id);
    ackMs.push(performance.now() - sentAt);
    if (!delivered) await sub.until((f) => f.op === Op.delivery);
  }
  ackMs.sort((a, b) => a - b);
  deliveryMs.sort((a, b) => a - b);

  // Pipelined: CPU per message until the subscriber has them all.
  let got = 0;
  sub.onFrame = (f) => {
    if (f.op === Op.delivery) got++;
  };
  const c0 = cpuSeconds(pubPid);
  const n0 = natsPid === undefined ? 0 : cpuSeconds(natsPid);
  const t0 = performance.now();
  for (let i = 0; i < PIPELINED; i++) pub.send({ op: Op.publish, id: i === PIPELINED - 1 ? 1 : 0, topic: `h/t${i % TOPICS}`, payload, flags: 0 });
  await pub.until((f) => f.op === Op.ack && f.id === 1);
  await waitFor('every pipelined message delivered', () => got >= PIPELINED, 120_000, 5);
  const pipeMs = performance.now() - t0;
  const brokerCpu = cpuSeconds(pubPid) - c0;
  const natsCpu = natsPid === undefined ? 0 : cpuSeconds(natsPid) - n0;
  pub.close();
  sub.close();

  // Resume from the start of the stream on the replay node.
  const replayer = await Link.open(replayUrl);
  let replayed = 0;
  let recovered: boolean | undefined;
  const r0 = performance.now();
  replayer.send({ op: Op.subscribe, id: 2, filters: ['h/#'], options: { resume: { epoch, offset: 0 } } });
  await replayer.until((f) => {
    if (f.op === Op.ack && f.id === 2) recovered = f.result!.recovered;
    if (f.op === Op.delivery) replayed++;
    return f.op === Op.snapshotEnd && f.id === 2;
  });
  const replayMs = performance.now() - r0;
  replayer.close();
  return {
    sequential: { publishes: SEQUENTIAL, ackMedianMs: round(quantile(ackMs, 0.5), 3), ackP99Ms: round(quantile(ackMs, 0.99), 3), deliveryMedianMs: round(quantile(deliveryMs, 0.5), 3), deliveryP99Ms: round(quantile(deliveryMs, 0.99), 3) },
    pipelined: { publishes: PIPELINED, ms: Math.round(pipeMs), perSec: Math.round(PIPELINED / (pipeMs / 1000)), brokerCpuUsPerMessage: round((brokerCpu / PIPELINED) * 1e6), natsCpuUsPerMessage: round((natsCpu / PIPELINED) * 1e6) },
    replay: { recovered, replayed, ms: Math.round(replayMs), perSec: Math.round(replayed / (replayMs / 1000)) },
  };
}

async function main(): Promise<void> {
  const out: Record<string, object> = {};
  // Local history: one node, no bus.
  {
    const node = await startBroker([]);
    try {
      out.local = await measure(node.url, node.child.pid, node.url, undefined);
    } finally {
      await node.child.stop();
    }
  }
  // JetStream: two nodes on one nats-server; the replay runs on the second node.
  const natsPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'bench-history-js-'));
  const nats = spawnChild('nats-server', ['-a', '127.0.0.1', '-p', String(natsPort), '-js', '-sd', dir], {});
  try {
    await waitFor('nats-server', () => tcpOpen(natsPort), 10_000);
    const bus = `nats://127.0.0.1:${natsPort}`;
    const a = await startBroker(['--bus', bus, '--node-id', 'bench-a']);
    let t0 = performance.now();
    const b = await startBroker(['--bus', bus, '--node-id', 'bench-b']);
    const emptyStartMs = performance.now() - t0;
    try {
      out.jetstream = await measure(a.url, a.child.pid, b.url, nats.pid);
      // A node joining loads the whole stream into its mirror before it listens.
      t0 = performance.now();
      const c = await startBroker(['--bus', bus, '--node-id', 'bench-c']);
      const fullStartMs = performance.now() - t0;
      await c.child.stop();
      const messages = SEQUENTIAL + PIPELINED;
      out.join = { emptyStreamStartMs: Math.round(emptyStartMs), fullStreamStartMs: Math.round(fullStartMs), messages, loadPerSec: Math.round(messages / (Math.max(1, fullStartMs - emptyStartMs) / 1000)) };
    } finally {
      await Promise.all([a.child.stop(), b.child.stop()]);
    }
  } finally {
    await nats.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  console.log(JSON.stringify({ payloadBytes: 64, topics: TOPICS, ...out }, null, 2));
}

await main();
