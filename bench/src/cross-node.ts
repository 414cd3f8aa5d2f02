/**
 * Cross-node fan-out (issue 8): the fan-out 1 → `subs` scenario of scenarios.ts (one topic,
 * 64-byte payloads, same credit window), but with `nodes` Topicast processes joined by a local
 * nats-server (`--bus nats://127.0.0.1:PORT`, JetStream on as the NATS bus needs it for retained
 * values): the publisher on node A, the subscribers spread evenly over the other nodes, so every
 * delivery crosses NATS (A → NATS → each subscribing node → its WebSockets).
 *
 * Method: every node and nats-server run pinned to the broker core, the generators to the other,
 * as in the single-node run. CPU per delivery is the sum over the nodes and nats-server across the
 * measured window; the row also splits it (nodes, NATS) and gives NATS's CPU per million messages
 * it relayed (one per subscribing node per published message), the figure docs/SCALING.md uses.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Gen, linkCredit } from './control.js';
import { freePort, sleep, spawnChild, waitFor, type Child } from './proc.js';
import { BROKER_CPU, GEN_CPU, target, tcpOpen, type Running } from './peers.js';
import { round, snapshot, throughputRow, type Row, type Timing } from './scenarios.js';

/** Null when nats-server is installed, else why the scenario is skipped. */
export function crossNodeUnavailable(): string | null {
  try {
    execFileSync('which', ['nats-server'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'nats-server not installed (apt-get install nats-server)';
  }
}

async function startNats(): Promise<{ child: Child; url: string; stop(): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'bench-nats-js-'));
  const child = spawnChild('nats-server', ['-a', '127.0.0.1', '-p', String(port), '-js', '-sd', dir], { cpu: BROKER_CPU });
  await waitFor('nats-server listening', async () => {
    if (child.proc.exitCode !== null) throw new Error(`nats-server exited: ${child.logs.join(' | ')}`);
    return tcpOpen(port);
  }, 10_000);
  return {
    child,
    url: `nats://127.0.0.1:${port}`,
    async stop() {
      await child.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Ready = /healthz 200, which with a bus means connected to it (the broker's readiness). */
async function nodeReady(r: Running): Promise<void> {
  await waitFor(`node on ${r.ep.port} ready (${r.child.logs.slice(-3).join(' | ')})`, async () => {
    if (r.child.proc.exitCode !== null) throw new Error(`topicast node exited: ${r.child.logs.join(' | ')}`);
    return fetch(`http://127.0.0.1:${r.ep.port}/healthz`).then((res) => res.ok, () => false);
  }, 15_000);
}

export async function fanOutCrossNode(nodes: number, subs: number, run: number, timing: Timing): Promise<Row> {
  if (nodes < 2) throw new Error('cross-node fan-out needs at least 2 nodes');
  const windowMsgs = Math.max(100, Math.round(200_000 / subs)); // as in the single-node fan-out
  const nats = await startNats();
  const running: Running[] = [];
  const gens: Gen[] = [];
  try {
    for (let i = 0; i < nodes; i++) running.push(await target('topicast').start({ args: ['--bus', nats.url] }));
    for (const r of running) await nodeReady(r);
    const sub = Gen.start('sub', GEN_CPU);
    const pub = Gen.start('pub', GEN_CPU);
    gens.push(sub, pub);
    const topic = 'bench/fanout';
    const subNodes = running.slice(1);
    await sub.request({ t: 'open', ep: subNodes[0]!.ep, eps: subNodes.map((r) => r.ep), count: subs, topic, subscribe: topic, step: Math.ceil(windowMsgs / 4), concurrency: 50 }, 'opened', 60_000);
    await pub.request({ t: 'open', ep: running[0]!.ep, count: 1, topic }, 'opened');
    // Interest reaches NATS asynchronously after the SUBACK; a message published before would be
    // lost to every subscriber and shrink the credit window for the whole run.
    await sleep(1000);
    linkCredit(sub, pub);
    await pub.request({ t: 'credit-run', window: windowMsgs, payloadBytes: 64, maxBatch: 64 }, 'running');
    await sleep(timing.warmMs);
    // pids: nats-server first, then the nodes (A, the publisher's, first).
    const pids = [nats.child.pid, ...running.map((r) => r.child.pid)];
    const a = await snapshot(pids, sub, gens);
    await sleep(timing.measureMs);
    const b = await snapshot(pids, sub, gens);
    const stopped = await pub.request({ t: 'stop' }, 'stopped');
    const spread = subNodes.length === 1 ? `${subs} subs on B` : `${subs / subNodes.length} subs on each of ${subNodes.length} other nodes`;
    const row = throughputRow(a, b, { scenario: `fanout-${subs}-cross-node`, target: 'topicast', label: `Topicast, ${nodes} nodes + NATS (pub on A, ${spread})`, run, nodes, subscribers: subs, windowMsgs }, stopped.sent as number);
    const delivered = b.mark.total - a.mark.total;
    if (delivered === 0) throw new Error(`no deliveries across nodes: ${running.map((r) => r.child.logs.slice(-2).join(' | ')).join(' || ')}`);
    const natsCpu = b.parts[0]! - a.parts[0]!;
    const nodesCpu = b.broker - a.broker - natsCpu;
    const published = delivered / subs; // messages in the window (every subscriber got each once)
    const relayed = published * subNodes.length; // NATS sends each message once to each subscribing node
    return {
      ...row,
      nodesCpuSecPerMillion: round(nodesCpu / (delivered / 1e6), 3),
      natsCpuSecPerMillion: round(natsCpu / (delivered / 1e6), 3),
      publisherNodeCpuSecPerMillion: round((b.parts[1]! - a.parts[1]!) / (delivered / 1e6), 3),
      natsRelayedPerSec: Math.round(relayed / (Number(row.seconds) || 1)),
      natsCpuSecPerMillionRelayed: round(natsCpu / (relayed / 1e6), 3),
    };
  } finally {
    for (const g of gens) g.onFloor = () => undefined;
    await Promise.all(gens.map((g) => g.close()));
    await Promise.all(running.map((r) => r.stop()));
    await nats.stop();
  }
}
