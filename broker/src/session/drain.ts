/**
 * Graceful drain of a node (issue 8): on SIGTERM with `drainMs` > 0 the node stops accepting,
 * tells each client to reconnect elsewhere at a moment spread uniformly over the drain window,
 * and only then closes what is left. A restarting node of a cluster thus hands its clients to
 * the others as a trickle instead of a reconnect storm.
 *
 * Invariants
 * - Delays are stratified: with n connections, the i-th gets a delay in [i, i+1) × window / n.
 *   Every sub-interval of the window receives its share (no clumping, unlike n independent
 *   draws), and the jitter inside each slot keeps two nodes drained together from aligning.
 * - One timer at a time walks the schedule (`runSpread`), whatever the number of connections:
 *   50k connections are not 50k timers.
 * Cost: O(n) to schedule, O(due items) per timer tick.
 */
import type { Metrics } from '../observe/metrics.js';
import type { SettingSpec } from '../settings.js';
import type { ProtocolHandler } from './handler.js';

export const DRAIN_SETTINGS = [
  {
    key: 'drainMs', type: 'int', default: 0, min: 0, max: 600_000,
    doc: 'on SIGTERM, the window over which clients are told to reconnect elsewhere before the node closes (0 = close at once); 0 suits the single node, which has nowhere to send them; set it (e.g. 10000) when several nodes serve',
  },
  {
    key: 'drainServerReference', type: 'string', default: undefined,
    doc: 'during a drain, MQTT 5 clients get DISCONNECT 0x9C (use another server) with this Server Reference (e.g. host:1883) instead of 0x8B; unset: the load balancer picks the next node',
  },
] as const satisfies readonly SettingSpec[];

/** Counters of drains, exported in /metrics (`registerDrainMetrics`); each protocol counts whom it told itself. */
export interface DrainStats {
  /** 1 while this node drains. */
  draining: number;
  /** Connections still open at the end of the window, closed with 1001 / 0x8B. */
  closedAtEnd: number;
}

export function createDrainStats(): DrainStats {
  return { draining: 0, closedAtEnd: 0 };
}

export function registerDrainMetrics(metrics: Metrics, stats: DrainStats): void {
  metrics.register('topicast_draining', 'gauge', '1 while this node drains its clients before shutting down', () => stats.draining);
  metrics.register('topicast_drain_closed_at_end_total', 'counter', 'Connections still open at the end of the drain window (closed with 1001 / 0x8B)', () => stats.closedAtEnd);
}

/**
 * `count` delays spread uniformly over [0, windowMs): the i-th lies in slot i of `count` equal
 * slots, at a random point inside it. Sorted ascending; integers (milliseconds).
 */
export function spreadDelaysMs(count: number, windowMs: number, random: () => number = Math.random): number[] {
  const out = new Array<number>(count);
  const slotMs = windowMs / Math.max(1, count);
  for (let i = 0; i < count; i++) out[i] = Math.min(windowMs - 1, Math.floor((i + random()) * slotMs));
  return out;
}

/**
 * Calls `act(items[i])` once `delaysMs[i]` (ascending) has passed, with one timer at a time.
 * Returns a cancel function (the rest is then never acted on). `act` must not throw.
 */
export function runSpread<T>(items: readonly T[], delaysMs: readonly number[], act: (item: T) => void): () => void {
  const start = Date.now();
  let i = 0;
  let timer: NodeJS.Timeout | undefined;
  const tick = function drainTick(): void {
    const elapsed = Date.now() - start;
    while (i < items.length && delaysMs[i]! <= elapsed) act(items[i++]!);
    if (i < items.length) timer = setTimeout(tick, delaysMs[i]! - elapsed);
  };
  tick();
  return () => {
    clearTimeout(timer);
    i = items.length;
  };
}

/**
 * Resolves once `openConnections()` is 0 or `deadline` (Date.now() ms) has passed. Polled: connections
 * leave through many paths (client close, our disconnect, a transport error) and none of them tells.
 */
export async function whenClosed(openConnections: () => number, deadline: number): Promise<void> {
  while (openConnections() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, Math.min(20, Math.max(1, deadline - Date.now()))));
}

/**
 * Runs the drain window: every protocol that drains tells its connections when to leave (native:
 * now, with a moment each; MQTT: each disconnected at its slot). Resolves at the end of the window,
 * or earlier once every connection has left; the caller then closes what is left as usual.
 */
export async function drainConnections(protocols: readonly ProtocolHandler[], openConnections: () => number, windowMs: number, stats: DrainStats): Promise<void> {
  const end = Date.now() + windowMs;
  stats.draining = 1;
  const cancels = protocols.map((p) => p.drain?.(windowMs));
  await whenClosed(openConnections, end);
  for (const cancel of cancels) cancel?.();
  stats.closedAtEnd += openConnections();
}
