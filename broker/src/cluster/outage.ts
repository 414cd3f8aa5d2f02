/**
 * The way out to the bus, and the outage policy (cluster/DESIGN.md "Outage policy").
 *
 * While the bus is up, each local publish goes straight to `Bus.publish`. While it is down:
 * - unacknowledged messages (native id 0, MQTT QoS 0, wills, the broker's own) that are not
 *   retained are dropped for other nodes and counted: local subscribers already have them;
 * - acknowledged publishes (native id > 0, MQTT QoS 1/2, HTTP) wait in a FIFO buffer bounded by
 *   messages and bytes; their ack waits until the bus took them; beyond the bound they are
 *   refused at once with `BusRefusedError` (a retry hint) and the publisher retries later, and
 *   one that waited `maxWaitMs` is refused the same way (and leaves the buffer) rather than hang;
 * - retained writes are conflated per topic (only the latest waits; the earlier one's ack
 *   waits for it) and replayed on reconnect, so other nodes' mirrors converge. They also wait
 *   while the bus is `degraded` (connected, retained store unavailable, e.g. JetStream electing
 *   a leader after a server loss), while live messages cross.
 * On `up`, the buffer is replayed in order, synchronously, before any later publish reaches the
 * bus, so order per topic holds across the outage. A message held while the bus would take it
 * (it failed as unavailable while the state stayed `up`, e.g. a JetStream 503 while a group
 * settles, or the `up` event that replays the buffer went by before it was held) has no state
 * change coming to replay it: the buffer is retried after HELD_RETRY_MS instead, until it goes
 * or its wait bound refuses it.
 *
 * Invariants: every buffered acknowledged publish is answered exactly once (accepted on replay,
 * refused on overflow, or failed on close); the buffer never exceeds its bounds.
 * Cost: a map entry per retained topic waiting, an array slot per buffered message; nothing
 * while the bus is up beyond one promise per acknowledged or retained publish, and one per
 * batch of unacknowledged live ones when the bus answers a batch with one promise.
 */
import { BusRefusedError, BusUnavailableError, type Bus, type BusMessage } from '../core/bus.js';

/**
 * Retry of a buffer held while the bus says it would take it: a JetStream hiccup (a 503 while a
 * stream group elects a leader) passes within a few hundred ms, and a failing retry costs one request.
 */
const HELD_RETRY_MS = 250;

export { BusRefusedError } from '../core/bus.js';

export interface OutageLimits {
  maxMessages: number;
  maxBytes: number;
  /** Longest an acknowledged publish waits in the buffer before it is refused. */
  maxWaitMs: number;
  retryAfterSec: number;
}

export interface OutboundStats {
  /** Messages the bus accepted from this node. */
  published: number;
  /** Cross-node messages dropped while the bus was down (unacknowledged, not retained). */
  dropped: number;
  /** Acknowledged publishes and retained writes put in the outage buffer. */
  buffered: number;
  /** Acknowledged publishes refused because the buffer was full. */
  refused: number;
  /** Unacknowledged retained writes dropped because the buffer was full. */
  retainedDropped: number;
  /** Retained writes replaced in the buffer by a newer one on the same topic. */
  conflated: number;
  /** Buffered messages sent after the bus came back. */
  replayed: number;
  /** Publishes the bus rejected for another reason than an outage (logged). */
  errors: number;
}

interface Waiting {
  message: BusMessage;
  /** Acks waiting for this message (several once retained writes are conflated into it), with when each began. */
  waiters: { resolve: () => void; reject: (err: Error) => void; sinceMs: number }[];
  /** Replaced by a newer retained write of the same topic: skipped on replay. */
  superseded: boolean;
}

/** Sends local publishes to the bus and applies the outage policy. */
export class BusOutbound {
  readonly stats: OutboundStats = { published: 0, dropped: 0, buffered: 0, refused: 0, retainedDropped: 0, conflated: 0, replayed: 0, errors: 0 };
  private queue: Waiting[] = [];
  private readonly retainedWaiting = new Map<string, Waiting>();
  private count = 0;
  private bytes = 0;
  /** Buffered messages that are not retained writes (they may cross while the bus is degraded). */
  private liveHeld = 0;
  /** Refuses acknowledged publishes that waited `maxWaitMs`; runs only while something waits. */
  private sweeper: NodeJS.Timeout | undefined;
  /** Replays a buffer held while the bus would take it (HELD_RETRY_MS). */
  private retryTimer: NodeJS.Timeout | undefined;

  /**
   * @param onRetainedSeq told the seq the bus gave each of this node's retained writes (the mirror's merge)
   * @param onError told of a publish the bus rejected for another reason than an outage (the message, when kept)
   */
  constructor(
    private readonly bus: Bus,
    private readonly limits: OutageLimits,
    private readonly onRetainedSeq: (message: BusMessage, seq: number) => void,
    private readonly onError: (err: unknown, message: BusMessage | undefined) => void,
  ) {}

  /**
   * The promise of the last unacknowledged live publish, and how many such publishes returned
   * that same promise: a bus may answer every message it sends in one batch with one promise
   * (the NATS bus does), and then the batch costs one reaction, not one per message.
   */
  private liveAccepted: Promise<number> | undefined;
  private liveCount: { n: number } = { n: 0 };

  /** Unacknowledged live messages the bus did not take: dropped if it went down, else an error. */
  private lost(err: unknown, n: number): void {
    if (err instanceof BusUnavailableError) {
      this.stats.dropped += n;
      return;
    }
    this.stats.errors += n;
    this.onError(err, undefined);
  }

  /** Messages waiting in the buffer. */
  get bufferedMessages(): number {
    return this.count;
  }

  /** Payload bytes waiting in the buffer. */
  get bufferedBytes(): number {
    return this.bytes;
  }

  /**
   * Sends `message` to other nodes. For an acknowledged publish, returns the promise its ack
   * waits for (rejected with BusRefusedError when refused); otherwise undefined.
   */
  send(message: BusMessage, acknowledged: boolean): Promise<void> | undefined {
    const state = this.bus.state;
    // Degraded: live messages cross, the retained store does not: retained writes wait as in an outage.
    if (state === 'down' || (state === 'degraded' && message.retain)) return this.hold(message, acknowledged);
    // Back before the state event reached us: the buffer goes first (while degraded only its live
    // messages can; without any, the retained writes stay put instead of being retried per publish).
    if (this.queue.length > 0 && (state === 'up' || this.liveHeld > 0)) this.replay();
    if (!acknowledged && !message.retain) {
      // The common case (QoS 0 live data): no closure per message, one per batch the bus answers together.
      const accepted = this.bus.publish(message);
      if (accepted === this.liveAccepted) {
        this.liveCount.n++;
        return undefined;
      }
      const count = { n: 1 };
      this.liveAccepted = accepted;
      this.liveCount = count;
      accepted.then(
        () => {
          this.stats.published += count.n;
        },
        (err: unknown) => this.lost(err, count.n),
      );
      return undefined;
    }
    const sent = this.bus.publish(message).then(
      (seq) => {
        this.stats.published++;
        if (message.retain) this.onRetainedSeq(message, seq);
      },
      (err: unknown) => {
        // Went down while in flight: the outage policy applies as if it had been down already.
        if (err instanceof BusUnavailableError) return this.hold(message, acknowledged);
        this.stats.errors++;
        this.onError(err, message);
        if (acknowledged) this.stats.refused++;
        if (acknowledged) throw new BusRefusedError(`the cluster bus refused the message: ${(err as Error).message}`, this.limits.retryAfterSec);
        return undefined;
      },
    );
    if (acknowledged) return sent;
    sent.catch(() => {}); // unacknowledged: counted and logged above, nobody to tell
    return undefined;
  }

  /** The bus is back: sends everything buffered, in order, before any later publish. */
  replay(): void {
    const keepRetained = this.bus.state !== 'up';
    for (const w of this.take()) {
      if (w.superseded) continue;
      if (keepRetained && w.message.retain) {
        this.requeue(w);
        continue;
      }
      this.stats.replayed++;
      const sent = this.send(w.message, true) ?? Promise.resolve();
      sent.then(
        () => {
          for (const waiter of w.waiters) waiter.resolve();
        },
        (err: Error) => {
          for (const waiter of w.waiters) waiter.reject(err);
        },
      );
    }
  }

  /** Answers every waiting publish with a refusal (the node is shutting down). */
  close(): void {
    const err = new BusRefusedError('the node is shutting down before the cluster bus came back', this.limits.retryAfterSec);
    for (const w of this.take()) for (const waiter of w.waiters) waiter.reject(err);
  }

  /** Empties the buffer and returns what it held, in order. */
  private take(): Waiting[] {
    clearInterval(this.sweeper);
    this.sweeper = undefined;
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const queue = this.queue;
    this.queue = [];
    this.retainedWaiting.clear();
    this.count = 0;
    this.bytes = 0;
    this.liveHeld = 0;
    return queue;
  }

  /** Puts a retained write taken for replay back in the buffer (the retained store is still unavailable). */
  private requeue(w: Waiting): void {
    this.queue.push(w);
    this.retainedWaiting.set(w.message.topic, w);
    this.count++;
    this.bytes += w.message.payload.length;
    if (w.waiters.length > 0) this.armSweeper();
  }

  /** No state change will replay what was just held (the bus would take it): retry the buffer soon. */
  private retryHeld(): void {
    if (this.retryTimer !== undefined) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      const state = this.bus.state;
      if (this.queue.length > 0 && (state === 'up' || (state === 'degraded' && this.liveHeld > 0))) this.replay();
    }, HELD_RETRY_MS);
    this.retryTimer.unref();
  }

  private armSweeper(): void {
    if (this.sweeper !== undefined) return;
    this.sweeper = setInterval(() => this.sweep(), Math.min(1000, Math.max(10, this.limits.maxWaitMs / 4)));
    this.sweeper.unref();
  }

  private hold(message: BusMessage, acknowledged: boolean): Promise<void> | undefined {
    if (!message.retain && !acknowledged) {
      this.stats.dropped++;
      return undefined;
    }
    const size = message.payload.length;
    const previous = message.retain ? this.retainedWaiting.get(message.topic) : undefined;
    const freed = previous ? 1 : 0;
    const freedBytes = previous ? previous.message.payload.length : 0;
    if (this.count - freed + 1 > this.limits.maxMessages || this.bytes - freedBytes + size > this.limits.maxBytes) {
      if (!acknowledged) {
        this.stats.retainedDropped++;
        return undefined;
      }
      this.stats.refused++;
      return Promise.reject(new BusRefusedError(
        `the cluster bus is down and ${this.count} messages (${this.bytes} bytes) already wait for it; retry in ${this.limits.retryAfterSec} s`,
        this.limits.retryAfterSec,
      ));
    }
    const w: Waiting = { message, waiters: [], superseded: false };
    if (previous) {
      // Conflation: only the latest value of a retained topic waits; earlier acks ride on it.
      previous.superseded = true;
      w.waiters = previous.waiters;
      this.count--;
      this.bytes -= freedBytes;
      this.stats.conflated++;
    }
    if (message.retain) this.retainedWaiting.set(message.topic, w);
    else this.liveHeld++;
    this.queue.push(w);
    this.count++;
    this.bytes += size;
    this.stats.buffered++;
    const state = this.bus.state;
    if (state === 'up' || (state === 'degraded' && !message.retain)) this.retryHeld();
    if (!acknowledged) return undefined;
    this.armSweeper();
    return new Promise<void>((resolve, reject) => w.waiters.push({ resolve, reject, sinceMs: Date.now() }));
  }

  /**
   * Refuses every acknowledged publish that waited `maxWaitMs`. A message nobody waits for any
   * more leaves the buffer, except a retained value: it is still replayed so mirrors converge.
   */
  private sweep(): void {
    const deadline = Date.now() - this.limits.maxWaitMs;
    let kept = 0;
    for (const w of this.queue) {
      if (w.superseded) continue;
      const expired = w.waiters.filter((x) => x.sinceMs <= deadline);
      if (expired.length > 0) {
        w.waiters = w.waiters.filter((x) => x.sinceMs > deadline);
        this.stats.refused += expired.length;
        const err = new BusRefusedError(
          `the cluster bus has been down for over ${Math.round(this.limits.maxWaitMs / 1000)} s; retry in ${this.limits.retryAfterSec} s`,
          this.limits.retryAfterSec,
        );
        for (const x of expired) x.reject(err);
        if (w.waiters.length === 0 && !w.message.retain) {
          w.superseded = true; // its publisher was told to retry: not sent as well
          this.liveHeld--;
          this.count--;
          this.bytes -= w.message.payload.length;
          continue;
        }
      }
      this.queue[kept++] = w;
    }
    this.queue.length = kept;
    if (this.queue.length === 0) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  }
}
