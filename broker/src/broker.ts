/**
 * The composition root: builds the context, the protocols and the listeners
 * from a configuration, and shuts them down in order. No logic lives here:
 * each module registers its own metrics, admission is session/admission.ts,
 * the waits of a drain and a shutdown are session/drain.ts. The protocols are
 * listed once (`protocols` below); the transports, the drain and the shutdown
 * read what each declares (session/handler.ts) and name none.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createAuth } from './auth/index.js';
import { createMqttAuthenticate } from './auth/mqtt.js';
import { logAuthMode, registerAuthMetrics } from './auth/observe.js';
import { loadTls, reloadOnSighup, tlsFiles } from './auth/tls.js';
import type { BrokerConfig } from './config.js';
import type { BrokerContext, BrokerCounters } from './context.js';
import { Router } from './core/router.js';
import { MemoryRetainedStore, type RetainedStore } from './core/retained.js';
import { openLogRetainedStore, registerRetainedStoreMetrics, type LogRetainedStore } from './store/log.js';
import { openHistory, registerHistoryMetrics, type OpenedHistory } from './store/history-log.js';
import { DataCorruptionError, type LoadReport } from './store/append-log.js';
import type { History } from './core/history.js';
import { createLogger, type Logger } from './observe/log.js';
import { Metrics } from './observe/metrics.js';
import { registerCoreMetrics, startSys } from './observe/sys.js';
import { createNativeProtocol, nativeFrameLimit } from './protocol/native/index.js';
import { startCluster } from './cluster/index.js';
import { ClusterSessionStore, registerClusterSessionMetrics } from './cluster/mqtt-sessions.js';
import type { Bus } from './core/bus.js';
import { createMqttProtocol } from './protocol/mqtt/index.js';
import { createSseProtocol } from './protocol/sse/index.js';
import { openSessionStore, type MqttSessionStore } from './protocol/mqtt/persist.js';
import { createOutboxStats, Flusher } from './session/outbox.js';
import { createGate, guardTcp } from './session/admission.js';
import type { ProtocolHandler } from './session/handler.js';
import { createDrainStats, drainConnections, registerDrainMetrics, whenClosed } from './session/drain.js';
import { Admission, refreshSocketBudget, registerAdmissionMetrics } from './transport/admission.js';
import { listenTcp } from './transport/tcp.js';
import { listenHttp } from './transport/uws.js';
import { checkStaticDir, ensureDataDir, listenFailure } from './startup.js';

export const VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

/** The dashboard bundled with the broker (built into dist/public). */
export const DEFAULT_STATIC_ROOT = fileURLToPath(new URL('./public/', import.meta.url));
/** The SDK's browser bundles (copied into dist/sdk by the build), served at /topicast.js and /topicast-core.js. */
export const DEFAULT_SDK_ROOT = fileURLToPath(new URL('./sdk/', import.meta.url));

export interface RunningBroker {
  readonly ctx: BrokerContext;
  readonly port: number;
  /** 0 when the MQTT TCP listener is off. */
  readonly mqttPort: number;
  /** 0 when MQTT over TLS is off (no tlsCertFile, or mqttTlsPort 0). */
  readonly mqttTlsPort: number;
  /**
   * Stops accepting, drains for `drainMs` when set (session/drain.ts), closes every client left
   * (1001 / MQTT 5 0x8B), resolves when all are gone or the timeout passed.
   */
  shutdown(): Promise<void>;
}

export function createContext(config: BrokerConfig, log: Logger = createLogger(config.logLevel), retained: RetainedStore = new MemoryRetainedStore(), history?: History): BrokerContext {
  const counters: BrokerCounters = {
    connectionsTotal: 0, open: {}, rateLimited: 0, malformed: 0, errorsSent: 0, connectionsRefused: 0, willsPublished: 0, framingRefused: 0,
  };
  return {
    config,
    router: new Router(retained, history),
    flusher: new Flusher(),
    outboxStats: createOutboxStats(),
    outboxLimits: {
      maxBufferedBytes: config.maxBufferedBytes,
      policy: config.slowConsumerPolicy,
      snapshotWindowBytes: config.snapshotWindowBytes,
      maxConflatedTopics: config.maxConflatedTopics,
    },
    topicLimits: { maxTopicBytes: config.maxTopicBytes, maxTopicLevels: config.maxTopicLevels },
    publishLimits: {
      maxPayloadBytes: config.maxPayloadBytes,
      maxPublishesPerSec: config.maxPublishesPerSec,
      publishBurst: config.publishBurst,
      maxRetainedTopics: config.maxRetainedTopics,
      maxRetainedBytes: config.maxRetainedBytes,
    },
    connectionLimits: { maxConnections: config.maxConnections },
    sessionLimits: { maxSubscriptionsPerConnection: config.maxSubscriptionsPerConnection, authClockSkewMs: config.authClockSkewSec * 1000, idleTimeoutSec: config.idleTimeoutSec },
    historyLimits: {
      maxRows: config.historyMaxRows,
      maxExportRows: config.historyMaxExportRows,
      maxQueryBytes: config.historyMaxQueryBytes,
      queriesPerSec: config.historyQueriesPerSec,
    },
    counters,
    metrics: new Metrics(),
    log,
    auth: createAuth(config),
    startedAt: Date.now(),
    version: VERSION,
    now: Date.now,
    openConnections() {
      let n = 0;
      for (const v of Object.values(counters.open)) n += v;
      return n;
    },
  };
}

/** What a caller may provide instead of building it from the configuration (tests: an in-memory bus). */
export interface BrokerDeps {
  /** The cluster bus; default: the adapter named by `config.bus`, or none. */
  bus?: Bus;
}

export async function startBroker(config: BrokerConfig, log: Logger = createLogger(config.logLevel), deps: BrokerDeps = {}): Promise<RunningBroker> {
  // What the settings point at is checked first: a bad --data or --static is one line naming it (startup.ts).
  if (config.data !== undefined) ensureDataDir(config.data);
  if (config.static !== undefined) checkStaticDir(config.static);
  // With --data: retained values (DIR/retained, store/log.ts, STORAGE.md), persistent MQTT sessions
  // (DIR/sessions, protocol/mqtt/persist.ts, MQTT.md) and, when historyFilters names topics, the
  // history stream (DIR/history, PROTOCOL.md §4.6). Damage stops start-up unless --data-recover.
  const opened = await openStores(config, log);
  const { store, sessionStore, history } = opened;
  const ctx = createContext(config, log, store ?? new MemoryRetainedStore(), history?.history);
  registerCoreMetrics(ctx);
  registerStoreMetrics(ctx.metrics, opened);
  ctx.flusher.beforeSend = history?.writePending; // history records reach the kernel before their offsets leave
  registerAuthMetrics(ctx);
  logAuthMode(ctx);
  // Scale-out (cluster/DESIGN.md): joined before any listener opens, so clients only see a node in the cluster.
  const cluster = config.bus === undefined && deps.bus === undefined ? undefined : await startCluster(config, ctx.router, log, ctx.metrics, ctx.counters, deps.bus);
  ctx.cluster = cluster;
  // --agent: the device agent inside this process (agent/in-process.ts), loaded only when asked for. Started
  // before the listeners, so the first clients already find its retained status, info and readings.
  let agent: { stop(): Promise<void> } | undefined;
  if (config.agent) {
    try {
      agent = await (await import('./agent/in-process.js')).startInProcessAgent(ctx);
    } catch (err) {
      await Promise.all([sessionStore?.close(), cluster?.close()]);
      await Promise.all([store?.close(), history?.close()]);
      throw err;
    }
  }
  const native = createNativeProtocol(ctx);
  // With a bus that keeps session logs (NATS JetStream), persistent MQTT sessions live there and follow the device (cluster/DESIGN.md).
  const sessionLog = cluster?.bus.sessionLog?.();
  const clusterSessions = sessionLog && new ClusterSessionStore(sessionLog, log);
  if (clusterSessions) registerClusterSessionMetrics(ctx.metrics, clusterSessions);
  const mqtt = createMqttProtocol(ctx, { authenticate: createMqttAuthenticate(ctx.auth), sessionStore: clusterSessions ?? sessionStore, drainServerReference: config.drainServerReference });
  // Every protocol, once: a new one is its folder and a line here.
  const protocols: readonly ProtocolHandler[] = [
    native,
    mqtt,
    createSseProtocol(ctx, native, nativeFrameLimit(ctx.publishLimits, ctx.topicLimits)),
  ];
  if (sessionStore) {
    const s = sessionStore.stats;
    log.info({ dir: sessionStore.dir, sessions: mqtt.server.sessions.size, loadMs: s.loadMs, truncatedBytes: s.truncatedBytes, lost: s.lostOnLoad }, 'MQTT session store loaded');
  }
  // TLS (docs/SECURITY.md §6): files checked now, so a bad pair stops start-up naming the setting.
  const tls = tlsFiles(config);
  const tlsMaterial = tls && loadTls(tls);
  let ready = true;
  const drainStats = createDrainStats();
  registerDrainMetrics(ctx.metrics, drainStats);
  // Descriptors and half-open connections (transport/admission.ts): every listener's sockets pass it.
  const sockets = new Admission(config, ctx.now, (summary) => {
    log.warn(summary, 'connections refused or accepts failing: out of file descriptors or too many half-open connections (counted in /metrics)');
  });
  registerAdmissionMetrics(ctx.metrics, sockets);
  // Who may connect (session/admission.ts); while the node drains, /healthz says "draining" and new connections get 503.
  const gate = createGate(sockets);
  const named = (flag: string, port: number) => async (err: unknown): Promise<never> => {
    throw await listenFailure(err, flag, config.host, port);
  };
  const http = await listenHttp(ctx, {
    gate,
    tls,
    host: config.host,
    port: config.port,
    staticRoot: config.static ?? DEFAULT_STATIC_ROOT,
    dashboardRoot: DEFAULT_STATIC_ROOT,
    sdkRoot: DEFAULT_SDK_ROOT,
    protocols,
    ready: () => ready && ctx.cluster?.state !== 'down',
  }).catch(named('--port', config.port));
  // MQTT over TCP (and TLS): no upgrade comes first, so the per-IP limits close a refused socket at once (session/admission.ts).
  const guarded = guardTcp(mqtt, ctx.auth.guard);
  const tcp = config.mqttPort === 0 ? undefined : await listenTcp(guarded, config.host, config.mqttPort, undefined, sockets).catch(named('--mqtt-port', config.mqttPort));
  const tlsTcp = tlsMaterial && config.mqttTlsPort !== 0 ? await listenTcp(guarded, config.host, config.mqttTlsPort, tlsMaterial, sockets).catch(named('--mqtt-tls-port', config.mqttTlsPort)) : undefined;
  const stopBudget = watchSocketBudget(sockets, log);
  const stopTlsReload = tls ? reloadOnSighup(tls, [() => http.reloadTls(), (m) => tlsTcp?.setTls(m)], log) : () => {};
  if (tls) {
    log.info({ port: http.port, mqttTlsPort: tlsTcp?.port ?? 0, certFile: tls.certFile }, 'TLS on: https:// and wss:// on the port, mqtts:// on mqttTlsPort; SIGHUP reloads the certificate');
    if (tcp) log.warn({ mqttPort: tcp.port }, 'plain MQTT is still open on mqttPort: tokens cross it unencrypted (set --mqtt-port 0 to turn it off)');
  }
  const stopSys = startSys(ctx);

  let stopping: Promise<void> | undefined;
  const shutdown = (): Promise<void> => {
    stopping ??= (async () => {
      ready = false;
      // First: the agent's `offline` reaches the clients still connected and the store.
      await agent?.stop().catch((err: unknown) => ctx.log.error({ err }, 'stopping the in-process agent failed'));
      if (config.drainMs > 0 && ctx.openConnections() > 0) {
        gate.draining = true;
        tcp?.stopListening();
        tlsTcp?.stopListening();
        ctx.log.info({ drainMs: config.drainMs, open: ctx.openConnections(), serverReference: config.drainServerReference }, 'draining: clients are told to reconnect elsewhere over the window');
        await drainConnections(protocols, ctx.openConnections, config.drainMs, drainStats);
        ctx.log.info({ closing: ctx.openConnections() }, 'drain window over: closing the rest');
      }
      stopSys();
      stopBudget();
      stopTlsReload();
      http.stopListening();
      const closingTcp = Promise.all([tcp?.close(), tlsTcp?.close()]);
      for (const p of protocols) p.closeAll?.();
      const deadline = Date.now() + config.shutdownTimeoutMs;
      await whenClosed(ctx.openConnections, deadline);
      if (ctx.openConnections() > 0) ctx.log.warn({ open: ctx.openConnections() }, 'shutdown timeout: connections left open');
      await Promise.race([closingTcp, new Promise((r) => setTimeout(r, Math.max(0, deadline - Date.now())))]);
      await sessionStore?.close(); // after every connection detached: their sessions are stored as disconnected now
      await clusterSessions?.synced(); // the same in JetStream, before the bus connection drains
      await cluster?.close(); // after the wills of the closes above went out; clears this node's wills on the bus
      await Promise.all([store?.close(), history?.close()]); // last: wills published during the close above are stored too
    })();
    return stopping;
  };
  return { ctx, port: http.port, mqttPort: tcp?.port ?? 0, mqttTlsPort: tlsTcp?.port ?? 0, shutdown };
}

/**
 * The socket budget is what the descriptor limit leaves once the listeners, stores and bus hold
 * theirs: read now, and again every 10 s while sockets use half of it or more (what else the
 * process holds moves). Returns the stop.
 */
function watchSocketBudget(sockets: Admission, log: Logger): () => void {
  refreshSocketBudget(sockets);
  log.info({ socketBudget: sockets.socketBudget }, 'client sockets admitted at most (file descriptor limit less the broker\'s own and a reserve)');
  const timer = setInterval(function refreshBudget() {
    if (sockets.sockets * 2 >= sockets.socketBudget) refreshSocketBudget(sockets);
  }, 10_000);
  timer.unref();
  return () => clearInterval(timer);
}

type StoreName = 'retained' | 'sessions' | 'history';

interface OpenedStores {
  store: LogRetainedStore | undefined;
  sessionStore: MqttSessionStore | undefined;
  history: OpenedHistory | undefined;
  /** What each persistent store's start-up found (torn tail, recovery), for the log and /metrics. */
  reports: Map<StoreName, LoadReport>;
}

/**
 * Opens the stores of `--data` (none without it; history only with historyFilters). Damage in one
 * (broker/STORAGE.md "Damage") throws a DataCorruptionError whose one line names the file, the byte
 * offset and --data-recover; with --data-recover the damaged files go to DIR/quarantine/<time>/<store>/
 * and, when any store lost data, the history starts a new epoch.
 */
async function openStores(config: BrokerConfig, log: Logger): Promise<OpenedStores> {
  const data = config.data;
  const reports = new Map<StoreName, LoadReport>();
  const quarantine = data !== undefined && config.dataRecover ? join(data, 'quarantine', new Date().toISOString().replace(/[:.]/g, '-')) : undefined;
  const recoverInto = (name: StoreName): string | undefined => (quarantine === undefined ? undefined : join(quarantine, name));
  const out: OpenedStores = { store: undefined, sessionStore: undefined, history: undefined, reports };
  try {
    if (data !== undefined) {
      out.store = await openLogRetainedStore(join(data, 'retained'), {
        onError: (err) => log.error({ err, code: err.code }, 'retained store write failed'),
        recoverInto: recoverInto('retained'),
      });
      reports.set('retained', out.store.loadReport);
      log.info({ dir: data, retained: out.store.size, loadMs: out.store.stats.loadMs, truncatedBytes: out.store.stats.truncatedBytes }, 'retained store loaded');
      // With a NATS bus the sessions live in JetStream, shared (cluster/mqtt-sessions.ts): no local session log.
      if (!config.bus?.trim().startsWith('nats:')) out.sessionStore = await openSessionStore(join(data, 'sessions'), {
        onError: (err) => log.error({ err, code: err.code }, 'MQTT session store write failed'),
        recoverInto: recoverInto('sessions'),
      });
      if (out.sessionStore) reports.set('sessions', out.sessionStore.loadReport);
    }
    const damaged = [...reports].filter(([, r]) => r.recovered !== undefined).map(([name]) => name);
    out.history = await openHistory(config, {
      data: config.bus?.trim().startsWith('nats:') ? undefined : data, // with NATS the stream lives in JetStream, shared (cluster/DESIGN.md)
      onError: (err) => log.error({ err, code: err.code }, 'history store write failed'),
      onInfo: (fields, msg) => log.info(fields, msg),
      recoverInto: recoverInto('history'),
      // A client that resumes with recovered: true keeps its state and skips the retained values; after a loss it must reload.
      newEpochReason: damaged.length > 0 ? `the ${damaged.join(' and ')} store was damaged and recovered (--data-recover): clients reload their state` : undefined,
    });
    if (out.history?.loadReport) reports.set('history', out.history.loadReport);
  } catch (err) {
    await Promise.all([out.store?.close(), out.sessionStore?.close(), out.history?.close()]);
    if (err instanceof DataCorruptionError) {
      err.message += `; it holds acknowledged data, so the broker does not start: pass --data-recover (TOPICAST_DATA_RECOVER=true) to move the damaged files into ${join(data ?? '.', 'quarantine')}/ and start with what is intact (broker/STORAGE.md)`;
    }
    throw err;
  }
  for (const [name, report] of reports) {
    if (report.torn) {
      log.warn({ store: name, ...report.torn }, `${name} store: torn write at the end of the newest log segment cut off (${report.torn.bytes} bytes; a crash in the middle of an append, nothing in it was acknowledged)`);
    }
    if (report.recovered) {
      const r = report.recovered;
      for (const d of r.damage) log.warn({ store: name, ...d }, `${name} store damaged: ${d.file} at byte ${d.offset}: ${d.reason}`);
      log.warn({ store: name, quarantine: r.quarantine, moved: r.moved, damage: r.damage.length, lostBytes: r.lostBytes },
        `${name} store recovered (--data-recover): ${r.damage.length} damaged place(s), ${r.lostBytes} bytes of records lost, old files moved into ${r.quarantine}`);
    }
  }
  return out;
}

/** /metrics of the persistent stores: each store's own, and what start-up found in each (0 everywhere on a clean start). */
function registerStoreMetrics(metrics: Metrics, opened: OpenedStores): void {
  if (opened.store) registerRetainedStoreMetrics(metrics, opened.store);
  if (opened.history) registerHistoryMetrics(metrics, opened.history);
  const { reports } = opened;
  if (reports.size === 0) return;
  const each = (read: (r: LoadReport) => number) => () => [...reports].map(([store, r]) => [{ store }, read(r)] as const);
  metrics.register('topicast_store_damage_found', 'gauge', 'Damaged places found in a store at start-up and recovered with --data-recover (moved into quarantine)', each((r) => r.recovered?.damage.length ?? 0));
  metrics.register('topicast_store_damage_lost_bytes', 'gauge', 'Bytes of stored records lost to damage found at start-up (--data-recover)', each((r) => r.recovered?.lostBytes ?? 0));
  metrics.register('topicast_store_torn_bytes', 'gauge', 'Bytes of a torn write cut off the end of a store log at start-up (a crash mid-append; never acknowledged)', each((r) => r.torn?.bytes ?? 0));
}
