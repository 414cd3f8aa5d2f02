/**
 * Durable MQTT sessions (broker/MQTT.md "Persistent sessions across restarts"): with `--data DIR`,
 * every persistent session (3.1.1 clean session 0, MQTT 5 session expiry > 0) is mirrored into an
 * append-only log in DIR/sessions, on the same engine as the retained store (store/append-log.ts:
 * record framing, group commit, torn-tail recovery, compaction). On start-up the log is replayed
 * and the sessions are rebuilt before the listeners open.
 *
 * Records (MessagePack arrays in store/record.ts frames); each states one key's whole value or
 * deletes it, so replay is last-write-wins per key, as the engine's compaction requires:
 *   [1, clientId, meta]                                session state (key: clientId)
 *   [2, clientId, seq, msgId, qos, retain, subIds, packetId, state]   one outgoing QoS 1/2 delivery
 *                                                      (key: clientId+seq; packetId 0 = queued)
 *   [3, clientId, seq]                                 that delivery is done or dropped
 *   [4, msgId, topic, payload, qos, retain, properties]  a message referenced by deliveries
 *   [5, clientId]                                      the session ended: it and all its keys go
 *   [6, clientId, packetId, held]                      incoming QoS 2 id awaiting PUBREL (held 1) or released (0)
 * A message fanned out to many sessions in one publish is written once; a delivery keeps its msgId.
 * Message records are not keys of their own: on load, the ones no surviving delivery references are
 * dropped, and a snapshot writes each referenced message right before the first delivery using it.
 *
 * Invariants
 * - The store only ever sees sessions with `session.store` set; clean and expiry-0 sessions never
 *   reach it (no cost for them), nor does QoS 0 (never stored for a session, [MQTT-3.1.2-5]).
 * - A record is appended in the same turn as the in-memory change it mirrors, so `synced()` after
 *   a publish covers every queue it was added to (the publisher's PUBACK/PUBREC waits for it).
 * - A snapshot writes each session with all its deliveries as one buffer, taken in one turn, so a
 *   delivery moving from the queue to the in-flight window mid-snapshot is never missed.
 * Cost per stored delivery: one MessagePack encode + CRC32 (plus the message once per publish), and
 * a share of the batch's write + fdatasync; completing it appends a small drop record.
 */
import { createMessage, type Message, type MessageProperties } from '../../core/message.js';
import {
  openAppendLog, type AppendLog, type AppendLogOptions, type AppendLogOwner, type LoadReport, type LogStoreStats,
} from '../../store/append-log.js';
import { frameRecord, recordPackr, unpackBody } from '../../store/record.js';
import type { Delivery, InflightEntry, MqttSubscriptionOptions, PersistedSession, Will } from './types.js';

const Kind = { session: 1, entry: 2, drop: 3, message: 4, end: 5, incoming: 6 } as const;
/** Delivery state on disk: queued, PUBLISH sent (awaiting PUBACK/PUBREC), PUBREL sent (awaiting PUBCOMP). */
const EntryState = { queued: 0, publish: 1, pubrel: 2 } as const;

/** What a session's meta record holds (MessagePack map keys kept short: it is rewritten on every connect). */
export interface StoredMeta {
  /** Protocol level of the last connection. */
  v: 3 | 4 | 5;
  /** Session expiry in seconds. */
  exp: number;
  /** Subscriptions, shared ones included: [filter, qos, noLocal, retainAsPublished, retainHandling, subscriptionId?]. */
  subs: [string, 0 | 1 | 2, boolean, boolean, 0 | 1 | 2, number | null][];
  /** Connected when written (a crash then leaves no disconnect time: the restart is taken as it). */
  on: boolean;
  /** When the client disconnected (ms since the epoch); 0 while connected. */
  off: number;
  /** The will that is pending (offline) or would be due if the connection were lost (online). */
  will?: [string, Uint8Array, 0 | 1 | 2, boolean, MessageProperties | null, number | null, number];
}

/** A session as found on disk, before the MQTT server rebuilds it. */
export interface LoadedSession {
  clientId: string;
  version: 3 | 4 | 5;
  expirySec: number;
  subscriptions: [string, MqttSubscriptionOptions][];
  connected: boolean;
  disconnectedAtMs: number;
  will: Will | undefined;
  /** Outgoing deliveries in seq order: packetId 0 = queued, else in flight in `state`. */
  deliveries: { seq: number; delivery: Delivery; packetId: number; state: 'publish' | 'pubrel' }[];
  awaitingRelease: number[];
}

/**
 * What a persistent session writes through: this file's local log (`--data`), or with a NATS bus
 * the cluster's session store (cluster/mqtt-sessions.ts, JetStream). Each call mirrors one change
 * of the session in the same turn; `synced()` resolves once everything written so far is durable.
 */
export interface SessionStore {
  /** Records written so far; a publish compares it before and after routing to know whether to wait. */
  readonly writes: number;
  synced(): Promise<void>;
  saveMeta(session: PersistedSession): Promise<void>;
  saveAll(session: PersistedSession): Promise<void>;
  end(clientId: string): void;
  saveDelivery(session: PersistedSession, d: Delivery, packetId: number, state: InflightEntry['state'] | 'queued'): void;
  dropDelivery(session: PersistedSession, d: Delivery): void;
  saveIncoming(session: PersistedSession, packetId: number, held: boolean): Promise<void>;
  /**
   * Cluster stores only: takes the client id over from the node that holds it (that node closes
   * its connection and lets the session go), then reads the session as stored (undefined: none,
   * or this node holds it already). A `persistent` claim also records this node as the session's
   * holder (decided cluster-wide: of two simultaneous claims one wins, the other takes over from it).
   * A `cleanStart` claim that is not persistent reads nothing: it resolves once the holder let go,
   * and the stored session is discarded after (`synced` waits for that), so a device that keeps
   * nothing connects without waiting for the engine's storage.
   */
  claim?(clientId: string, persistent: boolean, cleanStart: boolean): Promise<LoadedSession | undefined>;
  /** Cluster stores only: this node holds the client id; a claim from another node runs `release`. */
  hold?(clientId: string, release: () => Promise<void>): void;
  unhold?(clientId: string): void;
  /**
   * Cluster stores only: `listener` adopts the sessions a gone node held (`from`), on the one
   * survivor designated for it, and resolves with the client ids it settled (adopted, ended, or
   * found on another node by now).
   */
  onOrphans?(listener: (from: string, clientIds: string[], lastSeenMs: number) => Promise<string[]>): void;
  /** Cluster stores only: takes `clientId` from the gone node `from`; undefined when it is elsewhere by now or ended. */
  adopt?(clientId: string, from: string): Promise<LoadedSession | undefined>;
}

interface LoadingSession {
  meta: StoredMeta | undefined;
  entries: Map<number, unknown[]>;
  incoming: Set<number>;
}

export interface SessionStoreStats extends LogStoreStats {
  /** Deliveries found on load whose message record was missing (its write had failed): not restored. */
  lostOnLoad: number;
}

export async function openSessionStore(dir: string, options: AppendLogOptions = {}): Promise<MqttSessionStore> {
  const store = new MqttSessionStore();
  store.attachLog(openAppendLog(dir, 'session store', store, options));
  return store;
}

export class MqttSessionStore implements AppendLogOwner, SessionStore {
  private log!: AppendLog;
  /** Filled while loading, handed to the MQTT server once (`takeLoaded`). */
  private loading: Map<string, LoadingSession> | undefined = new Map();
  private loadingMessages: Map<number, Message> | undefined = new Map();
  private loaded: LoadedSession[] = [];
  private lostOnLoad = 0;
  /** The engine's counters (live) plus what loading found. */
  stats!: SessionStoreStats;
  private nextMessageId = 1;
  /**
   * The message last written and its record's id: one publish fans out to its sessions in one
   * synchronous pass, so this one entry writes the message once per publish (a WeakMap cost more
   * than the record). Forgotten when a compaction starts: a record written before it is left out of
   * the snapshot unless a live delivery references it, so a later delivery of the same message (a
   * retained one, say) writes it again.
   */
  private lastMessage: Message | undefined;
  private lastMessageId = 0;
  /**
   * Every session the snapshot walks; set by the MQTT server when it takes the loaded sessions.
   * Until then the state is only in `loaded`, so no compaction may run (it would snapshot nothing
   * and delete the files that hold the sessions).
   */
  private sessions: Iterable<PersistedSession> | undefined;

  /** @internal Use openSessionStore. */
  attachLog(log: AppendLog): void {
    this.log = log;
    this.finishLoad();
    this.stats = Object.assign(log.stats, { lostOnLoad: this.lostOnLoad });
  }

  get dir(): string {
    return this.log.dir;
  }

  /** What start-up found besides intact records: a torn tail cut off, a recovery (--data-recover). */
  get loadReport(): LoadReport {
    return this.log.loadReport;
  }

  /** Records appended so far; a publish compares it before and after routing to know whether to wait. */
  get writes(): number {
    return this.log.stats.writes;
  }

  /** Resolves once every record appended so far is durable. */
  synced(): Promise<void> {
    return this.log.synced();
  }

  close(): Promise<void> {
    return this.log.close();
  }

  /**
   * The sessions found on disk, once: the MQTT server rebuilds them at start-up and from then on
   * `sessions` lists every session for compaction.
   */
  takeLoaded(sessions: Iterable<PersistedSession>): LoadedSession[] {
    const out = this.loaded;
    this.loaded = [];
    this.sessions = sessions;
    return out;
  }

  // ---- writes (called by MqttSession) ------------------------------------------------

  /** The session's state: subscriptions, expiry, connection, will. */
  saveMeta(session: PersistedSession): Promise<void> {
    return this.log.append(this.metaRecord(session));
  }

  /** The whole session: meta, incoming QoS 2 ids, every delivery (when it becomes persistent). */
  saveAll(session: PersistedSession): Promise<void> {
    return this.log.append(this.sessionRecords(session, undefined));
  }

  end(clientId: string): void {
    void this.log.append(frameRecord(recordPackr.pack([Kind.end, clientId])));
  }

  /** A delivery entered the queue (packetId 0) or the in-flight window, or changed state there. */
  saveDelivery(session: PersistedSession, d: Delivery, packetId: number, state: InflightEntry['state'] | 'queued'): void {
    const parts: Buffer[] = [];
    this.ensureMessage(d, parts);
    if (parts.length > 0) void this.log.append(parts[0]!);
    void this.log.append(frameRecord(recordPackr.pack(entryBody(session.clientId, d, packetId, state))));
  }

  /** A delivery is complete (acknowledged), dropped by the queue limit, or expired. */
  dropDelivery(session: PersistedSession, d: Delivery): void {
    void this.log.append(frameRecord(recordPackr.pack([Kind.drop, session.clientId, d.seq])));
  }

  /** An incoming QoS 2 packet id is held until PUBREL (true) or released (false). */
  saveIncoming(session: PersistedSession, packetId: number, held: boolean): Promise<void> {
    return this.log.append(frameRecord(recordPackr.pack([Kind.incoming, session.clientId, packetId, held ? 1 : 0])));
  }

  /**
   * Gives the delivery the id of its message's record, adding the record to `parts` when the
   * current files lack it. A delivery keeps its id for life: while it lives, every snapshot writes
   * the record it references, so a state change (queued → in flight → PUBREL) never rewrites it.
   */
  private ensureMessage(d: Delivery, parts: Buffer[]): void {
    if (d.msgId !== undefined) return;
    if (d.message === this.lastMessage) {
      d.msgId = this.lastMessageId;
      return;
    }
    const msgId = this.nextMessageId++;
    this.lastMessage = d.message;
    this.lastMessageId = msgId;
    d.msgId = msgId;
    parts.push(messageRecord(msgId, d.message));
  }

  private metaRecord(session: PersistedSession): Buffer {
    return frameRecord(recordPackr.pack([Kind.session, session.clientId, metaOf(session)]));
  }

  /** One buffer with every record of the session; `written` skips messages already in this snapshot. */
  private sessionRecords(session: PersistedSession, written: Set<number> | undefined): Buffer {
    const parts: Buffer[] = [this.metaRecord(session)];
    for (const id of session.awaitingRelease) parts.push(frameRecord(recordPackr.pack([Kind.incoming, session.clientId, id, 1])));
    const add = (d: Delivery, packetId: number, state: InflightEntry['state'] | 'queued'): void => {
      if (written !== undefined) {
        // Snapshot: every delivery of a persistent session has its id; each message goes in once, before its first use.
        const msgId = d.msgId!;
        if (!written.has(msgId)) {
          written.add(msgId);
          parts.push(messageRecord(msgId, d.message));
        }
      } else {
        this.ensureMessage(d, parts);
      }
      parts.push(frameRecord(recordPackr.pack(entryBody(session.clientId, d, packetId, state))));
    };
    for (const [id, entry] of session.inflight) add(entry, id, entry.state);
    session.forEachQueued((d) => add(d, 0, 'queued'));
    return Buffer.concat(parts);
  }

  // ---- AppendLogOwner ---------------------------------------------------------------

  /** @internal */
  loadRecord(buf: Buffer, start: number, end: number): boolean {
    const v = unpackBody(buf, start, end);
    if (!Array.isArray(v)) return false;
    const sessions = this.loading!;
    const session = (clientId: unknown): LoadingSession | undefined => {
      if (typeof clientId !== 'string') return undefined;
      let s = sessions.get(clientId);
      if (!s) sessions.set(clientId, (s = { meta: undefined, entries: new Map(), incoming: new Set() }));
      return s;
    };
    switch (v[0]) {
      case Kind.session: {
        const s = session(v[1]);
        if (!s || v[2] === null || typeof v[2] !== 'object') return false;
        s.meta = v[2] as StoredMeta;
        return true;
      }
      case Kind.entry: {
        const s = session(v[1]);
        if (!s || typeof v[2] !== 'number') return false;
        s.entries.set(v[2], v);
        return true;
      }
      case Kind.drop: {
        const s = session(v[1]);
        if (!s || typeof v[2] !== 'number') return false;
        s.entries.delete(v[2]);
        return true;
      }
      case Kind.message: {
        if (typeof v[1] !== 'number' || typeof v[2] !== 'string' || !(v[3] instanceof Uint8Array)) return false;
        const properties = v[6] !== null && typeof v[6] === 'object' ? (v[6] as MessageProperties) : undefined;
        if (properties?.correlationData instanceof Uint8Array) properties.correlationData = Buffer.from(properties.correlationData);
        const qos = v[4] === 1 || v[4] === 2 ? v[4] : 0;
        // Copy out of the read buffer: a view would pin the whole chunk for as long as the delivery waits.
        this.loadingMessages!.set(v[1], createMessage(v[2], Buffer.from(v[3]), v[5] === true, undefined, qos, properties));
        if (v[1] >= this.nextMessageId) this.nextMessageId = v[1] + 1;
        return true;
      }
      case Kind.end:
        if (typeof v[1] !== 'string') return false;
        sessions.delete(v[1]);
        return true;
      case Kind.incoming: {
        const s = session(v[1]);
        if (!s || typeof v[2] !== 'number') return false;
        if (v[3] === 1) s.incoming.add(v[2]);
        else s.incoming.delete(v[2]);
        return true;
      }
      default:
        return false;
    }
  }

  /** @internal */
  canCompact(): boolean {
    return this.sessions !== undefined;
  }

  /** @internal One buffer per session, each taken whole in the turn it is yielded. */
  *snapshotRecords(): Iterable<Buffer> {
    const written = new Set<number>();
    for (const session of this.sessions!) {
      if (session.store === this && !session.ended) yield this.sessionRecords(session, written);
    }
  }

  /** @internal */
  compactionStarted(): void {
    this.lastMessage = undefined;
  }

  private finishLoad(): void {
    const messages = this.loadingMessages!;
    for (const [clientId, s] of this.loading!) {
      const meta = s.meta;
      if (!meta) continue; // deliveries of a session whose meta record was never durable
      const deliveries: LoadedSession['deliveries'] = [];
      for (const [seq, e] of [...s.entries].sort((a, b) => a[0] - b[0])) {
        const message = messages.get(e[3] as number);
        if (!message) {
          this.lostOnLoad++;
          continue;
        }
        const qos = e[4] === 2 ? 2 : 1;
        const delivery: Delivery = {
          message, qos, retain: e[5] === true, subscriptionIds: Array.isArray(e[6]) ? (e[6] as number[]) : undefined, seq, msgId: e[3] as number,
        };
        const packetId = typeof e[7] === 'number' ? e[7] : 0;
        deliveries.push({ seq, delivery, packetId, state: e[8] === EntryState.pubrel ? 'pubrel' : 'publish' });
      }
      this.loaded.push(loadedSession(clientId, meta, deliveries, [...s.incoming]));
    }
    this.loading = undefined;
    this.loadingMessages = undefined;
  }
}

/** A session as stored (its meta record, deliveries in seq order, incoming QoS 2 ids held). */
export function loadedSession(clientId: string, meta: StoredMeta, deliveries: LoadedSession['deliveries'], awaitingRelease: number[]): LoadedSession {
  const w = meta.will;
  return {
    clientId,
    version: meta.v,
    expirySec: meta.exp,
    subscriptions: meta.subs.map(([filter, qos, noLocal, retainAsPublished, retainHandling, id]) => [filter, {
      qos, noLocal, retainAsPublished, retainHandling, subscriptionId: id ?? undefined,
    }]),
    connected: meta.on,
    disconnectedAtMs: meta.off,
    will: w && {
      topic: w[0], payload: Buffer.from(w[1]), qos: w[2], retain: w[3], properties: w[4] ?? undefined,
      expiryIntervalSec: w[5] ?? undefined, delaySec: w[6],
    },
    deliveries,
    awaitingRelease,
  };
}

export function metaOf(session: PersistedSession): StoredMeta {
  const subs: StoredMeta['subs'] = [];
  const add = (filter: string, o: MqttSubscriptionOptions): void => {
    subs.push([filter, o.qos, o.noLocal === true, o.retainAsPublished === true, o.retainHandling, o.subscriptionId ?? null]);
  };
  for (const s of session.subscriptions.values()) add(s.filter, s.options);
  for (const [filter, o] of session.sharedSubscriptions) add(filter, o);
  const will = session.durableWill();
  const meta: StoredMeta = { v: session.version, exp: session.expirySec, subs, on: session.link !== undefined, off: session.disconnectedAtMs };
  if (will) {
    meta.will = [will.topic, will.payload, will.qos, will.retain, will.properties ?? null, will.expiryIntervalSec ?? null, will.delaySec];
  }
  return meta;
}

function messageRecord(msgId: number, m: Message): Buffer {
  return frameRecord(recordPackr.pack([Kind.message, msgId, m.topic, m.payload, m.qos, m.retain, m.properties ?? null]));
}

function entryBody(clientId: string, d: Delivery, packetId: number, state: InflightEntry['state'] | 'queued'): unknown[] {
  const s = state === 'queued' ? EntryState.queued : state === 'pubrel' ? EntryState.pubrel : EntryState.publish;
  return [Kind.entry, clientId, d.seq, d.msgId, d.qos, d.retain, d.subscriptionIds ?? null, packetId, s];
}
