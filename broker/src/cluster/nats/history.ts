/**
 * The NATS bus's history room: a history every node shares, in the JetStream stream
 * `<PREFIX>_HISTORY` over `<prefix>.h.>` (design: cluster/DESIGN.md "History in JetStream").
 *
 * - Position = the stream's sequence; epoch = the stream's identity (its creation time), so a
 *   stream deleted and made again is a new epoch and no old position resumes in it.
 * - Publish: the router hands a message on a history topic to `sequence` (core/history.ts
 *   HistorySequencer); it is stored with a JetStream publish (one round trip: the publish is
 *   acknowledged once the stream has it) and delivered to nobody yet.
 * - Delivery: every node, the publishing one included, reads the stream in order with one ordered
 *   consumer and routes each message with its sequence as offset. So on every node history
 *   messages reach subscribers in stream order, and the node's `History` is a mirror of the stream
 *   that resumes and queries read as on a single node. The publishing node routes its own Message
 *   object (found by the envelope's run and node sequence), so MQTT No Local and the retained
 *   store behave as for any local publish; other nodes route a copy with `foreignOrigin` that is
 *   not retained (their retained store takes the value from the retained stream, in its order).
 * - Nothing lost is ever resumed over: a sequence the consumer skips (removed before this node
 *   read it) counts as lost in the mirror (`History.append`); the stream's first sequence is
 *   checked on every resume (`caughtUp`) and every `heartbeatMs`, and what the stream no longer
 *   holds (a purge, its limits) is evicted from the mirror, so a resume from before it answers
 *   `recovered: false`.
 * - The ordered consumer makes itself again after a gap or missed heartbeats; one that still stops
 *   delivering while the stream moves on (its server killed while JetStream re-elects) is made
 *   again by the periodic check after STALL_MS, from the mirror's last offset.
 * - A resume on a node whose mirror lags the stream (another node delivered a later position)
 *   waits in `caughtUp` until the mirror holds what the stream held when asked (bounded).
 * - A store JetStream answers 503 or not at all (a leader election, a member restarting) is tried
 *   again every RETRY_MS until `requestTimeoutMs` has passed, later stores of this node queued
 *   behind it in order; its msgID (run.nodeSeq) lets the stream drop a retry of a message it did
 *   take (duplicate window). Past that, or while NATS is unreachable: an acknowledged publish is
 *   refused with a retry hint (no local delivery: the client retries); any other is delivered on
 *   this node without a position, and every position before the next stored message stops resuming.
 * Cost: one JetStream publish round trip per history message (publish latency), one consumer
 * delivery per history message per node, one stream-info request per resume and per heartbeat.
 */
import { DeliverPolicy, DiscardPolicy, headers, nanos, RetentionPolicy, StorageType, type ConsumerMessages, type JsMsg, type StreamConfig, type StreamInfo } from 'nats';
import { BusUnavailableError, type SharedHistory, type SharedHistoryOptions } from '../../core/bus.js';
import type { HistoryLimits } from '../../core/history.js';
import { createMessage, type Message } from '../../core/message.js';
import { decodeEnvelope, encodeEnvelope } from '../nats-envelope.js';
import { BusRefusedError } from '../../core/bus.js';
import { subjectToTopic, topicToSubject } from '../subject.js';
import { AckedPublisher } from './acked-publish.js';
import type { NatsLink } from './link.js';
import { isJetStreamUnavailable, isNotFound } from './options.js';

/** Pause between tries of a store JetStream could not take (a leader election takes a few hundred ms to seconds). */
const RETRY_MS = 250;

interface PendingStore {
  readonly message: Message;
  readonly acknowledged: boolean;
  readonly nodeSeq: number;
  readonly subject: string;
  readonly data: Uint8Array;
  /** Retried until then (requestTimeoutMs after the publish). */
  readonly deadlineMs: number;
  settle: { resolve(): void; reject(err: unknown): void } | undefined;
}

/** A mirror behind the stream that has not moved for this long gets a new consumer (more than a consumer's own recovery from a missed heartbeat). */
const STALL_MS = 3000;

/** Longest a start-up waits for the mirror to load the stream before the node joins anyway (a resume then waits per `caughtUp`). */
const LOAD_TIMEOUT_MS = 30_000;

/** The stream's identity as an epoch string: its creation time, digits only. */
function epochOf(info: StreamInfo): string {
  return `js${info.created.replace(/[^0-9]/g, '')}`;
}

export class NatsHistory implements SharedHistory {
  private readonly history: SharedHistoryOptions['history'];
  private epoch = '';
  /** This node's messages stored but not yet routed back by the consumer, by envelope node sequence. */
  private readonly pendingOwn = new Map<number, Message>();
  /** Messages whose store failed after they were taken: the router delivers them here without a position. */
  private readonly unplaced = new WeakSet<Message>();
  private nodeSeq = 0;
  /** Stores waiting to be tried again, in node sequence order; while any waits, new ones queue behind. */
  private readonly retrying: PendingStore[] = [];
  /** JetStream publishes waiting for their PubAck. */
  private readonly publisher: AckedPublisher;
  /** A message was delivered without a position: the next stored one counts every offset before it as lost. */
  private lossPending = false;
  private messages: ConsumerMessages | undefined;
  private consumerGen = 0;
  private consumerStarting = false;
  /** When the consumer being started began (a start that never settles is given up after STALL_MS + requestTimeoutMs). */
  private consumerStartedAt = 0;
  /** The mirror's last offset at the last check where it moved (stall detection). */
  private progress = { last: 0, sinceMs: Date.now() };
  private waiters: { target: number; resolve: () => void }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private checking: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly link: NatsLink,
    private readonly options: SharedHistoryOptions,
  ) {
    this.history = options.history;
    this.publisher = new AckedPublisher(link);
  }

  /** Makes or binds the stream, empties the mirror and loads it from the stream (bounded by LOAD_TIMEOUT_MS). */
  async start(): Promise<void> {
    const link = this.link;
    // A fresh NATS cluster answers 503 or nothing while the stream's replicas elect a leader (several
    // nodes may be creating it at once): tried again for a while, as the bus's own set-up does.
    const deadline = Date.now() + 3 * link.o.requestTimeoutMs;
    let info: StreamInfo;
    for (;;) {
      try {
        if (!link.jsm) throw new BusUnavailableError('bus: JetStream is not ready for the history stream');
        info = await this.ensureStream(this.history.limits);
        break;
      } catch (err) {
        if (!(err instanceof BusUnavailableError || isJetStreamUnavailable(err)) || Date.now() > deadline || link.closing) throw err;
        link.log?.warn({ err: (err as Error).message }, 'bus: history stream not ready yet, retrying');
        await new Promise((r) => setTimeout(r, link.o.jetStreamRetryMs));
      }
    }
    this.adopt(info);
    await this.waitFor(info.state.last_seq, LOAD_TIMEOUT_MS);
    link.log?.info({ stream: link.names.historyStream, epoch: this.epoch, messages: this.history.messages, last: this.history.last }, 'bus: history mirror loaded from the stream');
    this.timer = setInterval(() => void this.check(), link.o.heartbeatMs);
    this.timer.unref();
  }

  private streamConfig(limits: HistoryLimits, replicas: number): Partial<StreamConfig> & { name: string } {
    return {
      name: this.link.names.historyStream,
      subjects: [`${this.link.names.history}.>`],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      // The bounds of a single node's history (core/history.ts), applied by the stream itself.
      max_msgs_per_subject: limits.maxMessagesPerTopic,
      max_age: nanos(limits.maxAgeMs),
      max_bytes: limits.maxBytes,
      discard: DiscardPolicy.Old,
      num_replicas: replicas,
      allow_direct: true,
    };
  }

  private async ensureStream(limits: HistoryLimits): Promise<StreamInfo> {
    const link = this.link;
    const jsm = link.jsm!;
    const replicas = link.o.historyReplicas ?? link.replicas;
    const wanted = this.streamConfig(limits, replicas);
    try {
      const info = await jsm.streams.info(wanted.name);
      const c = info.config;
      if (c.max_msgs_per_subject !== wanted.max_msgs_per_subject || c.max_age !== wanted.max_age || c.max_bytes !== wanted.max_bytes) {
        // The limits follow the newest node's settings (every node should have the same ones).
        link.log?.warn({ stream: wanted.name, was: { perTopic: c.max_msgs_per_subject, maxAgeNs: c.max_age, maxBytes: c.max_bytes } }, 'bus: history stream limits differ from this node\'s history limits; updating them');
        return await jsm.streams.update(wanted.name, { ...c, max_msgs_per_subject: wanted.max_msgs_per_subject, max_age: wanted.max_age, max_bytes: wanted.max_bytes });
      }
      return info;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    try {
      const info = await jsm.streams.add(wanted);
      link.log?.info({ stream: wanted.name, replicas }, 'bus: history stream created');
      return info;
    } catch (err) {
      if (/already in use/i.test((err as Error).message)) return await jsm.streams.info(wanted.name);
      throw err;
    }
  }

  /** Takes the stream as the mirror's epoch: empties the mirror and reads the stream from its start. */
  private adopt(info: StreamInfo): void {
    const epoch = epochOf(info);
    if (this.epoch !== '') {
      this.link.counters.historyResets++;
      this.link.log?.warn({ was: this.epoch, now: epoch }, 'bus: the history stream was replaced (new epoch): no earlier position resumes');
    }
    this.epoch = epoch;
    this.history.reset(epoch);
    this.pendingOwn.clear(); // stored in the old stream: gone with it
    this.lossPending = false;
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
    this.startConsumer(1);
  }

  /**
   * Starts a consumer from `seq` without waiting for it: a start JetStream leaves pending (a leader
   * election can keep its request unanswered for good) must not hold up the periodic check, which
   * gives it up after STALL_MS + requestTimeoutMs and starts another (consumerGen).
   */
  private startConsumer(seq: number): void {
    this.consumeFrom(seq).catch((err: unknown) => {
      if (!this.closed) this.link.log?.warn({ seq, err: (err as Error).message }, 'bus: making the history consumer failed; the next check tries again');
    });
  }

  /** Reads the stream from `seq` on, in order, with an ordered consumer (it makes itself again after a gap or a lost server). */
  private async consumeFrom(seq: number): Promise<void> {
    const link = this.link;
    const gen = ++this.consumerGen;
    const old = this.messages;
    this.messages = undefined;
    old?.stop();
    this.consumerStarting = true;
    this.consumerStartedAt = Date.now();
    try {
      const consumer = await link.js!.consumers.get(link.names.historyStream, { filterSubjects: `${link.names.history}.>`, deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: seq });
      if (gen !== this.consumerGen || this.closed) return;
      // Short pulls: a consumer lost with a killed server is noticed (missed heartbeats) and made again within seconds.
      const messages = await consumer.consume({ max_messages: 1000, expires: 5000, callback: (m) => this.onStored(m, gen) });
      if (gen !== this.consumerGen || this.closed) messages.stop();
      else {
        this.messages = messages;
        // Ended for good (e.g. the stream deleted): the next check makes another.
        void messages.closed().then(
          () => this.consumerEnded(messages),
          () => this.consumerEnded(messages),
        );
      }
    } finally {
      if (gen === this.consumerGen) this.consumerStarting = false;
    }
  }

  /** One message of the stream, in order: routed here with its sequence as offset. */
  private onStored(m: JsMsg, gen: number): void {
    if (gen !== this.consumerGen || this.closed) return;
    const link = this.link;
    if (m.seq <= this.history.last) return; // already routed (a consumer made again from an older sequence)
    let env;
    let topic;
    try {
      env = decodeEnvelope(m.data);
      topic = subjectToTopic(m.subject, link.names.history);
    } catch (err) {
      link.counters.malformed++; // not routed: its sequence is a gap the next message reports as lost
      link.log?.warn({ subject: m.subject.slice(0, 128), seq: m.seq, err: (err as Error).message }, 'bus: malformed history message skipped');
      return;
    }
    if (this.lossPending) {
      this.lossPending = false;
      this.history.lost(m.seq - 1);
    }
    let message: Message | undefined;
    if (env.run === link.run) {
      message = this.pendingOwn.get(env.nodeSeq);
      this.pendingOwn.delete(env.nodeSeq);
    }
    message ??= createMessage(topic, env.payload, false, env.run === link.run ? undefined : this.options.foreignOrigin, env.qos, env.properties);
    message.offset = m.seq;
    link.counters.historyRouted++;
    try {
      this.options.route(message);
    } catch (err) {
      link.log?.error({ err: (err as Error).message, topic: topic.slice(0, 128) }, 'bus: routing a history message failed');
    }
    if (this.waiters.length > 0) this.settleWaiters();
  }

  private settleWaiters(): void {
    const last = this.history.last;
    this.waiters = this.waiters.filter((w) => {
      if (w.target > last) return true;
      w.resolve();
      return false;
    });
  }

  /** Resolves once the mirror's last offset reaches `target`, or after `timeoutMs`. */
  private waitFor(target: number, timeoutMs: number): Promise<void> {
    if (this.history.last >= target) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.link.log?.warn({ target, last: this.history.last }, 'bus: the history mirror did not catch up with the stream in time');
        done();
      }, timeoutMs);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.waiters.push({ target, resolve: done });
    });
  }

  sequence(message: Message, acknowledged: boolean): Promise<void> | undefined {
    const link = this.link;
    // Another node's message that reached us live (that node could not store it): delivered here as it came.
    if (message.origin === this.options.foreignOrigin) return this.refuse(message, false, 'not stored by its node');
    if (this.unplaced.has(message) || !link.connected || this.closed) return this.refuse(message, acknowledged, 'NATS unreachable');
    let subject: string;
    try {
      subject = topicToSubject(message.topic, link.names.history);
    } catch (err) {
      // Not a subject (config.ts keeps bus topics within MAX_BUS_TOPIC_BYTES, so not expected): kept out of the stream.
      link.log?.warn({ topic: message.topic.slice(0, 128), err: (err as Error).message }, 'bus: a history message cannot go to the stream');
      return acknowledged ? Promise.reject(err) : this.refuse(message, false, 'not a subject');
    }
    const nodeSeq = ++this.nodeSeq;
    this.pendingOwn.set(nodeSeq, message);
    const data = encodeEnvelope({ retain: message.retain, qos: message.qos, origin: link.nodeId, run: link.run, nodeSeq, streamSeq: 0, properties: message.properties, payload: message.payload });
    const store: PendingStore = { message, acknowledged, nodeSeq, subject, data, deadlineMs: Date.now() + link.o.requestTimeoutMs, settle: undefined };
    // Behind a retry in progress: joins its queue, so this node's order holds.
    if (this.retrying.length > 0) return this.enqueue(store);
    return this.publishOnce(store).then(
      () => this.stored(),
      (err: unknown) => (isJetStreamUnavailable(err) ? this.enqueue(store) : this.failed(store, err)),
    );
  }

  /** One JetStream publish (acked-publish.ts); its msgID makes a retry of a message the stream did take a no-op (duplicate window). */
  private publishOnce(store: PendingStore): Promise<number> {
    const link = this.link;
    if (!link.nc || !link.connected) return Promise.reject(new BusUnavailableError('NATS unreachable'));
    const h = headers();
    h.set('Nats-Msg-Id', `${link.run.toString(36)}.${store.nodeSeq}`);
    return this.publisher.publish(store.subject, store.data, h);
  }

  private stored(): void {
    this.link.counters.historyStored++;
  }

  /** Queues a store to retry (while the stream elects a leader, a member restarts), in node sequence order. */
  private enqueue(store: PendingStore): Promise<void> {
    const done = new Promise<void>((resolve, reject) => (store.settle = { resolve, reject }));
    let i = this.retrying.length;
    while (i > 0 && this.retrying[i - 1]!.nodeSeq > store.nodeSeq) i--;
    this.retrying.splice(i, 0, store);
    if (this.retrying.length === 1) void this.retryLoop();
    return done;
  }

  private async retryLoop(): Promise<void> {
    while (this.retrying.length > 0 && !this.closed) {
      const store = this.retrying[0]!;
      try {
        await this.publishOnce(store);
        this.stored();
        store.settle!.resolve();
      } catch (err) {
        if (isJetStreamUnavailable(err) && Date.now() < store.deadlineMs) {
          await new Promise((r) => setTimeout(r, RETRY_MS));
          continue;
        }
        try {
          this.failed(store, err);
          store.settle!.resolve();
        } catch (refusal) {
          store.settle!.reject(refusal);
        }
      }
      this.retrying.shift();
    }
    for (const store of this.retrying.splice(0)) store.settle!.reject(this.refusal(new Error('closing')));
  }

  /** The stream did not take it: acknowledged publishes are refused (thrown), others delivered here without a position. */
  private failed(store: PendingStore, err: unknown): void {
    this.pendingOwn.delete(store.nodeSeq);
    this.link.markDegraded('storing a history message failed', err);
    if (store.acknowledged) {
      this.link.counters.historyRefused++;
      throw isJetStreamUnavailable(err) ? this.refusal(err) : err;
    }
    this.unplaced.add(store.message);
    this.options.route(store.message); // the router asks again and is told to deliver it without a position
  }

  /** The stream cannot take `message` now (see the note on top). */
  private refuse(message: Message, acknowledged: boolean, why: string): Promise<void> | undefined {
    this.unplaced.delete(message);
    if (acknowledged) {
      this.link.counters.historyRefused++;
      return Promise.reject(this.refusal(new Error(why)));
    }
    this.link.counters.historyUnplaced++;
    this.history.lost(this.history.last);
    this.lossPending = true;
    return undefined;
  }

  private refusal(err: unknown): BusRefusedError {
    return new BusRefusedError(`history stream unavailable (${(err as Error).message}), retry in ${this.options.retryAfterSec} s`, this.options.retryAfterSec);
  }

  caughtUp(): Promise<void> {
    return this.check(true);
  }

  /**
   * Reads the stream's state: a new stream is a new epoch; what it no longer holds leaves the
   * mirror; with `wait`, resolves once the mirror holds everything it held. Never rejects.
   */
  private check(wait = false): Promise<void> {
    if (!wait && this.checking) return this.checking;
    const run = this.doCheck(wait).catch((err: unknown) => {
      if (!this.closed) this.link.log?.warn({ err: (err as Error).message }, 'bus: checking the history stream failed');
    });
    if (!wait) this.checking = run.finally(() => (this.checking = undefined));
    return run;
  }

  private async doCheck(wait: boolean): Promise<void> {
    const link = this.link;
    // Not gated on `jetStreamReady`: the bus may be degraded by another room while this stream answers.
    if (this.closed || !link.jsm || !link.connected) return;
    let info: StreamInfo;
    try {
      info = await link.jsm.streams.info(link.names.historyStream);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      info = await this.ensureStream(this.history.limits); // deleted: made again, a new epoch
    }
    // A start still pending long after a request should have answered (JetStream electing a leader
    // can leave it waiting for good) is given up: a newer start supersedes it (consumerGen).
    const startHung = this.consumerStarting && Date.now() - this.consumerStartedAt > STALL_MS + link.o.requestTimeoutMs;
    if (epochOf(info) !== this.epoch) this.adopt(info);
    else if ((!this.consumerStarting || startHung) && (this.messages === undefined || this.stalled(info.state.last_seq))) {
      // Making the consumer failed before, or it stopped delivering (its server died and making it
      // again failed while JetStream settled): made again from where the mirror is.
      if (this.messages !== undefined) {
        this.link.counters.historyConsumerRestarts++;
        link.log?.warn({ last: this.history.last, streamLast: info.state.last_seq }, 'bus: the history consumer stopped delivering; making it again');
      }
      this.startConsumer(this.history.last + 1);
    }
    const gone = info.state.first_seq - 1;
    if (gone > 0 && this.history.oldestOffset() <= Math.min(gone, this.history.last)) {
      link.counters.historyPurgesSeen++;
      this.history.evictThrough(gone);
    }
    if (gone > this.history.last) this.history.lost(gone); // removed before this node read them
    if (wait) await this.waitFor(info.state.last_seq, link.o.requestTimeoutMs);
  }

  private consumerEnded(messages: ConsumerMessages): void {
    if (this.messages === messages) this.messages = undefined;
  }

  /** Whether the mirror has been behind the stream without moving for STALL_MS (checked every heartbeat). */
  private stalled(streamLast: number): boolean {
    const now = Date.now();
    const last = this.history.last;
    if (streamLast <= last || last !== this.progress.last) {
      this.progress = { last, sinceMs: now };
      return false;
    }
    if (now - this.progress.sinceMs < STALL_MS) return false;
    this.progress = { last, sinceMs: now };
    return true;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.publisher.close();
    this.messages?.stop();
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
  }
}
