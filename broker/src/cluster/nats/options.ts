/**
 * The NATS bus's settings, counters and small helpers shared by its rooms (cluster/nats.ts for the
 * design note): what a `bus` URL may say, the defaults with their reasons, and how NATS and
 * JetStream errors are told apart.
 */
import type { ConnectionOptions, NatsError } from 'nats';

export interface NatsBusOptions {
  /** Server URLs (`nats://[user:pass@|token@]host:port`), a list or comma-separated. */
  servers: string | readonly string[];
  /** This node's id (unique per running node; logs, envelopes, will ownership). */
  nodeId: string;
  /** Credentials; by default taken from the first URL that has some. */
  user?: string;
  pass?: string;
  token?: string;
  /** Subject prefix and name stem of the stream and buckets: several Topicast clusters can share one NATS. */
  prefix?: string;
  /** Streams and buckets replicas; default min(3, servers in the NATS cluster). */
  replicas?: number;
  /** Replicas of the history stream (cluster/nats/history.ts); default: those of the retained stream. */
  historyReplicas?: number;
  /** First connection and each JetStream request. */
  connectTimeoutMs?: number;
  requestTimeoutMs?: number;
  /** Wait before retrying a server just tried; the other servers are tried at once. */
  reconnectWaitMs?: number;
  /** Client pings: a silent (not closed) link is declared dead after 2 missed pongs. */
  pingIntervalMs?: number;
  heartbeatMs?: number;
  /** A node silent this long is dead and its wills are published. */
  nodeTimeoutMs?: number;
  jetStreamRetryMs?: number;
  /** Longest wait for the other nodes to confirm a new subscription's interest reached their servers. */
  interestSyncMs?: number;
  log?: BusLog;
}

/** What the bus logs through (the broker's pino logger fits). */
export interface BusLog {
  info(fields: object, msg: string): void;
  warn(fields: object, msg: string): void;
  error(fields: object, msg: string): void;
}

/** Counts the bridge exports in /metrics (names without the `topicast_bus_` prefix). */
export interface NatsBusCounters {
  published: number;
  received: number;
  /** Copies of one message through overlapping filters, dropped. */
  duplicates: number;
  /** Messages on our subjects that did not decode (foreign publisher, newer node). */
  malformed: number;
  retainedStored: number;
  retainedFailed: number;
  snapshotsFailed: number;
  willsClaimed: number;
  /** Claims another node won first (expected: every survivor tries). */
  willClaimsLost: number;
  willWritesFailed: number;
  reconnects: number;
  heartbeatsFailed: number;
  /** Interest syncs that gave up before every known node answered (a node slow or just gone). */
  interestSyncTimeouts: number;
  /** History messages stored in the shared history stream by this node. */
  historyStored: number;
  /** History messages the stream could not take: refused (acknowledged) or delivered here without a position. */
  historyRefused: number;
  historyUnplaced: number;
  /** History messages routed from the stream (this node's and others'). */
  historyRouted: number;
  /** Times the mirror found messages gone from the stream (a purge, limits), and the stream replaced (new epoch). */
  historyPurgesSeen: number;
  historyResets: number;
  /** Times the history consumer stopped delivering and was made again. */
  historyConsumerRestarts: number;
  /** Messages NATS handed this node for one of its shared-subscription groups. */
  sharedReceived: number;
  /** Persistent MQTT sessions this node recorded itself the holder of (compare-and-set won), and lost to another node taking them at the same time. */
  sessionTakes: number;
  sessionTakesLost: number;
  /** Sessions of gone nodes handed to this node for adoption. */
  sessionOrphansFound: number;
}

export const DEFAULTS = {
  prefix: 'topicast', // readable in `nats sub 'topicast.>'`
  connectTimeoutMs: 5000, // a reachable server answers in milliseconds; beyond this start-up reports it
  requestTimeoutMs: 5000, // JetStream API calls on a healthy cluster take ms; a meta-leader election takes seconds
  reconnectWaitMs: 250, // the next server is tried at once; this only spaces retries of the same one
  pingIntervalMs: 10_000, // a closed socket is noticed at once; pings only catch silent links (2 missed → 20-30 s)
  heartbeatMs: 1000,
  nodeTimeoutMs: 10_000, // ≥ heartbeats lost across a NATS server restart or a GC pause, short enough for device status
  jetStreamRetryMs: 2000,
  interestSyncMs: 1000, // route interest takes microseconds; a node that does not answer in 1 s is busy or gone
} as const;

export const PEER_FORGET_MS = 10 * 60_000;
/** Topics whose live subject is kept (a node's hot topics); beyond it the oldest entry goes. */
export const SUBJECT_CACHE_ENTRIES = 4096;
export const SNAPSHOT_BATCH = 1000;

/**
 * `convert(key, space)` through a bounded map (topic ↔ subject for a node's hot topics). A key that
 * throws is not kept. The oldest entry goes when full: cheap, and hot keys come straight back.
 */
export function remembered(cache: Map<string, string>, key: string, space: string, convert: (key: string, space: string) => string): string {
  let value = cache.get(key);
  if (value === undefined) {
    value = convert(key, space);
    if (cache.size >= SUBJECT_CACHE_ENTRIES) cache.delete(cache.keys().next().value!);
    cache.set(key, value);
  }
  return value;
}

/** Options from a `bus` URL list: `nats://[user:pass@]h1:4222,nats://h2:4222[?nodeTimeoutMs=3000&heartbeatMs=500&prefix=x&replicas=1]`. */
export function natsBusOptionsFromUrl(url: string, nodeId: string): NatsBusOptions {
  const [list, query] = url.split('?', 2) as [string, string | undefined];
  const options: NatsBusOptions = { servers: list, nodeId };
  const numeric = ['connectTimeoutMs', 'requestTimeoutMs', 'reconnectWaitMs', 'pingIntervalMs', 'heartbeatMs', 'nodeTimeoutMs', 'jetStreamRetryMs', 'interestSyncMs', 'replicas', 'historyReplicas'] as const;
  for (const [key, value] of new URLSearchParams(query ?? '')) {
    if (key === 'prefix') options.prefix = value;
    else if ((numeric as readonly string[]).includes(key)) {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) throw new Error(`bus URL: ${key}=${value} must be a positive integer`);
      (options as unknown as Record<string, number>)[key] = n;
    } else throw new Error(`bus URL: unknown parameter ${key} (known: prefix, ${numeric.join(', ')})`);
  }
  return options;
}

/** `nats://user:pass@host:port,…` → server URLs without credentials, plus the credentials. */
export function parseNatsServers(servers: string | readonly string[]): { servers: string[]; user?: string; pass?: string; token?: string } {
  const list = (typeof servers === 'string' ? servers.split(',') : [...servers]).map((s) => s.trim()).filter((s) => s.length > 0);
  if (list.length === 0) throw new Error('bus: no NATS server URL given');
  const out: { servers: string[]; user?: string; pass?: string; token?: string } = { servers: [] };
  for (const raw of list) {
    const withScheme = /^[a-z]+:\/\//i.test(raw) ? raw : `nats://${raw}`;
    let u: URL;
    try {
      u = new URL(withScheme);
    } catch {
      throw new Error(`bus: ${JSON.stringify(raw)} is not a NATS server URL (nats://host:port)`);
    }
    if (!['nats:', 'tls:'].includes(u.protocol)) throw new Error(`bus: ${JSON.stringify(raw)}: scheme must be nats:// or tls://`);
    if (u.username && out.user === undefined && out.token === undefined) {
      if (u.password) {
        out.user = decodeURIComponent(u.username);
        out.pass = decodeURIComponent(u.password);
      } else out.token = decodeURIComponent(u.username);
    }
    out.servers.push(`${u.protocol}//${u.host}`);
  }
  return out;
}

/** `[A-Za-z0-9_-]` only: KV keys and stream names are restricted; base64url keeps any key. */
export function keyToken(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url') || '_';
}

export function isJetStreamUnavailable(err: unknown): boolean {
  const e = err as NatsError & { api_error?: { code?: number } };
  // 503: no responders (JetStream off, or no leader); TIMEOUT: no answer in time.
  return e?.code === '503' || e?.code === 'TIMEOUT' || e?.api_error?.code === 503 || /no responders|timeout|jetstream not enabled/i.test(e?.message ?? '');
}

export function isWrongSequence(err: unknown): boolean {
  const e = err as { api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10071 || /wrong last sequence/i.test(e?.message ?? '');
}

export function isNotFound(err: unknown): boolean {
  const e = err as { api_error?: { code?: number }; code?: string; message?: string };
  return e?.api_error?.code === 404 || e?.code === '404' || /no message found|not found/i.test(e?.message ?? '');
}

/** Options with defaults applied and credentials split from the URLs. */
export type ResolvedNatsOptions = { -readonly [K in keyof typeof DEFAULTS]: (typeof DEFAULTS)[K] extends string ? string : number } & {
  servers: string[];
  user: string | undefined;
  pass: string | undefined;
  token: string | undefined;
  replicas: number | undefined;
  historyReplicas: number | undefined;
};

export function resolveNatsOptions(options: NatsBusOptions): ResolvedNatsOptions {
  const parsed = parseNatsServers(options.servers);
  const o: ResolvedNatsOptions = {
    prefix: options.prefix ?? DEFAULTS.prefix,
    connectTimeoutMs: options.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs,
    requestTimeoutMs: options.requestTimeoutMs ?? DEFAULTS.requestTimeoutMs,
    reconnectWaitMs: options.reconnectWaitMs ?? DEFAULTS.reconnectWaitMs,
    pingIntervalMs: options.pingIntervalMs ?? DEFAULTS.pingIntervalMs,
    heartbeatMs: options.heartbeatMs ?? DEFAULTS.heartbeatMs,
    nodeTimeoutMs: options.nodeTimeoutMs ?? DEFAULTS.nodeTimeoutMs,
    jetStreamRetryMs: options.jetStreamRetryMs ?? DEFAULTS.jetStreamRetryMs,
    interestSyncMs: options.interestSyncMs ?? DEFAULTS.interestSyncMs,
    servers: parsed.servers,
    user: options.user ?? parsed.user,
    pass: options.pass ?? parsed.pass,
    token: options.token ?? parsed.token,
    replicas: options.replicas,
    historyReplicas: options.historyReplicas,
  };
  if (o.heartbeatMs * 2 > o.nodeTimeoutMs) throw new Error(`bus: nodeTimeoutMs (${o.nodeTimeoutMs}) must be at least twice heartbeatMs (${o.heartbeatMs})`);
  return o;
}

/** Subjects, stream and bucket names of one Topicast cluster on NATS, from its prefix. */
export interface NatsNames {
  /** Live messages: `<prefix>.m.<root>.<levels>`. */
  live: string;
  /** Retained values in the retained stream: `<prefix>.r.<root>.<levels>`. */
  retained: string;
  retainedStream: string;
  willsBucket: string;
  nodesBucket: string;
  /** Owner records of persistent MQTT sessions (`o.<hex client id>`) and each node's list of them (`i.<owner>.<hex>`). */
  sessionOwnersBucket: string;
  /** Interest syncs: every node answers a request here with its owner id. */
  sync: string;
  /** History messages in the history stream: `<prefix>.h.<root>.<levels>`. */
  history: string;
  historyStream: string;
}

export function natsNames(prefix: string): NatsNames {
  const stem = prefix.replaceAll('.', '_');
  return {
    live: `${prefix}.m`,
    retained: `${prefix}.r`,
    retainedStream: `${stem.toUpperCase()}_RETAINED`,
    willsBucket: `${stem}-wills`,
    nodesBucket: `${stem}-nodes`,
    sessionOwnersBucket: `${stem}-session-owners`,
    sync: `${prefix}.sync`,
    history: `${prefix}.h`,
    historyStream: `${stem.toUpperCase()}_HISTORY`,
  };
}

/** The options of a NATS connection of this node (the link's, the shared subscriptions' second one): reconnecting forever, pinged. */
export function connectionOptions(o: ResolvedNatsOptions, name: string): ConnectionOptions {
  return {
    servers: o.servers,
    name,
    user: o.user,
    pass: o.pass,
    token: o.token,
    timeout: o.connectTimeoutMs,
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: o.reconnectWaitMs,
    reconnectJitter: Math.min(100, o.reconnectWaitMs),
    pingInterval: o.pingIntervalMs,
    maxPingOut: 2,
  };
}
