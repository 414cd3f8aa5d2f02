/**
 * Cross-node scenarios (issue 8): the fan-out 1 → `subs` and fan-in scenarios of scenarios.ts
 * (same topics, 64-byte payloads, same credit windows), but with Topicast nodes joined by a local
 * nats-server (`--bus nats://127.0.0.1:PORT`, JetStream on as the NATS bus needs it for retained
 * values) and the subscribers on other nodes than the publishers, so every delivery crosses NATS
 * (A → NATS → each subscribing node → its WebSockets).
 *
 * Method: every node and nats-server run pinned to the broker core, the generators to the other,
 * as in the single-node run. CPU per delivery is the sum over the nodes and nats-server across the
 * measured window; the rows also split it per process (nodes, NATS; for fan-in the publishers'
 * node and the subscriber's node apart), the figures docs/SCALING.md uses.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { Gen, linkCredit } from './control.js';
import { freePort, sleep, spawnChild, waitFor, type Child } from './proc.js';
import { BROKER_CPU, GEN_CPU, target, tcpOpen, type Running } from './peers.js';
import { round, snapshot, throughputRow, type Row, type Timing, type Window } from './scenarios.js';

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

interface Cluster {
  natsPid: number;
  running: Running[];
  sub: Gen;
  pub: Gen;
}

/** A nats-server, `nodes` Topicast nodes on it (all ready), and the two generators; stops everything after `fn`. */
async function withNodes<T>(nodes: number, fn: (c: Cluster) => Promise<T>, nodeAArgs: string[] = []): Promise<T> {
  if (nodes < 2) throw new Error('a cross-node scenario needs at least 2 nodes');
  const nats = await startNats();
  const running: Running[] = [];
  const gens: Gen[] = [];
  try {
    for (let i = 0; i < nodes; i++) running.push(await target('topicast').start({ args: ['--bus', nats.url], nodeArgs: i === 0 ? nodeAArgs : [] }));
    for (const r of running) await nodeReady(r);
    const sub = Gen.start('sub', GEN_CPU);
    const pub = Gen.start('pub', GEN_CPU);
    gens.push(sub, pub);
    return await fn({ natsPid: nats.child.pid, running, sub, pub });
  } finally {
    for (const g of gens) g.onFloor = () => undefined;
    await Promise.all(gens.map((g) => g.close()));
    await Promise.all(running.map((r) => r.stop()));
    await nats.stop();
  }
}

/** Starts the credited run once interest has reached NATS, and measures one window: [before, after, sent]. */
async function measure(c: Cluster, windowMsgs: number, maxBatch: number, timing: Timing): Promise<[Window, Window, number]> {
  // Interest reaches NATS asynchronously after the SUBACK; a message published before would be
  // lost to every subscriber and shrink the credit window for the whole run.
  await sleep(1000);
  linkCredit(c.sub, c.pub);
  await c.pub.request({ t: 'credit-run', window: windowMsgs, payloadBytes: 64, maxBatch }, 'running');
  await sleep(timing.warmMs);
  // pids: nats-server first, then the nodes (A, the publishers', first).
  const pids = [c.natsPid, ...c.running.map((r) => r.child.pid)];
  const a = await snapshot(pids, c.sub, [c.sub, c.pub]);
  await sleep(timing.measureMs);
  const b = await snapshot(pids, c.sub, [c.sub, c.pub]);
  const stopped = await c.pub.request({ t: 'stop' }, 'stopped');
  if (b.mark.total === a.mark.total) throw new Error(`no deliveries across nodes: ${c.running.map((r) => r.child.logs.slice(-2).join(' | ')).join(' || ')}`);
  return [a, b, stopped.sent as number];
}

/** CPU-s of part `i` (0 = nats-server, 1 = node A, ...) per million of `n`. */
const perMillion = (a: Window, b: Window, i: number, n: number): number => round((b.parts[i]! - a.parts[i]!) / (n / 1e6), 3);

/** Fan-out 1 → `subs`: the publisher on node A, the subscribers spread over the other nodes. */
export async function fanOutCrossNode(nodes: number, subs: number, run: number, timing: Timing): Promise<Row> {
  const windowMsgs = Math.max(100, Math.round(200_000 / subs)); // as in the single-node fan-out
  return withNodes(nodes, async (c) => {
    const topic = 'bench/fanout';
    const subNodes = c.running.slice(1);
    await c.sub.request({ t: 'open', ep: subNodes[0]!.ep, eps: subNodes.map((r) => r.ep), count: subs, topic, subscribe: topic, step: Math.ceil(windowMsgs / 4), concurrency: 50 }, 'opened', 60_000);
    await c.pub.request({ t: 'open', ep: c.running[0]!.ep, count: 1, topic }, 'opened');
    const [a, b, sent] = await measure(c, windowMsgs, 64, timing);
    const spread = subNodes.length === 1 ? `${subs} subs on B` : `${subs / subNodes.length} subs on each of ${subNodes.length} other nodes`;
    const row = throughputRow(a, b, { scenario: `fanout-${subs}-cross-node`, target: 'topicast', label: `Topicast, ${nodes} nodes + NATS (pub on A, ${spread})`, run, nodes, subscribers: subs, windowMsgs }, sent);
    const delivered = b.mark.total - a.mark.total;
    const relayed = (delivered / subs) * subNodes.length; // NATS sends each message once to each subscribing node
    return {
      ...row,
      nodesCpuSecPerMillion: round(Number(row.cpuSecPerMillion) - perMillion(a, b, 0, delivered), 3),
      natsCpuSecPerMillion: perMillion(a, b, 0, delivered),
      publisherNodeCpuSecPerMillion: perMillion(a, b, 1, delivered),
      natsRelayedPerSec: Math.round(relayed / Number(row.seconds)),
      natsCpuSecPerMillionRelayed: perMillion(a, b, 0, relayed),
    };
  });
}

/**
 * Fan-in `pubs` → 1 across two nodes: publishers on devices/<i>/temp on node A, the subscriber on
 * devices/+/temp on node B, so every message crosses NATS once. Per message: what A spends to take
 * it and hand it to the bus, what NATS spends to relay it, what B spends to take it off the bus and
 * deliver it (the figures a capacity estimate needs; docs/SCALING.md).
 */
/** `nodeAArgs`: Node flags for node A only (the publishers' node), e.g. --cpu-prof. */
export async function fanInCrossNode(pubs: number, run: number, timing: Timing, nodeAArgs: string[] = []): Promise<Row> {
  const windowMsgs = 2000; // as in the single-node fan-in
  return withNodes(2, async (c) => {
    const [nodeA, nodeB] = c.running;
    await c.sub.request({ t: 'open', ep: nodeB!.ep, count: 1, topic: 'devices/+/temp', subscribe: 'devices/+/temp', step: windowMsgs / 4 }, 'opened');
    await c.pub.request({ t: 'open', ep: nodeA!.ep, count: pubs, topic: 'devices/{i}/temp', concurrency: 50 }, 'opened', 60_000);
    const [a, b, sent] = await measure(c, windowMsgs, 256, timing);
    const row = throughputRow(a, b, { scenario: 'fanin-cross-node', target: 'topicast', label: `Topicast, 2 nodes + NATS (${pubs} pubs on A, the + subscriber on B)`, run, nodes: 2, publishers: pubs, windowMsgs }, sent);
    const messages = b.mark.total - a.mark.total;
    return {
      ...row,
      publisherNodeCpuSecPerMillion: perMillion(a, b, 1, messages),
      subscriberNodeCpuSecPerMillion: perMillion(a, b, 2, messages),
      natsCpuSecPerMillion: perMillion(a, b, 0, messages),
    };
  }, nodeAArgs);
}
