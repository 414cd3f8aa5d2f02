/**
 * The router's view of the outside world when Topicast runs as many nodes (issue 8):
 * a `Bus` carries messages, interest and retained values between nodes through an
 * existing engine (NATS, or an upstream MQTT 5 broker), never through a protocol of ours.
 * A node without a bus is the default and sees none of this.
 *
 * Contract (every implementation runs the shared contract suite, test/unit/broker/cluster/bus-contract.ts)
 * - Interest: `subscribe(filter)` / `unsubscribe(filter)` are called once per filter by the
 *   bridge (cluster/bridge.ts), which reference-counts local subscriptions and lingers before
 *   removal. After `subscribe` resolves, every message another node publishes on a matching
 *   topic reaches `events.message` once, even when several held filters match it.
 * - No echo: a node never receives its own publishes through the bus.
 * - Order: messages from one node on one topic arrive in the order that node published them.
 * - Retained: a `publish` with `retain` replaces the topic's retained value on the bus (an empty
 *   payload deletes it). `retained(filter)` resolves with every retained value matching the filter
 *   as of some moment after the call (the "marker"), each with its `seq`. Retained values also
 *   arrive live through `events.message` with their `seq`; for one topic a larger seq is newer, so
 *   a joiner merges snapshot and live messages by seq and never shows an older value after a newer.
 * - Wills: `setWill(key, will)` registers (undefined clears) a will held by this node under a key
 *   unique to the connection. A node that stops without clearing its wills (crash, kill -9,
 *   partition past the engine's timeout) has each of them published exactly once, by one
 *   surviving node, which receives it through `events.orphanWill` and routes it like a publish.
 * - State: `up` (connected, interest and retained in sync), `degraded` (connected, retained or
 *   wills unavailable), `down` (unreachable). Changes are reported through `events.state`.
 *   While down, `publish` and `retained` reject with `BusUnavailableError`; the bridge applies the
 *   outage policy. `subscribe`, `unsubscribe` and `setWill` never reject for an outage: the bus
 *   keeps them and applies them when it is back (their promises may stay pending until then), and
 *   reports `up` again only once the interest it holds is in place on the engine.
 * - Topics and filters given to a bus are valid MQTT names/filters within `MAX_BUS_TOPIC_BYTES` (cluster/subject.ts, enforced by config.ts);
 *   encoding them for the engine (e.g. NATS subjects, cluster/subject.ts) is the bus's job.
 */
import { BrokerError } from './errors.js';
import type { History, HistorySequencer } from './history.js';
import type { Message, MessageProperties } from './message.js';

export type BusState = 'up' | 'degraded' | 'down';

/** A message crossing the bus between nodes. */
export interface BusMessage {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly retain: boolean;
  readonly qos: 0 | 1 | 2;
  readonly properties: MessageProperties | undefined;
  /** Id of the node that published it (dedupe and echo suppression). */
  readonly origin: string;
  /** Retained values: the retained stream's sequence (larger is newer for one topic); 0 otherwise. */
  readonly seq: number;
}

/** One retained value in a snapshot. */
export interface RetainedEntry {
  readonly topic: string;
  readonly payload: Uint8Array;
  readonly properties: MessageProperties | undefined;
  readonly seq: number;
  /** QoS of the retained publish when the engine keeps it (subscribers get min(theirs, this)); 0 when absent. */
  readonly qos?: 0 | 1 | 2;
}

/** A will handed to a surviving node because its owner died. */
export interface OrphanWill {
  /** Node that registered it. */
  readonly owner: string;
  readonly key: string;
  readonly message: BusMessage;
}

export interface BusEvents {
  /** A message from another node matching a held filter. Must not throw. */
  message(message: BusMessage): void;
  /** The bus state changed; `reason` is for the log. */
  state(state: BusState, reason: string): void;
  /** This node won the claim on a dead node's will: route it (locally and to the bus) exactly once. */
  orphanWill(will: OrphanWill): void;
  /** The engine picked this node for one message of the shared-subscription group `share` on `filter` (`subscribeShared`). Must not throw. */
  shared?(message: BusMessage, share: string, filter: string): void;
}

export interface Bus {
  /** 'memory' | 'nats' | 'mqtt': for logs and metrics. */
  readonly kind: string;
  /** This node's id on the bus (unique per running node). */
  readonly nodeId: string;
  readonly state: BusState;
  /** Connects and starts reporting through `events`; rejects when the engine cannot be reached at all. */
  start(events: BusEvents): Promise<void>;
  /** Starts receiving other nodes' messages matching `filter`; resolves once the engine holds the interest. */
  subscribe(filter: string): Promise<void>;
  unsubscribe(filter: string): Promise<void>;
  /**
   * Sends to other nodes; resolves once the engine accepted it (retained: stored) with the seq the
   * engine gave a retained message (0 for others): the publishing node merges its own retained
   * write into its mirror by that seq, since it never sees its own message come back. Rejects while down.
   */
  publish(message: BusMessage): Promise<number>;
  /** Retained values matching `filter` (see the contract above). */
  retained(filter: string): Promise<RetainedEntry[]>;
  /** Registers (or with undefined clears) a will held by this node. */
  setWill(key: string, will: BusMessage | undefined): Promise<void>;
  /** Clears this node's wills it still holds, leaves interest, disconnects. */
  close(): Promise<void>;
  /**
   * Optional (NATS): keeps the history of history topics in the engine, one stream shared by every
   * node, and makes `history` this node's mirror of it (cluster/DESIGN.md "History in JetStream").
   * Resolves once the mirror holds what the stream held at the call (bounded); rejects when the
   * engine cannot keep it (the node then does not start, like a node that cannot join the bus).
   */
  shareHistory?(options: SharedHistoryOptions): Promise<SharedHistory>;
  /**
   * Optional (NATS queue groups): this node holds members of the shared-subscription group `share`
   * on `filter`. Every message published on a matching topic by any node, this one included, is
   * handed to exactly one node holding the group, through `events.shared`. Resolves once the
   * engine holds it; like `subscribe`, never rejects for an outage.
   */
  subscribeShared?(share: string, filter: string): Promise<void>;
  unsubscribeShared?(share: string, filter: string): Promise<void>;
  /**
   * Optional (NATS JetStream): one ordered, durable log of records per key that every node reads,
   * and a cluster-wide claim of a key (cluster/DESIGN.md "Persistent MQTT sessions in JetStream").
   * The MQTT server keeps its persistent sessions there (cluster/mqtt-sessions.ts).
   */
  sessionLog?(): SessionLog;
}

/** A durable record log per key, shared by every node, with a cluster-wide claim of the key. */
export interface SessionLog {
  /** Appends one record to the key's log; resolves with its position once the engine stored it. */
  append(key: string, record: Uint8Array): Promise<number>;
  /** Every record of the key's log, oldest first (empty when it has none). */
  read(key: string): Promise<Uint8Array[]>;
  /** Forgets the key's records before `position` (they are superseded by a later snapshot or end). */
  truncate(key: string, position: number): Promise<void>;
  /**
   * Asks the node that holds `key` (see `hold`) to let it go; resolves once it did (its writes
   * stored) or when no node holds it. Bounded by the engine's request timeout.
   */
  claim(key: string): Promise<void>;
  /** This node holds `key` until `unhold`: a claim from another node runs `release` and waits for it. */
  hold(key: string, release: () => Promise<void>): void;
  unhold(key: string): void;
  /**
   * Optional (NATS): the owner record of `key`, which makes the hold of a key decided
   * cluster-wide. `owner` reads who holds it (`revision` 0: nobody recorded). `take` records this
   * node as its holder only if the record is still at `revision` (compare-and-set), after listening
   * for claims of the key; false when another node took it first. Until `hold` (or `unhold`)
   * follows a successful take, a claim from elsewhere waits for it; before the compare-and-set
   * succeeded, a claim is answered at once (this node holds nothing yet). `disown` forgets that
   * this node holds `key` (released to another node, or ended: then the record goes too, when it
   * is still this node's).
   */
  owner?(key: string): Promise<{ owner: string | undefined; revision: number }>;
  take?(key: string, revision: number): Promise<boolean>;
  disown?(key: string, ended: boolean): void;
  /** This node's name in owner records (one per run). */
  readonly self?: string;
  /**
   * Optional (NATS): `listener` is called with the keys a gone node held (its heartbeat stopped,
   * or it left), on the one survivor designated for that node by the will-claim rule
   * (cluster/will-claim.ts; the others after a further node timeout, in case it is gone too).
   * `lastSeenMs` is when that node was last heard of. The listener resolves with the keys it
   * settled (taken, or found elsewhere by now); the others stay listed for another survivor.
   */
  onOrphans?(listener: (from: string, keys: string[], lastSeenMs: number) => Promise<string[]>): void;
}

export interface SharedHistoryOptions {
  /** This node's history, emptied and refilled as the stream's mirror. */
  history: History;
  /** Routes a message from the stream (its offset set) on this node: `Router.publish`. */
  route(message: Message): void;
  /** `origin` of messages other nodes published (the bridge's BUS_ORIGIN: never sent back). */
  foreignOrigin: object;
  /** Retry hint of an acknowledged publish refused while the stream is unavailable. */
  retryAfterSec: number;
}

/** A history several nodes share (core/history.ts HistorySequencer); the router hands it history messages. */
export interface SharedHistory extends HistorySequencer {
  /**
   * Resolves once the mirror holds every message the stream held when called, after removing what
   * the stream no longer holds (a purge) — bounded, never rejects. A resume waits for it, so a
   * position another node delivered is never ahead of this node's mirror.
   */
  caughtUp(): Promise<void>;
  close(): void;
}

/** Thrown (rejected) by `Bus.publish` while the bus is down. */
export class BusUnavailableError extends BrokerError {
  override readonly name = 'BusUnavailableError';
  constructor(message: string) {
    super('bus-unavailable', message);
  }
}

/**
 * A publish the cluster cannot take now (its outage buffer is full, cluster/outage.ts); the
 * message carries the retry hint for the client. Here, beside the Bus, so that protocols answer
 * it without importing the cluster.
 */
export class BusRefusedError extends BrokerError {
  override readonly name = 'BusRefusedError';
  constructor(message: string, readonly retryAfterSec: number) {
    super('bus-refused', message);
  }
}
