/**
 * The cluster outage policy, measured (broker/src/cluster/DESIGN.md "Outage policy: figures").
 *
 *   node --expose-gc bench/dist/cluster-outage.js [--messages 10000]
 *
 * Two nodes in this process (a router and a bridge each, joined by the in-memory bus, so the
 * figures are the bridge's own costs, without an engine or sockets):
 * - publish cost on the sending node with the bus up and down, as ratios to the same node without
 *   a bus, in the same run (local subscriber on every message);
 * - the outage buffer: heap bytes per buffered acknowledged publish, and the time to replay the
 *   buffer once the bus is back until every ack resolved and the other node has every message;
 * - retained conflation: many writes over few topics while down → one waiting write per topic;
 * - how fast a publish past the bound is refused.
 * Results: stdout and bench/results/cluster-outage.json.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createMessage, Router, type Message, type Subscriber } from '@topicast/broker';
import type * as BridgeModule from '../../broker/src/cluster/bridge.js';
import type * as MemoryBusModule from '../../broker/src/cluster/memory-bus.js';
import { ROOT } from './peers.js';

const dist = new URL('../../broker/dist/cluster/', import.meta.url);
const { ClusterBridge } = (await import(new URL('bridge.js', dist).href)) as typeof BridgeModule;
const { MemoryBusHub } = (await import(new URL('memory-bus.js', dist).href)) as typeof MemoryBusModule;

const argv = process.argv.slice(2);
const MESSAGES = Number(argv[argv.indexOf('--messages') + 1] || 10_000);
const PUBLISHES = 200_000;
const silent = { level: 'silent', info() {}, warn() {}, error() {}, debug() {}, trace() {}, fatal() {}, child() { return silent; } };
const payload = new Uint8Array(64).fill(7);
const settle = (): Promise<void> => new Promise((r) => setImmediate(r));
const gc = (globalThis as { gc?: () => void }).gc;

class Counter implements Subscriber {
  routerStamp = 0;
  n = 0;
  deliver(_m: Message): void {
    this.n++;
  }
}

async function pair(maxMessages: number) {
  const hub = new MemoryBusHub();
  const make = async (id: string) => {
    const router = new Router();
    const bridge = new ClusterBridge(hub.createNode(id), router, { lingerMs: 5000, snapshotTimeoutMs: 2000, maxMessages, maxBytes: 1 << 30, maxWaitMs: 60_000, retryAfterSec: 5 }, silent as never, { willsPublished: 0 });
    await bridge.start();
    return { router, bridge };
  };
  const a = await make('a');
  const b = await make('b');
  const local = new Counter();
  const remote = new Counter();
  a.router.subscribe(local, 'bench/#', { qos: 0 });
  b.router.subscribe(remote, 'bench/#', { qos: 0 });
  await settle();
  return { hub, a, b, local, remote };
}

/** ns per publish for `PUBLISHES` QoS 0 publishes, including the other node's routing of them. */
async function publishCost(router: Router, done: () => boolean): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < PUBLISHES; i++) {
    router.publish(createMessage(`bench/${i & 63}`, payload));
    if ((i & 1023) === 1023) await settle(); // lets the bus deliver, as the event loop would between reads
  }
  while (!done()) await settle();
  return ((performance.now() - t0) * 1e6) / PUBLISHES;
}

async function main(): Promise<void> {
  // 1. Publish cost: no bus / bus up / bus down, interleaved twice, medians.
  const costs: Record<'single' | 'up' | 'down', number[]> = { single: [], up: [], down: [] };
  for (let round = 0; round < 2; round++) {
    const single = new Router();
    const c = new Counter();
    single.subscribe(c, 'bench/#', { qos: 0 });
    costs.single.push(await publishCost(single, () => c.n >= PUBLISHES));
    const up = await pair(MESSAGES);
    costs.up.push(await publishCost(up.a.router, () => up.remote.n >= PUBLISHES));
    const down = await pair(MESSAGES);
    down.hub.setDown(true);
    costs.down.push(await publishCost(down.a.router, () => down.local.n >= PUBLISHES));
    if (down.a.bridge.outbound.stats.dropped !== PUBLISHES) throw new Error('every cross-node QoS 0 message should be dropped while down');
  }
  const median = (xs: number[]): number => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const single = median(costs.single);
  const up = median(costs.up);
  const down = median(costs.down);

  // 2. Outage buffer: MESSAGES acknowledged publishes while down, then replay.
  const o = await pair(MESSAGES);
  o.hub.setDown(true);
  gc?.();
  const heap0 = process.memoryUsage().heapUsed;
  const acks: Promise<void>[] = [];
  for (let i = 0; i < MESSAGES; i++) {
    const { durable } = o.a.router.publish(createMessage(`bench/${i}`, payload), true);
    acks.push(durable as Promise<void>);
  }
  gc?.();
  const perBuffered = (process.memoryUsage().heapUsed - heap0) / MESSAGES;
  const tRefuse = performance.now();
  let refused = 0;
  const REFUSALS = 1000;
  const refusals: Promise<void>[] = [];
  for (let i = 0; i < REFUSALS; i++) refusals.push((o.a.router.publish(createMessage('bench/over', payload), true).durable as Promise<void>).catch(() => void refused++));
  await Promise.all(refusals);
  const refuseUs = ((performance.now() - tRefuse) * 1000) / REFUSALS;
  const t0 = performance.now();
  o.hub.setDown(false);
  await Promise.all(acks);
  const ackedMs = performance.now() - t0;
  while (o.remote.n < MESSAGES) await settle();
  const deliveredMs = performance.now() - t0;

  // 3. Retained conflation: 100 writes per topic over 1,000 topics while down.
  const r = await pair(MESSAGES);
  r.hub.setDown(true);
  const TOPICS = 1000;
  const WRITES = 100 * TOPICS;
  for (let i = 0; i < WRITES; i++) r.a.router.publish(createMessage(`bench/r/${i % TOPICS}`, new TextEncoder().encode(String(i)), true));
  const waiting = r.a.bridge.outbound.bufferedMessages;
  const tr = performance.now();
  r.hub.setDown(false);
  while (r.b.router.retained.size < TOPICS) await settle();
  const retainedMs = performance.now() - tr;
  const last = new TextDecoder().decode(r.b.router.retained.get(`bench/r/${TOPICS - 1}`)!.payload);

  const results = {
    date: new Date().toISOString(),
    node: process.version,
    publishes: PUBLISHES,
    nsPerPublish: { single: Math.round(single), busUp: Math.round(up), busDown: Math.round(down) },
    ratioToSingle: { busUp: +(up / single).toFixed(2), busDown: +(down / single).toFixed(2) },
    buffer: {
      messages: MESSAGES,
      payloadBytes: payload.length,
      heapBytesPerBuffered: gc ? Math.round(perBuffered) : null,
      refusedPastBound: refused,
      refusalUs: +refuseUs.toFixed(2),
      replayUntilAckedMs: Math.round(ackedMs),
      replayUntilDeliveredMs: Math.round(deliveredMs),
    },
    retainedConflation: { writes: WRITES, topics: TOPICS, waitingAfter: waiting, conflated: r.a.bridge.outbound.stats.conflated, replayMs: Math.round(retainedMs), latestValueArrived: last === String(WRITES - 1) },
  };
  console.log(JSON.stringify(results, null, 2));
  writeFileSync(join(ROOT, 'bench/results/cluster-outage.json'), `${JSON.stringify(results, null, 2)}\n`);
}

await main();
