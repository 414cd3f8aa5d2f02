/**
 * Composition of scale-out (issue 8): picks the bus adapter named by the `bus` setting, builds
 * the bridge and registers its figures. Adapters are imported lazily, so a single node (the
 * default, `bus` unset) never loads an engine client, and a missing adapter is a clear
 * configuration error rather than a crash.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { BrokerConfig } from '../config.js';
import { ConfigError } from '../config.js';
import type { Bus } from '../core/bus.js';
import type { Router } from '../core/router.js';
import type { Logger } from '../observe/log.js';
import type { Metrics } from '../observe/metrics.js';
import { ClusterBridge } from './bridge.js';

/** Scheme family → adapter module (relative to this file) and its factory. */
const ADAPTERS = {
  nats: { module: './nats.js', factory: 'createNatsBus', file: 'cluster/nats.ts' },
  mqtt: { module: './mqtt-upstream.js', factory: 'createMqttBus', file: 'cluster/mqtt-upstream.ts' },
} as const;

/** What an adapter factory takes: every adapter reads the options it knows. */
export interface AdapterOptions {
  /** NATS: the server list (comma-separated). */
  servers: string;
  /** MQTT: the upstream URL. */
  url: string;
  nodeId: string;
  log: Logger;
}

type AdapterFactory = (options: AdapterOptions) => Bus;

/** A node id unique without coordination: readable, and distinct across restarts of one pod. */
export function defaultNodeId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

/** Loads the adapter for `config.bus` (validated by loadConfig) and makes this node's bus. */
export async function createBus(config: BrokerConfig, nodeId: string, log: Logger): Promise<Bus> {
  const url = config.bus!;
  const family = url.trim().startsWith('nats:') ? 'nats' : 'mqtt';
  const adapter = ADAPTERS[family];
  let mod: Record<string, unknown>;
  try {
    const specifier: string = adapter.module; // a variable: the adapter is optional at build time
    mod = (await import(specifier)) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ERR_MODULE_NOT_FOUND') throw err;
    throw new ConfigError(`invalid setting bus: ${url} needs the ${family.toUpperCase()} bus adapter (${adapter.file}), which this build does not include`);
  }
  const factory = mod[adapter.factory];
  if (typeof factory !== 'function') throw new ConfigError(`invalid setting bus: ${adapter.file} does not export ${adapter.factory}`);
  return (factory as AdapterFactory)({ servers: url, url, nodeId, log: log.child({ bus: family, nodeId }) });
}

/** Builds and starts the bridge for `config.bus`; rejects when the engine cannot be reached. */
export async function startCluster(config: BrokerConfig, router: Router, log: Logger, metrics: Metrics, counters: { willsPublished: number }, bus?: Bus): Promise<ClusterBridge> {
  const nodeId = config.nodeId ?? defaultNodeId();
  bus ??= await createBus(config, nodeId, log);
  const bridge = new ClusterBridge(bus, router, {
    lingerMs: config.busLingerMs,
    snapshotTimeoutMs: config.busSnapshotTimeoutMs,
    maxMessages: config.busBufferMessages,
    maxBytes: config.busBufferBytes,
    maxWaitMs: config.busBufferWaitMs,
    retryAfterSec: config.busRetryAfterSec,
  }, log, counters);
  registerClusterMetrics(metrics, bridge);
  try {
    await bridge.start();
  } catch (err) {
    throw new Error(`cannot join the cluster bus ${config.bus ?? bus.kind}: ${(err as Error).message}`, { cause: err });
  }
  // History topics: one history for the whole cluster when the bus can keep it (cluster/DESIGN.md "History in JetStream").
  try {
    if (await bridge.shareHistory(config.busRetryAfterSec)) log.info({ bus: bus.kind }, 'history shared by every node through the bus');
  } catch (err) {
    await bridge.close().catch(() => undefined);
    throw new Error(`cannot share the history through the cluster bus ${config.bus ?? bus.kind}: ${(err as Error).message}`, { cause: err });
  }
  log.info({ bus: bus.kind, nodeId: bus.nodeId }, 'joined the cluster bus');
  return bridge;
}

const STATE_VALUE = { up: 2, degraded: 1, down: 0 } as const;

function snake(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

export function registerClusterMetrics(m: Metrics, bridge: ClusterBridge): void {
  const s = bridge.stats;
  const o = bridge.outbound.stats;
  m.register('topicast_bus_state', 'gauge', 'Cluster bus state: 2 up, 1 degraded, 0 down (readiness is false while down)', () => STATE_VALUE[bridge.state]);
  m.register('topicast_bus_state_changes_total', 'counter', 'Cluster bus state changes', () => s.stateChanges);
  m.register('topicast_bus_filters', 'gauge', 'Filters this node holds on the bus (including lingering ones)', () => bridge.heldFilters);
  m.register('topicast_bus_sent_total', 'counter', 'Messages the bus accepted from this node', () => o.published);
  m.register('topicast_bus_routed_total', 'counter', 'Messages from other nodes routed here', () => s.received);
  m.register('topicast_bus_dropped_total', 'counter', 'Cross-node messages dropped while the bus was down (unacknowledged, not retained)', () => o.dropped);
  m.register('topicast_bus_buffered_total', 'counter', 'Acknowledged publishes and retained writes buffered while the bus was down', () => o.buffered);
  m.register('topicast_bus_buffered', 'gauge', 'Messages waiting for the bus now', () => bridge.outbound.bufferedMessages);
  m.register('topicast_bus_buffered_bytes', 'gauge', 'Payload bytes waiting for the bus now', () => bridge.outbound.bufferedBytes);
  m.register('topicast_bus_refused_total', 'counter', 'Acknowledged publishes refused with a retry hint (outage buffer full, or refused by the bus)', () => o.refused);
  m.register('topicast_bus_retained_conflated_total', 'counter', 'Retained writes replaced in the outage buffer by a newer one on the same topic', () => o.conflated);
  m.register('topicast_bus_retained_dropped_total', 'counter', 'Unacknowledged retained writes dropped because the outage buffer was full', () => o.retainedDropped);
  m.register('topicast_bus_replayed_total', 'counter', 'Buffered messages sent once the bus came back', () => o.replayed);
  m.register('topicast_bus_retained_stale_total', 'counter', 'Retained values from the bus not routed because a newer one was already here', () => s.staleRetained);
  m.register('topicast_bus_retained_removed_total', 'counter', 'Local retained values removed because the bus no longer had them', () => s.retainedRemoved);
  m.register('topicast_bus_snapshots_total', 'counter', 'Retained snapshots taken from the bus', () => s.snapshots);
  m.register('topicast_bus_snapshot_timeouts_total', 'counter', 'Subscriptions that stopped waiting for a retained snapshot (busSnapshotTimeoutMs)', () => s.snapshotTimeouts);
  m.register('topicast_bus_orphan_wills_total', 'counter', 'Wills of connections on dead nodes published by this node', () => s.orphanWills);
  m.register('topicast_bus_errors_total', 'counter', 'Failed bus operations (each logged)', () => s.errors + o.errors);
  // The adapter's own counters (e.g. NATS duplicates, will claims), when it keeps some.
  const own = bridge.bus as { counters?: Record<string, unknown>; stats?: Record<string, unknown> };
  const adapter = own.counters ?? own.stats;
  if (adapter && typeof adapter === 'object') {
    for (const [name, value] of Object.entries(adapter)) {
      if (typeof value !== 'number') continue;
      m.register(`topicast_bus_${bridge.bus.kind}_${snake(name)}_total`, 'counter', `${bridge.bus.kind} bus adapter: ${name}`, () => adapter[name] as number);
    }
  }
}
