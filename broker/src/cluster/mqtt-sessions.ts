/**
 * Persistent MQTT sessions kept by the cluster (cluster/DESIGN.md "Persistent MQTT sessions in
 * JetStream"): the MQTT server's `SessionStore` (protocol/mqtt/persist.ts) over the bus's
 * `SessionLog` (core/bus.ts; NATS: cluster/nats/sessions.ts). Used instead of the local session
 * log when the bus offers one, so a device reconnecting to any node finds its session.
 *
 * One log per client id, records as MessagePack arrays; replay is in order, each record changes
 * the state the earlier ones built:
 *   [0]                                              a snapshot starts: forget what came before
 *   [1, meta]                                        session state (persist.ts StoredMeta)
 *   [2, seq, qos, retain, subIds, packetId, state, message | null]
 *                                                    a delivery queued (packetId 0) or in flight; its
 *                                                    message [topic, payload, qos, retain, properties]
 *                                                    is written the first time only (null after)
 *   [3, seq]                                         that delivery is done or dropped
 *   [5]                                              the session ended: forget everything before
 *   [6, packetId, held]                              incoming QoS 2 id awaiting PUBREL (1) or released (0)
 *
 * Invariants
 * - At most one node holds a client id (`SessionLog.hold`); another node claims it before it
 *   reads the log, and the holder answers only once its last writes are stored, so the reader
 *   sees every change the holder made. A persistent session's holder is decided by its owner
 *   record (`SessionLog.take`, compare-and-set): of two nodes taking the same state at once one
 *   wins; the other claims again, from the winner (the later connection takes over, as on one node).
 * - Claims of one client id on this node run one after another (a device's and an adoption's).
 * - A log never grows without bound: past 64 records plus twice its live deliveries since its
 *   last snapshot, the session is written whole after a [0] and what came before is truncated.
 *   An end truncates everything before it.
 * - Writes never reject: a failed one is logged and counted (`failed`), like the local log's.
 * Cost per stored delivery: one MessagePack encode and one engine round trip (JetStream publish).
 */
import { createMessage, type Message, type MessageProperties } from '../core/message.js';
import type { SessionLog } from '../core/bus.js';
import type { Logger } from '../observe/log.js';
import type { Metrics } from '../observe/metrics.js';
import { loadedSession, metaOf, type LoadedSession, type SessionStore, type StoredMeta } from '../protocol/mqtt/persist.js';
import type { Delivery, InflightEntry, PersistedSession } from '../protocol/mqtt/types.js';
import { recordPackr } from '../store/record.js';

const Kind = { snapshot: 0, session: 1, entry: 2, drop: 3, end: 5, incoming: 6 } as const;
const EntryState = { queued: 0, publish: 1, pubrel: 2 } as const;

type StoredMessage = [string, Uint8Array, 0 | 1 | 2, boolean, MessageProperties | null];

export class ClusterSessionStore implements SessionStore {
  writes = 0;
  /** Writes the engine did not take (logged). */
  failed = 0;
  private readonly pending = new Set<Promise<unknown>>();
  /** Resolves once every record written so far is stored (or failed); later ones resolve after earlier ones. */
  private tail: Promise<void> = Promise.resolve();
  /** Records written per client id since its last snapshot (compaction). */
  private readonly sinceSnapshot = new Map<string, number>();
  /** Claims in progress per client id (the tail of its chain). */
  private readonly claiming = new Map<string, Promise<unknown>>();
  /** Stored sessions a clean start is ending, per client id: the next claim of it waits (see `claim`). */
  private readonly discarding = new Map<string, Promise<void>>();
  /** Client ids this node holds (`hold` until `unhold`). */
  private readonly holding = new Set<string>();
  /** Client ids whose stored session ended here while held: their owner record goes with the hold. */
  private readonly ended = new Set<string>();
  /** Takes lost to another node taking the same session at once (each claimed again). */
  takesLost = 0;
  /** Sessions of gone nodes adopted here, and adoptions that failed (logged; another survivor retries). */
  adopted = 0;
  adoptionsFailed = 0;

  constructor(private readonly log: SessionLog, private readonly logger: Logger) {}

  get pendingWrites(): number {
    return this.pending.size;
  }

  /** In write order: what waits for an earlier write runs before what waits for a later one (QoS 2 write-ahead keeps the queue's order). */
  synced(): Promise<void> {
    return this.tail;
  }

  /** Appends one record; the promise resolves with its position, or with -1 when the write failed (logged). */
  private write(clientId: string, record: unknown[]): Promise<number> {
    this.writes++;
    this.sinceSnapshot.set(clientId, (this.sinceSnapshot.get(clientId) ?? 0) + 1);
    const p = this.log.append(clientId, recordPackr.pack(record)).then(
      (position) => {
        this.pending.delete(p);
        return position;
      },
      (err: unknown) => {
        this.pending.delete(p);
        this.failed++;
        this.logger.error({ err, clientId }, 'mqtt session write to the cluster failed');
        return -1;
      },
    );
    this.pending.add(p);
    this.tail = Promise.all([this.tail, p]).then(() => undefined);
    return p;
  }

  saveMeta(session: PersistedSession): Promise<void> {
    return this.write(session.clientId, [Kind.session, metaOf(session)]).then(() => undefined);
  }

  /** Writes the session whole after a snapshot mark, then truncates what came before the mark. */
  saveAll(session: PersistedSession): Promise<void> {
    const id = session.clientId;
    const mark = this.write(id, [Kind.snapshot]);
    this.sinceSnapshot.set(id, 1);
    const last = this.write(id, [Kind.session, metaOf(session)]);
    for (const packetId of session.awaitingRelease) void this.write(id, [Kind.incoming, packetId, 1]);
    for (const [packetId, entry] of session.inflight) void this.write(id, entryRecord(entry, packetId, entry.state, true));
    session.forEachQueued((d) => void this.write(id, entryRecord(d, 0, 'queued', true)));
    void mark.then((position) => {
      if (position > 0) this.truncate(id, position);
    });
    return last.then(() => undefined);
  }

  end(clientId: string): void {
    this.ended.add(clientId);
    void this.endRecord(clientId);
  }

  /** Writes the end record and truncates what came before it; resolves once written (or failed). */
  private endRecord(clientId: string): Promise<void> {
    const written = this.write(clientId, [Kind.end]).then((position) => {
      if (position > 0) this.truncate(clientId, position);
    });
    this.sinceSnapshot.delete(clientId); // nothing before the end counts
    return written;
  }

  private truncate(clientId: string, position: number): void {
    this.log.truncate(clientId, position).catch((err: unknown) => this.logger.warn({ err, clientId }, 'mqtt session: truncating its log failed (replay reads more)'));
  }

  saveDelivery(session: PersistedSession, d: Delivery, packetId: number, state: InflightEntry['state'] | 'queued'): void {
    const first = d.msgId === undefined;
    d.msgId = 0; // its message is in this session's log from now on
    void this.write(session.clientId, entryRecord(d, packetId, state, first));
    this.maybeCompact(session);
  }

  dropDelivery(session: PersistedSession, d: Delivery): void {
    void this.write(session.clientId, [Kind.drop, d.seq]);
    this.maybeCompact(session);
  }

  saveIncoming(session: PersistedSession, packetId: number, held: boolean): Promise<void> {
    return this.write(session.clientId, [Kind.incoming, packetId, held ? 1 : 0]).then(() => undefined);
  }

  private maybeCompact(session: PersistedSession): void {
    const n = this.sinceSnapshot.get(session.clientId) ?? 0;
    if (n < 64) return;
    let live = session.inflight.size;
    session.forEachQueued(() => live++);
    if (n > 64 + 2 * live) void this.saveAll(session);
  }

  claim(clientId: string, persistent = true, cleanStart = false): Promise<LoadedSession | undefined> {
    return this.serialized(clientId, async () => {
      if (this.holding.has(clientId)) return undefined; // taken here meanwhile (an adoption): the caller finds it
      if (persistent && this.log.take) return (await this.take(clientId, undefined)).loaded;
      // A session that ends with its connection records no owner: the holder lets go, the log is read.
      await this.log.claim(clientId);
      if (!cleanStart) return this.readSession(clientId);
      // A clean start that keeps nothing needs nothing read (a core request, not the engine: it
      // connects while JetStream elects a leader). What is stored is ended after; the next claim
      // of this client id, here (serialized) or elsewhere (the release waits for `synced`), after that.
      const discard = this.readSession(clientId).then(
        (stored) => (stored === undefined ? undefined : this.endRecord(clientId)),
        (err: unknown) => this.logger.warn({ err, clientId }, 'mqtt session: reading the stored session a clean start discards failed; it stays stored'),
      );
      this.tail = Promise.all([this.tail, discard]).then(() => undefined);
      this.discarding.set(clientId, discard);
      void discard.then(() => {
        if (this.discarding.get(clientId) === discard) this.discarding.delete(clientId);
      });
      return undefined;
    });
  }

  /**
   * Takes the session of `clientId` from the gone node `from` (cluster/DESIGN.md "Orphaned
   * sessions"): undefined when another node has it by now, or when it has ended (then its owner
   * record goes). The caller restores it and holds it.
   */
  adopt(clientId: string, from: string): Promise<LoadedSession | undefined> {
    return this.serialized(clientId, async () => {
      if (this.holding.has(clientId)) return undefined;
      let taken: boolean;
      let loaded: LoadedSession | undefined;
      try {
        ({ taken, loaded } = await this.take(clientId, from));
      } catch (err) {
        this.adoptionsFailed++;
        throw err;
      }
      if (taken && loaded === undefined) {
        this.ended.add(clientId);
        this.unhold(clientId);
      }
      if (loaded !== undefined) this.adopted++;
      return loaded;
    });
  }

  private serialized<T>(clientId: string, fn: () => Promise<T>): Promise<T> {
    const before = this.claiming.get(clientId) ?? Promise.resolve();
    const run = async (): Promise<T> => {
      await this.discarding.get(clientId); // a clean start's discard, still being written
      return fn();
    };
    const result = before.then(run, run);
    const tail = result.then(() => undefined, () => undefined);
    this.claiming.set(clientId, tail);
    void tail.then(() => {
      if (this.claiming.get(clientId) === tail) this.claiming.delete(clientId);
    });
    return result;
  }

  /** Claim, then compare-and-set the owner record, until this node wins or finds the session elsewhere (`from` given and the record moved on). */
  private async take(clientId: string, from: string | undefined): Promise<{ taken: boolean; loaded: LoadedSession | undefined }> {
    const log = this.log;
    for (let attempt = 0; attempt < MAX_TAKES; attempt++) {
      const { owner, revision } = await log.owner!(clientId);
      if (from !== undefined && owner !== from) return { taken: false, loaded: undefined };
      await log.claim(clientId); // whoever holds it now lets it go (none: answered at once)
      if (!(await log.take!(clientId, revision))) {
        this.takesLost++;
        if (from !== undefined) return { taken: false, loaded: undefined }; // a device (or another survivor) was first
        continue;
      }
      try {
        return { taken: true, loaded: await this.readSession(clientId) };
      } catch (err) {
        log.unhold(clientId);
        log.disown?.(clientId, false);
        throw err;
      }
    }
    throw new Error(`client id taken by other nodes ${MAX_TAKES} times in a row while claiming it`);
  }

  private async readSession(clientId: string): Promise<LoadedSession | undefined> {
    const records = await this.log.read(clientId);
    this.sinceSnapshot.set(clientId, records.length);
    return decodeSession(clientId, records);
  }

  hold(clientId: string, release: () => Promise<void>): void {
    this.holding.add(clientId);
    this.ended.delete(clientId); // a clean start ended the stored session; the new one is held
    this.log.hold(clientId, release);
  }

  /** This node lets the client id go: released to another node, or its session ended (then its owner record goes too). */
  unhold(clientId: string): void {
    this.holding.delete(clientId);
    this.log.unhold(clientId);
    this.log.disown?.(clientId, this.ended.delete(clientId));
  }

  onOrphans(listener: (from: string, clientIds: string[], lastSeenMs: number) => Promise<string[]>): void {
    this.log.onOrphans?.(listener);
  }
}

/** A claim that keeps losing the owner record to other nodes gives up (the client retries). */
const MAX_TAKES = 4;

function entryRecord(d: Delivery, packetId: number, state: InflightEntry['state'] | 'queued', withMessage: boolean): unknown[] {
  const s = state === 'queued' ? EntryState.queued : state === 'pubrel' ? EntryState.pubrel : EntryState.publish;
  const m = d.message;
  const message: StoredMessage | null = withMessage ? [m.topic, m.payload, m.qos, m.retain, m.properties ?? null] : null;
  return [Kind.entry, d.seq, d.qos, d.retain, d.subscriptionIds ?? null, packetId, s, message];
}

/** Replays a session's records; undefined when it has none, ended, or its state never got stored. */
export function decodeSession(clientId: string, records: Uint8Array[]): LoadedSession | undefined {
  let meta: StoredMeta | undefined;
  const entries = new Map<number, { delivery: Delivery; packetId: number; state: 'publish' | 'pubrel' }>();
  const incoming = new Set<number>();
  for (const bytes of records) {
    let v: unknown;
    try {
      v = recordPackr.unpack(bytes);
    } catch {
      continue; // not ours
    }
    if (!Array.isArray(v)) continue;
    switch (v[0]) {
      case Kind.snapshot:
      case Kind.end:
        meta = undefined;
        entries.clear();
        incoming.clear();
        break;
      case Kind.session:
        if (v[1] !== null && typeof v[1] === 'object') meta = v[1] as StoredMeta;
        break;
      case Kind.entry: {
        const seq = v[1] as number;
        const stored = v[7] as StoredMessage | null;
        const message = stored ? decodeMessage(stored) : entries.get(seq)?.delivery.message;
        if (message === undefined) break; // its first record was truncated away: nothing to deliver
        const delivery: Delivery = {
          message, qos: v[2] === 2 ? 2 : 1, retain: v[3] === true, subscriptionIds: Array.isArray(v[4]) ? (v[4] as number[]) : undefined, seq, msgId: 0,
        };
        entries.set(seq, { delivery, packetId: typeof v[5] === 'number' ? v[5] : 0, state: v[6] === EntryState.pubrel ? 'pubrel' : 'publish' });
        break;
      }
      case Kind.drop:
        entries.delete(v[1] as number);
        break;
      case Kind.incoming:
        if (v[2] === 1) incoming.add(v[1] as number);
        else incoming.delete(v[1] as number);
        break;
      default:
        break;
    }
  }
  if (meta === undefined) return undefined;
  const deliveries = [...entries].sort((a, b) => a[0] - b[0]).map(([seq, e]) => ({ seq, ...e }));
  return loadedSession(clientId, meta, deliveries, [...incoming]);
}

function decodeMessage([topic, payload, qos, retain, properties]: StoredMessage): Message {
  const props = properties ?? undefined;
  if (props?.correlationData instanceof Uint8Array) props.correlationData = Buffer.from(props.correlationData);
  return createMessage(topic, Buffer.from(payload), retain === true, undefined, qos === 1 || qos === 2 ? qos : 0, props);
}

export function registerClusterSessionMetrics(m: Metrics, store: ClusterSessionStore): void {
  m.register('topicast_mqtt_cluster_session_writes_total', 'counter', 'MQTT session records written to the cluster (JetStream)', () => store.writes);
  m.register('topicast_mqtt_cluster_session_write_errors_total', 'counter', 'MQTT session records the cluster did not take (logged)', () => store.failed);
  m.register('topicast_mqtt_cluster_session_writes_pending', 'gauge', 'MQTT session records sent to the cluster and not yet stored', () => store.pendingWrites);
  m.register('topicast_mqtt_cluster_session_takes_lost_total', 'counter', 'Persistent MQTT sessions another node took at the same moment as this one (claimed again from it)', () => store.takesLost);
  m.register('topicast_mqtt_cluster_sessions_adopted_total', 'counter', 'Offline persistent MQTT sessions of gone nodes adopted by this node', () => store.adopted);
  m.register('topicast_mqtt_cluster_session_adoptions_failed_total', 'counter', 'Adoptions of a gone node\'s sessions that failed here (logged; another survivor tries again)', () => store.adoptionsFailed);
}
