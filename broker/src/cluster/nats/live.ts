/**
 * The NATS bus's live-publish room (design note: cluster/nats.ts): a publish resolves once the
 * server has the message (a coalesced PING/PONG after it), not when it is merely queued in this
 * process; a retained publish first waits for the retained room's store.
 *
 * Live messages are encoded at once (their node sequence fixes their order) into shared chunks,
 * queued, and handed to the client together at setImmediate, so one socket write and one promise
 * serve every message of an event-loop turn. Per-topic order from this node: a topic's publishes
 * chain behind a pending retained store (a non-retained publish waits for the retained one before
 * it), while different topics and successive stores are pipelined. Cost per QoS 0 message: one
 * envelope view, one subject cache lookup, the client's PUB line; per turn: one write, one PING,
 * one promise.
 */
import { BusUnavailableError, type BusMessage } from '../../core/bus.js';
import { EnvelopeWriter } from '../nats-envelope.js';
import { topicToSubject } from '../subject.js';
import type { NatsLink } from './link.js';
import { remembered } from './options.js';

export class NatsLive {
  /** Per topic: the tail of its pending publishes (order behind a retained store). Never rejects. */
  private readonly tails = new Map<string, Promise<void>>();
  /** Live subject per recent topic (bounded, oldest first out). */
  private readonly liveSubjects = new Map<string, string>();
  private readonly envelopes: EnvelopeWriter;
  private nodeSeq = 0;
  /** Live messages handed to the NATS client at the next drain (setImmediate), in publish order. */
  private outSubjects: string[] = [];
  private outData: Uint8Array[] = [];
  /** What every publish queued since the last drain resolves with (shared: no promise per message). */
  private outBatch: { promise: Promise<number>; resolve: (seq: number) => void; reject: (err: unknown) => void } | undefined;

  /** @param storeRetained the retained room's store: resolves with the value's stream seq */
  constructor(
    private readonly link: NatsLink,
    private readonly storeRetained: (m: BusMessage) => Promise<number>,
  ) {
    this.envelopes = new EnvelopeWriter(link.nodeId);
  }

  /**
   * Not async, and no promise or closure per message on the common path (not retained, no
   * retained store pending on the topic): the message is encoded at once (its node sequence
   * fixes its place), queued, and every publish until the next drain shares one promise.
   */
  publish(message: BusMessage): Promise<number> {
    try {
      if (this.link.state === 'down') throw new BusUnavailableError('bus: NATS is unreachable');
      this.link.requireConnection();
      const subject = remembered(this.liveSubjects, message.topic, this.link.names.live, topicToSubject);
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

  /**
   * Encodes and queues a live message; resolves (with 0) once the server has it, like every
   * message queued in the same turn. The NATS client writes its buffer to the socket in a
   * microtask after its first queued line, which under uWebSockets.js (microtasks run after each
   * callback) is one socket write per incoming message: queueing until setImmediate instead
   * lets one write carry every message that arrived in the same event-loop turn.
   */
  private sendLive(subject: string, m: BusMessage, streamSeq: number): Promise<number> {
    const data = this.envelopes.encode(m.retain, m.qos, this.link.run, ++this.nodeSeq, streamSeq, m.properties, m.payload);
    const maxPayload = this.link.nc?.info?.max_payload;
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
  readonly drainOut = (): void => {
    const batch = this.outBatch;
    if (batch === undefined) return;
    const subjects = this.outSubjects;
    const data = this.outData;
    this.outBatch = undefined;
    this.outSubjects = [];
    this.outData = [];
    const link = this.link;
    const nc = link.nc;
    if (link.state === 'down' || !nc || nc.isClosed()) {
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
    link.counters.published += subjects.length;
    // "accepted by the engine", not merely buffered in this process. The PONG is lost only with the
    // connection (DISCONNECT, CONNECTION_CLOSED): an outage, so acknowledged publishes wait and
    // are replayed (the outage policy) instead of being refused as if the bus had rejected them.
    link.flush().then(
      () => batch.resolve(0),
      (err: unknown) => batch.reject(new BusUnavailableError(`bus: the connection dropped before NATS confirmed the message: ${(err as Error).message}`)),
    );
  };

  /** Waits for every chained publish, then hands what is queued to the client (before a drain). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.tails.values()]);
    this.drainOut();
  }
}
