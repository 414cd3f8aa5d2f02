/**
 * The NATS implementation of `Bus` (core/bus.ts): Topicast nodes share topics through a NATS
 * cluster (core NATS for live messages, JetStream for retained values, a JetStream KV bucket for
 * wills and node liveness). The contract is on the interface; this note says how it is kept.
 *
 * Subjects (cluster/subject.ts): live messages on `<prefix>.m.<root>.<levels>`, retained values
 * in the stream `<PREFIX>_RETAINED` on `<prefix>.r.<root>.<levels>`. Every message carries the
 * envelope of cluster/nats-envelope.ts (flags, MQTT properties, origin, run, sequences).
 *
 * Interest: one core subscription per subject of a held filter (`a/#` → two), made and dropped
 * when the bridge says so; nats.js replays them after a reconnect. The connection is `noEcho`,
 * so a node never receives its own publishes. A server forwards a message to another server only
 * once it has heard of interest there (route `RS+`), which travels apart from the subscriber's
 * PING/PONG: so `subscribe` resolves after an interest sync, a request on `<prefix>.sync` that
 * every other live node answers; a reply from node X travelled X's server → ours on the route
 * that carried our `RS+` before it, so X's server holds the interest. Nodes not known yet (their
 * heartbeat unseen) are not waited for, and the sync gives up after `interestSyncMs` (counted).
 * Cost: one request and N-1 small replies per new filter (the bridge lingers before removal, so
 * flapping filters do not repeat it).
 *
 * Publish resolves once the server has the message (a PING/PONG after it, coalesced: one round
 * trip in flight plus one shared by every publish made meanwhile), not when it is merely queued
 * in this process; a retained publish also waits for the stream's PubAck. Live messages are
 * encoded at once (their node sequence fixes their order) into shared chunks, queued, and handed
 * to the client together at setImmediate, so one socket write and one promise serve every message
 * of an event-loop turn (see `sendLive`). Cost per QoS 0 message: one envelope view, one subject
 * cache lookup, the client's PUB line; per turn: one write, one PING, one promise.
 *
 * Exactly once with overlapping filters: NATS delivers a message once per matching subscription
 * of a connection, and a publisher's messages reach one subscriber connection in publish order.
 * Each live publish gets the next number of a per-run sequence (the run is random per bus
 * instance, so a restarted node never collides with its past); the receiver drops a message whose
 * number is not above the last one seen from that run. Cost: one Map lookup per message; runs
 * unseen for 10 minutes are forgotten.
 *
 * Retained values, and why the merge is never older-after-newer: a retained publish is first
 * stored with a JetStream publish (the stream keeps one message per subject,
 * max_msgs_per_subject 1, so storing replaces; an empty payload is stored as a tombstone, then
 * purged up to its own seq so deletes leave nothing behind). The PubAck's stream seq then goes
 * into the envelope of the live message published on the core subject. The stream orders all
 * writes to a subject, so for one topic a larger seq is the newer value, whichever node wrote
 * it; receivers see retained values only through the live path (with the seq) and the snapshot
 * (with the seq), and the bridge keeps, per topic, the largest seq shown. A joiner subscribes
 * first, then asks for the snapshot: anything stored after the snapshot's moment arrives live
 * with a larger seq; anything older arriving late is dropped by the seq comparison. Per-topic
 * order from one node is kept by chaining each topic's publishes behind a pending store (a
 * non-retained publish on a topic waits for the retained one before it), while different topics
 * and successive stores are pipelined. Crash between store and live publish: the value is in the
 * snapshot but not seen live, like any message lost with its node.
 *
 * Snapshot: per subject of the filter, an exact subject is one "last message for subject"
 * request; a wildcard subject is an ephemeral, memory, unacknowledged consumer with
 * DeliverLastPerSubject (2.9 takes one filter subject per consumer, hence two for `a/#`), pulled
 * with no_wait until the consumer reports nothing pending, then deleted. Every entry has its seq.
 *
 * Wills and liveness: each node (each run) keeps a key in the KV bucket `<prefix>-nodes`, whose
 * TTL is `nodeTimeoutMs`, alive by a heartbeat every `heartbeatMs`; its wills sit in
 * `<prefix>-wills` under `<owner>.<key>`. Every node watches the nodes bucket; an owner unseen for
 * `nodeTimeoutMs` whose key is gone (expired, or purged by a clean close) is dead. One survivor,
 * chosen the same way by all (`claimerOf`), deletes each of its wills with compare-and-set
 * (expected revision) and hands each deleted will to the bridge (`events.orphanWill`); the other
 * survivors do the same only a further `nodeTimeoutMs` later, in case the chosen one died too, and
 * the compare-and-set makes them find nothing left. The winner then purges the delete marker.
 * A node that finds its own key expired (it was partitioned past the timeout, and its wills may
 * have been published) writes its key and all its wills again. Limits: a will written while the
 * bus is down is written on reconnect; a claimer that crashes between its claim and publishing
 * loses that will (the window is one event-loop turn).
 *
 * State: `down` while the connection is lost (publish rejects with BusUnavailableError; interest
 * changes are kept and replayed), `degraded` while connected but JetStream (stream, buckets) is
 * not usable (retained and will operations fail, retried every `jetStreamRetryMs`), else `up`.
 */
import {
  AckPolicy,
  connect,
  createInbox,
  DebugEvents,
  DeliverPolicy,
  DiscardPolicy,
  Events,
  nanos,
  RetentionPolicy,
  StorageType,
  type JetStreamClient,
  type JetStreamManager,
  type KV,
  type Msg,
  type NatsConnection,
  type NatsError,
  type Subscription,
} from 'nats';
import { BusUnavailableError, type Bus, type BusEvents, type BusMessage, type BusState, type RetainedEntry } from '../core/bus.js';
import { decodeEnvelope, encodeEnvelope, EnvelopeWriter } from './nats-envelope.js';
import { checkSpace, filterToSubjects, subjectToTopic, topicToSubject } from './subject.js';

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
}

const DEFAULTS = {
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

const PEER_FORGET_MS = 10 * 60_000;
/** Topics whose live subject is kept (a node's hot topics); beyond it the oldest entry goes. */
const SUBJECT_CACHE_ENTRIES = 4096;
const SNAPSHOT_BATCH = 1000;

/**
 * `convert(key, space)` through a bounded map (topic ↔ subject for a node's hot topics). A key that
 * throws is not kept. The oldest entry goes when full: cheap, and hot keys come straight back.
 */
function remembered(cache: Map<string, string>, key: string, space: string, convert: (key: string, space: string) => string): string {
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
  const numeric = ['connectTimeoutMs', 'requestTimeoutMs', 'reconnectWaitMs', 'pingIntervalMs', 'heartbeatMs', 'nodeTimeoutMs', 'jetStreamRetryMs', 'interestSyncMs', 'replicas'] as const;
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
function keyToken(key: string): string {
  return Buffer.from(key, 'utf8').toString('base64url') || '_';
}

function isJetStreamUnavailable(err: unknown): boolean {
  const e = err as NatsError & { api_error?: { code?: number } };
  // 503: no responders (JetStream off, or no leader); TIMEOUT: no answer in time.
  return e?.code === '503' || e?.code === 'TIMEOUT' || e?.api_error?.code === 503 || /no responders|timeout|jetstream not enabled/i.test(e?.message ?? '');
}

function isWrongSequence(err: unknown): boolean {
  const e = err as { api_error?: { err_code?: number }; message?: string };
  return e?.api_error?.err_code === 10071 || /wrong last sequence/i.test(e?.message ?? '');
}

function isNotFound(err: unknown): boolean {
  const e = err as { api_error?: { code?: number }; code?: string; message?: string };
  return e?.api_error?.code === 404 || e?.code === '404' || /no message found|not found/i.test(e?.message ?? '');
}

class NatsBusImpl implements Bus {
  readonly kind = 'nats';
  readonly nodeId: string;
  readonly counters: NatsBusCounters = {
    published: 0,
    received: 0,
    duplicates: 0,
    malformed: 0,
    retainedStored: 0,
    retainedFailed: 0,
    snapshotsFailed: 0,
    willsClaimed: 0,
    willClaimsLost: 0,
    willWritesFailed: 0,
    reconnects: 0,
    heartbeatsFailed: 0,
    interestSyncTimeouts: 0,
  };
  private _state: BusState = 'down';
  private events: BusEvents | undefined;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private jsm: JetStreamManager | undefined;
  private willsKv: KV | undefined;
  private nodesKv: KV | undefined;
  private jetStreamReady = false;
  private closing = false;

  private readonly o: { -readonly [K in keyof typeof DEFAULTS]: (typeof DEFAULTS)[K] extends string ? string : number } & {
    servers: string[];
    user: string | undefined;
    pass: string | undefined;
    token: string | undefined;
    replicas: number | undefined;
  };
  private readonly log: NatsBusOptions['log'];
  private readonly live: string;
  private readonly retainedSpace: string;
  private readonly streamName: string;
  private readonly willsBucket: string;
  private readonly nodesBucket: string;
  private readonly syncSubject: string;

  /** This run: random, so a restarted node's sequence never looks like its past one. */
  private readonly run = Math.floor(Math.random() * 2 ** 52) + 1;
  private readonly owner: string;
  private nodeSeq = 0;
  /** Last node sequence seen per peer run (dedupe), with when (ms, coarse). */
  private readonly peers = new Map<number, { seq: number; seenMs: number }>();
  private nowMs = Date.now();

  private readonly interest = new Map<string, Subscription[]>();
  /** Per topic: the tail of its pending publishes (order behind a retained store). Never rejects. */
  private readonly tails = new Map<string, Promise<void>>();
  /** Live subject per recent topic, and topic per recent subject received (each bounded: SUBJECT_CACHE_ENTRIES, oldest first out). */
  private readonly liveSubjects = new Map<string, string>();
  private readonly liveTopics = new Map<string, string>();
  private readonly envelopes: EnvelopeWriter;
  /** Live messages handed to the NATS client at the next drain (setImmediate), in publish order. */
  private outSubjects: string[] = [];
  private outData: Uint8Array[] = [];
  /** What every publish queued since the last drain resolves with (shared: no promise per message). */
  private outBatch: { promise: Promise<number>; resolve: (seq: number) => void; reject: (err: unknown) => void } | undefined;

  private readonly ownWills = new Map<string, BusMessage>();
  private willsDirty = false;
  private heartbeatRevision = 0;
  /** Other owners (node runs) → when we last heard of them (ms, local clock). */
  private readonly ownersSeen = new Map<string, number>();
  /** Owners found dead (heartbeat key gone) → since when (ms): the fallback claim waits a timeout more. */
  private readonly deadSince = new Map<string, number>();
  private mustLearnOwners = true;
  private willOwnersListed = false;
  private timer: NodeJS.Timeout | undefined;
  private jetStreamTimer: NodeJS.Timeout | undefined;
  private ticking = false;
  private jetStreamSettingUp: Promise<void> | undefined;
  private flushing: Promise<void> | undefined;
  private flushNext: Promise<void> | undefined;
  private syncing: Promise<void> | undefined;
  private syncNext: Promise<void> | undefined;

  constructor(options: NatsBusOptions) {
    if (!options.nodeId) throw new Error('bus: nodeId must not be empty');
    const parsed = parseNatsServers(options.servers);
    this.nodeId = options.nodeId;
    this.o = {
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
    };
    if (this.o.heartbeatMs * 2 > this.o.nodeTimeoutMs) throw new Error(`bus: nodeTimeoutMs (${this.o.nodeTimeoutMs}) must be at least twice heartbeatMs (${this.o.heartbeatMs})`);
    this.log = options.log;
    const prefix = checkSpace(this.o.prefix);
    this.live = `${prefix}.m`;
    this.retainedSpace = `${prefix}.r`;
    const stem = prefix.replaceAll('.', '_');
    this.streamName = `${stem.toUpperCase()}_RETAINED`;
    this.willsBucket = `${stem}-wills`;
    this.nodesBucket = `${stem}-nodes`;
    this.syncSubject = `${prefix}.sync`;
    this.owner = `${this.nodeId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64)}-${this.run.toString(36)}`;
    this.envelopes = new EnvelopeWriter(this.nodeId);
  }

  get state(): BusState {
    return this._state;
  }

  async start(events: BusEvents): Promise<void> {
    this.events = events;
    const nc = await connect({
      servers: this.o.servers,
      name: `topicast ${this.nodeId}`,
      noEcho: true,
      user: this.o.user,
      pass: this.o.pass,
      token: this.o.token,
      timeout: this.o.connectTimeoutMs,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: this.o.reconnectWaitMs,
      reconnectJitter: Math.min(100, this.o.reconnectWaitMs),
      pingInterval: this.o.pingIntervalMs,
      maxPingOut: 2,
    }).catch((err: Error) => {
      throw new Error(`bus: cannot reach NATS at ${this.o.servers.join(',')}: ${err.message}`);
    });
    this.nc = nc;
    const me = new TextEncoder().encode(this.owner);
    nc.subscribe(this.syncSubject, {
      callback: (err, msg) => {
        if (!err) msg.respond(me);
      },
    });
    void this.watchStatus(nc);
    void nc.closed().then((err) => {
      if (!this.closing) {
        this.log?.error({ err: err?.message }, 'bus: NATS connection closed for good');
        this.setState('down', `connection closed${err ? `: ${err.message}` : ''}`);
      }
    });
    this.setState('degraded', 'connected, JetStream not checked yet');
    // A stream just created answers 503 until its replicas elect a leader: retry for a while
    // before reporting, so a node starting with a fresh NATS cluster comes up `up`.
    const deadline = Date.now() + 2 * this.o.requestTimeoutMs; // one request may time out on a busy cluster; give the retry its turn
    await this.setUpJetStream();
    while (!this.jetStreamReady && Date.now() < deadline && !this.closing) {
      await new Promise((r) => setTimeout(r, this.o.jetStreamRetryMs));
      await this.setUpJetStream();
    }
    this.timer = setInterval(() => void this.tick(), this.o.heartbeatMs);
    this.timer.unref();
  }

  // ---- state ----

  private setState(state: BusState, reason: string): void {
    if (state === this._state) return;
    this._state = state;
    this.log?.info({ state, reason }, 'bus state');
    this.events?.state(state, reason);
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect) {
        this.jetStreamReady = false; // checked again after the reconnect: the server may be another one, or restarted
        this.setState('down', `disconnected from ${String(s.data)}`);
      } else if (s.type === Events.Reconnect) {
        this.counters.reconnects++;
        // Owners we could not hear while away get a fresh timeout before anyone is declared dead.
        for (const owner of this.ownersSeen.keys()) this.ownersSeen.set(owner, Date.now());
        this.mustLearnOwners = true;
        this.setState('degraded', `reconnected to ${String(s.data)}, checking JetStream`);
        void this.setUpJetStream();
      } else if (s.type === Events.Error) {
        this.log?.warn({ err: String(s.data) }, 'bus: NATS async error');
      } else if (s.type === Events.LDM) {
        this.log?.info({ server: String(s.data) }, 'bus: NATS server entering lame duck mode');
      } else if (s.type === DebugEvents.StaleConnection) {
        this.log?.warn({}, 'bus: NATS connection stale (pings unanswered), reconnecting');
      }
    }
  }

  private markDegraded(reason: string, err: unknown): void {
    this.log?.warn({ err: (err as Error)?.message }, `bus: ${reason}`);
    if (!isJetStreamUnavailable(err)) return;
    this.jetStreamReady = false;
    if (this._state === 'up') this.setState('degraded', `${reason}: ${(err as Error).message}`);
    this.scheduleJetStreamRetry();
  }

  private scheduleJetStreamRetry(): void {
    if (this.jetStreamTimer || this.closing) return;
    this.jetStreamTimer = setTimeout(() => {
      this.jetStreamTimer = undefined;
      void this.setUpJetStream();
    }, this.o.jetStreamRetryMs);
    this.jetStreamTimer.unref();
  }

  /** Creates or binds the stream and buckets; on success the bus is up. Idempotent, one at a time. */
  private setUpJetStream(): Promise<void> {
    this.jetStreamSettingUp ??= this.doSetUpJetStream().finally(() => (this.jetStreamSettingUp = undefined));
    return this.jetStreamSettingUp;
  }

  private async doSetUpJetStream(): Promise<void> {
    const nc = this.nc;
    if (!nc || nc.isClosed() || this.closing) return;
    try {
      this.jsm ??= await nc.jetstreamManager({ timeout: this.o.requestTimeoutMs });
      this.js ??= nc.jetstream({ timeout: this.o.requestTimeoutMs });
      const replicas = await this.ensureStream();
      this.willsKv ??= await this.js.views.kv(this.willsBucket, { history: 1, replicas, timeout: this.o.requestTimeoutMs });
      this.nodesKv ??= await this.js.views.kv(this.nodesBucket, { history: 1, replicas, ttl: this.o.nodeTimeoutMs, timeout: this.o.requestTimeoutMs });
      await this.heartbeat();
      // Listing keys makes consumers (meta-leader work): only at start and after a reconnect, not on every retry.
      if (this.mustLearnOwners) {
        await this.learnOwners();
        this.mustLearnOwners = false;
      }
      if (!this.watching) void this.watchNodes();
      // Subscriptions made while down were sent by nats.js on reconnect: one round trip proves they are in place.
      await nc.flush();
      this.jetStreamReady = true;
      if (this.willsDirty) await this.resyncWills();
      // A resync that met an unavailable JetStream marked the bus degraded and scheduled the retry:
      // reporting `up` now would be a lie the outage buffer trusts (a retained write refused as
      // unavailable under `up` waits for an `up` event that, already up, never comes).
      if (!this.jetStreamReady) return;
      if (nc.isClosed() || this.closing || this._state === 'down') return;
      this.setState('up', 'connected, JetStream ready');
    } catch (err) {
      this.jetStreamReady = false;
      this.log?.warn({ err: (err as Error).message }, 'bus: JetStream not ready (retained values and wills unavailable), retrying');
      if (this._state === 'up') this.setState('degraded', `JetStream: ${(err as Error).message}`);
      this.scheduleJetStreamRetry();
    }
  }

  private clusterSize(): number {
    const info = this.nc?.info;
    if (!info?.cluster) return 1;
    return Math.max(1, new Set(info.connect_urls ?? []).size);
  }

  /** Creates the retained stream if missing; returns the replicas to use for the buckets. */
  private async ensureStream(): Promise<number> {
    const jsm = this.jsm!;
    try {
      const info = await jsm.streams.info(this.streamName);
      return info.config.num_replicas;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    let replicas = this.o.replicas ?? Math.min(3, this.clusterSize());
    for (;;) {
      try {
        await jsm.streams.add({
          name: this.streamName,
          subjects: [`${this.retainedSpace}.>`],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          max_msgs_per_subject: 1, // a retained value is the last message of its subject
          discard: DiscardPolicy.Old,
          num_replicas: replicas,
          allow_direct: true,
        });
        this.log?.info({ stream: this.streamName, replicas }, 'bus: retained stream created');
        return replicas;
      } catch (err) {
        // Another node created it meanwhile, with its own view of the cluster size: use theirs.
        if (/already in use/i.test((err as Error).message)) return (await jsm.streams.info(this.streamName)).config.num_replicas;
        if (replicas > 1 && this.o.replicas === undefined && /insufficient resources|replicas/i.test((err as Error).message)) {
          this.log?.warn({ err: (err as Error).message, replicas }, 'bus: fewer JetStream servers than replicas, trying fewer');
          replicas--;
          continue;
        }
        throw err;
      }
    }
  }

  // ---- interest and live messages ----

  async subscribe(filter: string): Promise<void> {
    if (this.interest.has(filter)) return;
    const nc = this.requireConnection();
    const subjects = filterToSubjects(filter, this.live);
    this.interest.set(
      filter,
      subjects.map((s) => nc.subscribe(s, { callback: this.onLive })),
    );
    // While down, nats.js sends the subscription on reconnect; waiting would stall local subscribers.
    if (this._state !== 'down') await this.syncInterest();
  }

  /** Resolves once every other live node's server holds the interest sent so far (see the design note). Coalesced like `flush`. */
  private syncInterest(): Promise<void> {
    if (this.syncing === undefined) {
      this.syncing = this.doSyncInterest().finally(() => (this.syncing = undefined));
      return this.syncing;
    }
    this.syncNext ??= this.syncing.then(() => {
      this.syncNext = undefined;
      return this.syncInterest();
    });
    return this.syncNext;
  }

  private async doSyncInterest(): Promise<void> {
    await this.flush();
    const nc = this.nc!;
    const now = Date.now();
    const waiting = new Set([...this.ownersSeen].filter(([, seenMs]) => now - seenMs < this.o.nodeTimeoutMs).map(([owner]) => owner));
    if (waiting.size === 0 || nc.isClosed()) return;
    const decoder = new TextDecoder();
    await new Promise<void>((resolve) => {
      const inbox = createInbox();
      const done = (): void => {
        clearTimeout(timer);
        sub.unsubscribe();
        resolve();
      };
      const timer = setTimeout(() => {
        this.counters.interestSyncTimeouts++;
        this.log?.warn({ waitingFor: [...waiting].slice(0, 10) }, 'bus: interest sync timed out; some nodes may miss messages on the new filter briefly');
        done();
      }, this.o.interestSyncMs);
      const sub = nc.subscribe(inbox, {
        callback: (err, msg) => {
          if (err) return done();
          waiting.delete(decoder.decode(msg.data));
          if (waiting.size === 0) done();
        },
      });
      nc.publish(this.syncSubject, new Uint8Array(0), { reply: inbox });
    });
  }

  async unsubscribe(filter: string): Promise<void> {
    const subs = this.interest.get(filter);
    if (!subs) return;
    this.interest.delete(filter);
    for (const s of subs) s.unsubscribe();
    if (this._state !== 'down' && this.nc && !this.nc.isClosed()) await this.flush();
  }

  /**
   * Resolves once the server has processed everything sent before the call (one PING/PONG).
   * Coalesced: at most one PING in flight, and one more shared by every caller that arrives
   * meanwhile (the PING in flight was sent before their lines, so it proves nothing for them).
   * Under load that is one round trip per batch of publishes, not one per publish.
   */
  private flush(): Promise<void> {
    if (this.flushing === undefined) {
      this.flushing = this.nc!.flush().finally(() => (this.flushing = undefined));
      return this.flushing;
    }
    this.flushNext ??= this.flushing
      .catch(() => undefined)
      .then(() => {
        this.flushNext = undefined;
        return this.flush();
      });
    return this.flushNext;
  }

  private readonly onLive = (err: NatsError | null, msg: Msg): void => {
    if (err) {
      this.log?.warn({ err: err.message }, 'bus: subscription error');
      return;
    }
    let env;
    let topic;
    try {
      env = decodeEnvelope(msg.data);
      topic = remembered(this.liveTopics, msg.subject, this.live, subjectToTopic);
    } catch (e) {
      this.counters.malformed++;
      if (this.counters.malformed <= 10 || this.counters.malformed % 1000 === 0) this.log?.warn({ subject: msg.subject.slice(0, 128), err: (e as Error).message, count: this.counters.malformed }, 'bus: malformed message dropped');
      return;
    }
    const peer = this.peers.get(env.run);
    if (peer === undefined) this.peers.set(env.run, { seq: env.nodeSeq, seenMs: this.nowMs });
    else if (env.nodeSeq <= peer.seq) {
      this.counters.duplicates++;
      return;
    } else {
      peer.seq = env.nodeSeq;
      peer.seenMs = this.nowMs;
    }
    this.counters.received++;
    this.events?.message({ topic, payload: env.payload, retain: env.retain, qos: env.qos, properties: env.properties, origin: env.origin, seq: env.streamSeq });
  };

  private requireConnection(): NatsConnection {
    const nc = this.nc;
    if (!nc || nc.isClosed()) throw new BusUnavailableError('bus: not connected to NATS');
    return nc;
  }

  /**
   * Not async, and no promise or closure per message on the common path (not retained, no
   * retained store pending on the topic): the message is encoded at once (its node sequence
   * fixes its place), queued, and every publish until the next drain shares one promise.
   */
  publish(message: BusMessage): Promise<number> {
    try {
      if (this._state === 'down') throw new BusUnavailableError('bus: NATS is unreachable');
      this.requireConnection();
      const subject = this.liveSubject(message.topic);
      const prev = this.tails.get(message.topic);
      if (!message.retain && prev === undefined) return this.sendLive(subject, message, 0);
      return this.publishOrdered(subject, message, prev);
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** A retained publish, or any publish behind one on its topic: chained so the topic's order holds. */
  private async publishOrdered(subject: string, message: BusMessage, prev: Promise<void> | undefined): Promise<number> {
    const topic = message.topic;
    const stored = message.retain ? this.storeRetained(message) : undefined;
    const done = (async () => {
      const seq = stored ? await stored : 0;
      if (prev) await prev;
      // Queued (its place in the order fixed) before the next message of the topic may go.
      return { seq, accepted: this.sendLive(subject, message, seq) };
    })();
    const tail = done.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(topic, tail);
    void tail.then(() => {
      if (this.tails.get(topic) === tail) this.tails.delete(topic);
    });
    const { seq, accepted } = await done;
    await accepted;
    return seq;
  }

  /** `topicToSubject` for live messages, remembered for the node's recent topics. */
  private liveSubject(topic: string): string {
    return remembered(this.liveSubjects, topic, this.live, topicToSubject);
  }

  /**
   * Encodes and queues a live message; resolves (with 0) once the server has it, like every
   * message queued in the same turn. The NATS client writes its buffer to the socket in a
   * microtask after its first queued line, which under uWebSockets.js (microtasks run after each
   * callback) is one socket write per incoming message: queueing until setImmediate instead
   * lets one write carry every message that arrived in the same event-loop turn.
   */
  private sendLive(subject: string, m: BusMessage, streamSeq: number): Promise<number> {
    const data = this.envelopes.encode(m.retain, m.qos, this.run, ++this.nodeSeq, streamSeq, m.properties, m.payload);
    const maxPayload = this.nc?.info?.max_payload;
    if (maxPayload !== undefined && data.length > maxPayload) {
      // Refused for good (not an outage): a retry would not fit either.
      return Promise.reject(new Error(`bus: message of ${data.length} bytes (envelope included) exceeds the NATS server's max_payload of ${maxPayload} bytes`));
    }
    this.outSubjects.push(subject);
    this.outData.push(data);
    if (this.outBatch === undefined) {
      let resolve!: (seq: number) => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<number>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.outBatch = { promise, resolve, reject };
      setImmediate(this.drainOut);
    }
    return this.outBatch.promise;
  }

  /** Hands the queued live messages to the NATS client, in order, then settles their shared promise. */
  private readonly drainOut = (): void => {
    const batch = this.outBatch;
    if (batch === undefined) return;
    const subjects = this.outSubjects;
    const data = this.outData;
    this.outBatch = undefined;
    this.outSubjects = [];
    this.outData = [];
    const nc = this.nc;
    if (this._state === 'down' || !nc || nc.isClosed()) {
      batch.reject(new BusUnavailableError('bus: NATS became unreachable before the message was sent'));
      return;
    }
    try {
      for (let i = 0; i < subjects.length; i++) nc.publish(subjects[i]!, data[i]!);
    } catch (err) {
      // The connection was checked above and sizes when queued: what is left is the client refusing (closing).
      batch.reject(new BusUnavailableError(`bus: publish failed: ${(err as Error).message}`));
      return;
    }
    this.counters.published += subjects.length;
    // "accepted by the engine", not merely buffered in this process. The PONG is lost only with the
    // connection (DISCONNECT, CONNECTION_CLOSED): an outage, so acknowledged publishes wait and
    // are replayed (the outage policy) instead of being refused as if the bus had rejected them.
    this.flush().then(
      () => batch.resolve(0),
      (err: unknown) => batch.reject(new BusUnavailableError(`bus: the connection dropped before NATS confirmed the message: ${(err as Error).message}`)),
    );
  };

  /** Stores a retained value (or deletes it); resolves with its stream seq. */
  private async storeRetained(m: BusMessage): Promise<number> {
    if (!this.jetStreamReady || !this.js) {
      this.counters.retainedFailed++;
      throw new BusUnavailableError('bus: retained store (JetStream) unavailable');
    }
    const subject = topicToSubject(m.topic, this.retainedSpace);
    const data = encodeEnvelope({ retain: true, qos: m.qos, origin: this.nodeId, run: this.run, nodeSeq: 0, streamSeq: 0, properties: m.properties, payload: m.payload });
    let seq: number;
    try {
      seq = (await this.js.publish(subject, data, { timeout: this.o.requestTimeoutMs })).seq;
    } catch (err) {
      this.counters.retainedFailed++;
      this.markDegraded('retained store failed', err);
      throw new BusUnavailableError(`bus: retained store failed: ${(err as Error).message}`);
    }
    this.counters.retainedStored++;
    if (m.payload.length === 0) {
      // The tombstone did its job (it replaced the value, and its seq orders the delete); purge it
      // and nothing newer (seq is exclusive), so deleted topics leave nothing in the stream.
      this.jsm!.streams.purge(this.streamName, { filter: subject, seq: seq + 1 }).catch((err: Error) => this.log?.warn({ err: err.message, topic: m.topic.slice(0, 128) }, 'bus: purging a retained tombstone failed (it stays as an empty value)'));
    }
    return seq;
  }

  // ---- retained snapshot ----

  async retained(filter: string): Promise<RetainedEntry[]> {
    if (!this.jetStreamReady || !this.jsm) throw new BusUnavailableError('bus: retained store (JetStream) unavailable');
    const subjects = filterToSubjects(filter, this.retainedSpace);
    try {
      const parts = await Promise.all(subjects.map((s) => (s.endsWith('.>') || s.split('.').includes('*') ? this.snapshotWildcard(s) : this.snapshotExact(s))));
      return parts.flat();
    } catch (err) {
      this.counters.snapshotsFailed++;
      this.markDegraded('retained snapshot failed', err);
      throw err instanceof BusUnavailableError ? err : new BusUnavailableError(`bus: retained snapshot failed: ${(err as Error).message}`);
    }
  }

  private entry(subject: string, seq: number, data: Uint8Array): RetainedEntry | undefined {
    let env;
    let topic;
    try {
      env = decodeEnvelope(data);
      topic = subjectToTopic(subject, this.retainedSpace);
    } catch (err) {
      this.counters.malformed++;
      this.log?.warn({ subject: subject.slice(0, 128), err: (err as Error).message }, 'bus: malformed retained value skipped');
      return undefined;
    }
    if (env.payload.length === 0) return undefined; // a tombstone not purged yet
    return { topic, payload: env.payload, properties: env.properties, seq };
  }

  private async snapshotExact(subject: string): Promise<RetainedEntry[]> {
    try {
      const m = await this.jsm!.streams.getMessage(this.streamName, { last_by_subj: subject });
      const e = this.entry(m.subject, m.seq, m.data);
      return e ? [e] : [];
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }

  private async snapshotWildcard(subject: string): Promise<RetainedEntry[]> {
    const jsm = this.jsm!;
    const nc = this.requireConnection();
    const ci = await jsm.consumers.add(this.streamName, {
      filter_subject: subject,
      deliver_policy: DeliverPolicy.LastPerSubject,
      ack_policy: AckPolicy.None,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(Math.max(10_000, this.o.requestTimeoutMs * 2)), // cleans up if our delete is lost
    });
    const out: RetainedEntry[] = [];
    try {
      if (ci.num_pending === 0) return out;
      await new Promise<void>((resolve, reject) => {
        const inbox = createInbox();
        let inBatch = 0;
        const next = (): void => {
          inBatch = 0;
          nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${this.streamName}.${ci.name}`, JSON.stringify({ batch: SNAPSHOT_BATCH, no_wait: true }), { reply: inbox });
        };
        const finish = (err?: Error): void => {
          clearTimeout(timer);
          sub.unsubscribe();
          if (err) reject(err);
          else resolve();
        };
        const timer = setTimeout(() => finish(new Error(`snapshot of ${subject} timed out`)), this.o.requestTimeoutMs);
        const sub = nc.subscribe(inbox, {
          callback: (err, msg) => {
            if (err) return finish(err);
            const code = msg.headers?.code ?? 0;
            if (code === 404 || code === 408) return finish(); // nothing more to deliver
            if (code >= 400) return finish(new Error(`snapshot of ${subject}: ${code} ${msg.headers?.description ?? ''}`));
            if (!msg.reply?.startsWith('$JS.ACK.')) return; // a status without data (e.g. heartbeat)
            // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ms>.<pending> (v1), or with domain and account hash (v2).
            const t = msg.reply.split('.');
            const base = t.length >= 12 ? 4 : 2;
            const seq = Number(t[base + 3]);
            const pending = Number(t[base + 6]);
            const e = this.entry(msg.subject, seq, msg.data);
            if (e) out.push(e);
            if (pending === 0) return finish();
            if (++inBatch === SNAPSHOT_BATCH) next();
          },
        });
        next();
      });
      return out;
    } finally {
      jsm.consumers.delete(this.streamName, ci.name).catch((err: Error) => {
        if (!isNotFound(err)) this.log?.warn({ err: err.message }, 'bus: deleting a snapshot consumer failed (it expires by itself)');
      });
    }
  }

  // ---- wills and liveness ----

  async setWill(key: string, will: BusMessage | undefined): Promise<void> {
    if (will) this.ownWills.set(key, will);
    else this.ownWills.delete(key);
    if (!this.jetStreamReady || this._state === 'down') {
      this.willsDirty = true; // written when JetStream is back (resyncWills)
      return;
    }
    try {
      await this.writeWill(key, will);
    } catch (err) {
      this.counters.willWritesFailed++;
      this.willsDirty = true;
      this.markDegraded('writing a will failed (retried on recovery)', err);
    }
  }

  private willKey(key: string): string {
    return `${this.owner}.${keyToken(key)}`;
  }

  private async writeWill(key: string, will: BusMessage | undefined): Promise<void> {
    const k = this.willKey(key);
    if (will) await this.willsKv!.put(k, encodeEnvelope({ retain: will.retain, qos: will.qos, origin: this.nodeId, run: this.run, nodeSeq: 0, streamSeq: 0, properties: will.properties, payload: will.payload, topic: will.topic }));
    else await this.purgeKey(this.willsBucket, k);
  }

  /** Removes a key with no delete marker left behind (a stream purge of its subject). */
  private async purgeKey(bucket: string, key: string): Promise<void> {
    await this.jsm!.streams.purge(`KV_${bucket}`, { filter: `$KV.${bucket}.${key}` });
  }

  /** Writes every will this node holds and removes those it no longer holds. */
  private async resyncWills(): Promise<void> {
    this.willsDirty = false;
    try {
      const held = new Set([...this.ownWills.keys()].map((k) => this.willKey(k)));
      for await (const k of await this.willsKv!.keys(`${this.owner}.>`)) if (!held.has(k)) await this.purgeKey(this.willsBucket, k);
      for (const [key, will] of this.ownWills) await this.writeWill(key, will);
    } catch (err) {
      this.willsDirty = true;
      this.counters.willWritesFailed++;
      this.markDegraded('re-writing wills failed', err);
    }
  }

  private async heartbeat(): Promise<void> {
    const kv = this.nodesKv!;
    const value = JSON.stringify({ nodeId: this.nodeId, run: this.run });
    if (this.heartbeatRevision > 0) {
      try {
        this.heartbeatRevision = await kv.update(this.owner, value, this.heartbeatRevision);
        return;
      } catch (err) {
        if (!isWrongSequence(err)) throw err;
        // Our key expired: others may have declared us dead and published our wills. Re-register them.
        this.log?.warn({ owner: this.owner }, 'bus: this node was considered dead (heartbeat expired); re-writing its wills');
        this.willsDirty = true;
      }
    }
    try {
      this.heartbeatRevision = await kv.create(this.owner, value);
    } catch (err) {
      if (!isWrongSequence(err)) throw err;
      // An update that timed out but was applied: take the current revision.
      this.heartbeatRevision = (await kv.get(this.owner))?.revision ?? 0;
    }
  }

  private watching = false;

  /** Follows the nodes bucket: every heartbeat refreshes its owner; a purge (clean close) makes it suspect at once. */
  private async watchNodes(): Promise<void> {
    this.watching = true;
    try {
      const it = await this.nodesKv!.watch();
      for await (const e of it) {
        if (e.key === this.owner) continue;
        this.ownersSeen.set(e.key, e.operation === 'PUT' ? Date.now() : 0);
      }
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'bus: watching node heartbeats failed; retrying');
    } finally {
      this.watching = false;
    }
  }

  /**
   * Live owners (their heartbeat keys), and at start the owners that hold wills, heard of or not
   * (e.g. all died while no node ran): each gets a timeout. Listing wills is O(wills), so only
   * at start; an owner that dies later was heard of by then (heartbeat before any will).
   */
  private async learnOwners(): Promise<void> {
    const now = Date.now();
    for await (const owner of await this.nodesKv!.keys()) if (owner !== this.owner && !this.ownersSeen.has(owner)) this.ownersSeen.set(owner, now);
    if (this.willOwnersListed) return;
    for await (const k of await this.willsKv!.keys()) {
      const owner = k.slice(0, k.indexOf('.'));
      if (owner !== this.owner && !this.ownersSeen.has(owner)) this.ownersSeen.set(owner, now);
    }
    this.willOwnersListed = true; // only once the whole listing went through
  }

  private async tick(): Promise<void> {
    this.nowMs = Date.now();
    if (this.ticking || this.closing || !this.jetStreamReady || this._state === 'down') return;
    this.ticking = true;
    try {
      for (const [run, p] of this.peers) if (this.nowMs - p.seenMs > PEER_FORGET_MS) this.peers.delete(run);
      await this.heartbeat();
      if (this.willsDirty) await this.resyncWills();
      if (!this.watching) void this.watchNodes();
      for (const [owner, seenMs] of this.ownersSeen) {
        if (this.nowMs - seenMs < this.o.nodeTimeoutMs) continue;
        const alive = await this.nodesKv!.get(owner);
        if (alive && alive.operation === 'PUT') {
          this.ownersSeen.set(owner, Date.now());
          this.deadSince.delete(owner);
          continue;
        }
        const since = this.deadSince.get(owner) ?? this.nowMs;
        this.deadSince.set(owner, since);
        // One designated survivor claims; the others only after a further timeout (it may be gone too).
        if (this.claimerOf(owner) !== this.owner && this.nowMs - since < this.o.nodeTimeoutMs) continue;
        if ((await this.claimWillsOf(owner)) > 0) continue; // see claimWillsOf: retried next tick
        this.ownersSeen.delete(owner);
        this.deadSince.delete(owner);
      }
    } catch (err) {
      this.counters.heartbeatsFailed++;
      this.markDegraded('heartbeat or will check failed', err);
    } finally {
      this.ticking = false;
    }
  }

  /**
   * The live owner (this node included) designated to claim `dead`'s wills: the same answer on
   * every node that sees the same live set, spread over nodes by a hash of the dead owner. The
   * compare-and-set delete is what makes a claim exclusive; the designation keeps survivors from
   * racing for it, which nats-server 2.9 does not always settle in a cluster (two concurrent
   * deletes with the same expected revision were both accepted in our 3-server test).
   */
  private claimerOf(dead: string): string {
    const live = [this.owner];
    for (const [owner, seenMs] of this.ownersSeen) if (owner !== dead && this.nowMs - seenMs < this.o.nodeTimeoutMs) live.push(owner);
    live.sort();
    let h = 0;
    for (let i = 0; i < dead.length; i++) h = (h * 31 + dead.charCodeAt(i)) >>> 0;
    return live[h % live.length]!;
  }

  /**
   * Claims every will `owner` left; resolves with how many claims were lost. A lost claim is
   * another survivor's win, or a stale read (KV gets may be served by a replica that lags): the
   * caller keeps the owner and tries again next tick, when a fresh read finds either nothing (the
   * other node claimed it) or the will still there.
   */
  private async claimWillsOf(owner: string): Promise<number> {
    const kv = this.willsKv!;
    const keys: string[] = [];
    for await (const k of await kv.keys(`${owner}.>`)) keys.push(k);
    let lost = 0;
    for (const k of keys) {
      const e = await kv.get(k);
      if (!e || e.operation !== 'PUT') continue;
      try {
        await kv.delete(k, { previousSeq: e.revision });
      } catch (err) {
        if (!isWrongSequence(err)) throw err;
        this.counters.willClaimsLost++;
        lost++;
        continue;
      }
      this.counters.willsClaimed++;
      this.purgeKey(this.willsBucket, k).catch((err: Error) => this.log?.warn({ err: err.message }, 'bus: purging a claimed will marker failed'));
      let env;
      try {
        env = decodeEnvelope(e.value);
        if (env.topic === undefined) throw new Error('will without a topic');
      } catch (err) {
        this.counters.malformed++;
        this.log?.warn({ key: k, err: (err as Error).message }, 'bus: malformed will skipped');
        continue;
      }
      const key = Buffer.from(k.slice(owner.length + 1), 'base64url').toString('utf8');
      this.log?.info({ owner: env.origin, key }, 'bus: publishing the will of a dead node');
      this.events?.orphanWill({ owner: env.origin, key, message: { topic: env.topic, payload: env.payload, retain: env.retain, qos: env.qos, properties: env.properties, origin: env.origin, seq: 0 } });
    }
    return lost;
  }

  // ---- close ----

  /**
   * Drops the connection without clearing wills or leaving, as a crash would (the other nodes
   * publish this node's wills after `nodeTimeoutMs`). For tests and for a process that must exit now.
   */
  async closeAbruptly(): Promise<void> {
    this.closing = true;
    clearInterval(this.timer);
    clearTimeout(this.jetStreamTimer);
    this._state = 'down';
    await this.nc?.close();
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.timer);
    clearTimeout(this.jetStreamTimer);
    const nc = this.nc;
    if (!nc || nc.isClosed()) return;
    if (this.jetStreamReady && this._state !== 'down') {
      try {
        const clear = async (): Promise<void> => {
          for await (const k of await this.willsKv!.keys(`${this.owner}.>`)) await this.purgeKey(this.willsBucket, k);
          await this.purgeKey(this.nodesBucket, this.owner);
        };
        // A shutdown must not hang on a sick JetStream: past the request timeout the wills stay and go out as a dead node's.
        let timer: NodeJS.Timeout | undefined;
        await Promise.race([clear(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('timed out')), this.o.requestTimeoutMs)))]).finally(() => clearTimeout(timer));
      } catch (err) {
        this.log?.warn({ err: (err as Error).message }, 'bus: clearing this node\'s wills at close failed (they will be published after the node timeout)');
      }
    }
    await Promise.allSettled([...this.tails.values()]);
    this.drainOut(); // messages queued this turn go before the connection drains
    try {
      await nc.drain();
    } catch (err) {
      this.log?.warn({ err: (err as Error).message }, 'bus: draining the NATS connection failed');
      await nc.close();
    }
    this._state = 'down';
  }
}

/** A Bus over NATS (see the design note above). `start(events)` connects. */
export type NatsBus = Bus & { readonly counters: NatsBusCounters; closeAbruptly(): Promise<void> };

export function createNatsBus(options: NatsBusOptions): NatsBus {
  // The `bus` setting arrives whole (cluster/index.ts): its query string carries NATS-only tuning.
  if (typeof options.servers === 'string' && options.servers.includes('?')) {
    const fromUrl = natsBusOptionsFromUrl(options.servers, options.nodeId);
    const explicit = Object.fromEntries(Object.entries(options).filter(([k, v]) => v !== undefined && k !== 'servers'));
    options = { ...fromUrl, ...explicit } as NatsBusOptions;
  }
  return new NatsBusImpl(options);
}
