/**
 * The outbox: everything a connection is sent goes through here, in order.
 *
 * - Deliveries are queued and written once per tick, corked, so a burst of
 *   publishes costs one write per subscriber instead of one per message
 *   (STYLE.md #6; the 20× measured in issue 2).
 * - The slow-consumer policy applies when the bytes waiting for this connection
 *   (queued here + buffered in the transport) exceed `maxBufferedBytes`:
 *   `drop` drops the newest deliveries, `conflate` keeps only the latest per topic
 *   until the connection drains, `disconnect` closes it with "slow consumer".
 * - `conflate` is held to the same byte bound: the latest values it keeps total at
 *   most `maxBufferedBytes`. A newer value of a topic replaces the older one (the
 *   superseded value goes first); past the bound the least recently updated topics
 *   are dropped, oldest first, as `drop` would (counted as dropped), and a value
 *   larger than the whole bound is dropped itself. Kept values are written while the
 *   transport holds less than `maxBufferedBytes`, the rest on drain.
 *   Every outcome is counted in `OutboxStats`.
 * - Control frames (acks, errors, pongs) are never dropped by the policy; if a
 *   peer lets even those pile up past twice the limit it is disconnected.
 * - A retained snapshot is a queue item that sends its messages only while the
 *   transport buffer is under `snapshotWindowBytes`, continuing on drain: it is
 *   paced, never dropped, never ballooning memory; live deliveries queued behind
 *   it keep their order (retained first, then live).
 *
 * Memory bound per connection: maxBufferedBytes of live data, plus while
 * conflating at most maxBufferedBytes of latest values (in at most
 * maxConflatedTopics entries), plus the snapshot's message references.
 */
import { CloseCode } from 'topicast/protocol';
import { SendResult, type Connection } from './connection.js';

export type SlowConsumerPolicy = 'drop' | 'conflate' | 'disconnect';
export const SLOW_CONSUMER_POLICIES: readonly SlowConsumerPolicy[] = ['drop', 'conflate', 'disconnect'];

export interface OutboxLimits {
  maxBufferedBytes: number;
  policy: SlowConsumerPolicy;
  /** Retained snapshots are written only while the transport holds less than this. */
  snapshotWindowBytes: number;
  /** Distinct topics kept while conflating; beyond it the newest is dropped (and counted). */
  maxConflatedTopics: number;
}

/** Counters shared by all outboxes of a broker (exported on /metrics and $SYS). */
export interface OutboxStats {
  framesSent: number;
  bytesSent: number;
  dropped: number;
  conflated: number;
  slowConsumerDisconnects: number;
  /** Bytes held by conflating outboxes right now (a gauge: each at most maxBufferedBytes). */
  conflatedBytes: number;
}

export function createOutboxStats(): OutboxStats {
  return { framesSent: 0, bytesSent: 0, dropped: 0, conflated: 0, slowConsumerDisconnects: 0, conflatedBytes: 0 };
}

/** A paced stream of frames, e.g. a retained snapshot. `next` returns undefined when done. */
export interface FrameSource {
  next(): Uint8Array | undefined;
}

/** An outbox's place in a fan-out group (session/fanout-group.ts), as the outbox sees it. */
export interface GroupSeat {
  /** Written to straight from its group: before the outbox queues anything, the group's pending frames must come in. */
  readonly plain: boolean;
  /** Queues the frames the group holds for it here and stops being plain (`FanoutGroup.toBusy`). */
  busy(): void;
}

/** What the Flusher writes at the end of a turn: outboxes, and fan-out groups (session/fanout-group.ts). */
export interface Flushable {
  queuedForFlush: boolean;
  send(): void;
}

/** Batches flushes to once per tick across all outboxes. */
export class Flusher {
  /**
   * Runs before any outbox writes to its connection (every flush, whoever triggers it): the
   * persistent history writes its pending records here, so no offset leaves the process before
   * its record reached the kernel (store/history-log.ts). Undefined without history: no cost.
   */
  beforeSend: (() => void) | undefined = undefined;
  /**
   * This turn's shared live frames, each once, in the order they were first queued: an outbox
   * queues a subscriber's consecutive live deliveries as a run of it (`Outbox.pushLive`), so a
   * delivery stores two small integers instead of a frame reference (whose store into a
   * long-lived queue costs a write barrier). Swapped for `spareLog` when a batch is written;
   * every outbox holding a run of it is in that batch.
   */
  log: Uint8Array[] = [];
  /** Entries of `log` in use. */
  logLength = 0;
  private spareLog: Uint8Array[] = [];
  private dirty: Flushable[] = [];
  private scheduled = false;
  private readonly flushAll = (): void => {
    this.scheduled = false;
    this.beforeSend?.(); // once for the whole batch: writing the queues below appends no history
    const batch = this.dirty;
    this.dirty = [];
    const log = this.log;
    const logged = this.logLength;
    this.log = this.spareLog; // deliveries queued while this batch is written start runs of the other log
    this.logLength = 0;
    for (const dirty of batch) {
      dirty.queuedForFlush = false;
      dirty.send();
    }
    // No run of `log` is left (each was written or dropped with its outbox): hold no frame alive.
    if (log.length > TURN_FRAMES_MAX_KEEP) this.spareLog = [];
    else {
      for (let i = 0; i < logged; i++) log[i] = undefined as unknown as Uint8Array;
      this.spareLog = log;
    }
  };

  constructor(private readonly schedule: (fn: () => void) => void = setImmediate) {}

  /** The index of `frame` in `log`: the last entry when it is that frame (the same publish's fan-out), else a new one. */
  logged(frame: Uint8Array): number {
    const n = this.logLength;
    if (n > 0 && this.log[n - 1] === frame) return n - 1;
    this.log[n] = frame;
    this.logLength = n + 1;
    return n;
  }

  mark(dirty: Flushable): void {
    if (dirty.queuedForFlush) return;
    dirty.queuedForFlush = true;
    this.dirty.push(dirty);
    if (!this.scheduled) {
      this.scheduled = true;
      this.schedule(this.flushAll);
    }
  }
}

const NO_ITEMS: (Uint8Array | FrameSource)[] = Object.freeze([]) as unknown as (Uint8Array | FrameSource)[];
const NO_FRAMES: Uint8Array[] = [];
/**
 * A delivery queue whose array grew past this many slots is released by the first flush that
 * carries no more than this (a burst is over), not kept at its peak; one a sustained stream keeps
 * filling is kept (see `writeQueued`).
 */
const QUEUE_KEEP_SLOTS = 256;
/** Past this many slots a queue is released whenever it empties, busy or not (32 KB of slots). */
const QUEUE_MAX_KEEP_SLOTS = 4096;
/** A turn's frame list (the Flusher's log, a fan-out group's frames) grown past this many slots in a burst is released once written, not kept. */
export const TURN_FRAMES_MAX_KEEP = 65536;

/**
 * `bytes` itself when it is its whole buffer, else a copy: a frame that is a view into a shared
 * slab (protocol/native/fast.ts) would keep the whole slab alive for as long as it is held.
 */
function unshared(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength ? bytes : bytes.slice();
}

/** The outbox whose queue `writeCorked` writes: set by `flush` around its synchronous `cork` call. */
let corking: Outbox | undefined;

function writeCorked(): void {
  corking?.writeQueued();
}

/** What `writeSharedCorked` writes (`Outbox.writeShared`), set around its synchronous `cork` call. */
let shared: Uint8Array[] = [];
let sharedFrom = 0;
let sharedTo = 0;

function writeSharedCorked(): void {
  corking?.writeFrames(shared, sharedFrom, sharedTo);
}

export class Outbox {
  /** Flusher bookkeeping. */
  queuedForFlush = false;
  // Made on first push (a connection that was never sent anything holds none). Once a delivery
  // went through it, it is reused: a fresh array after every flush costs an allocation per
  // delivery, which measurably lengthened the p99 latency at 1,000 msg/s × 100 subscribers.
  // Reuse means its backing store too: the queue is emptied by `tail = 0`, never by
  // `length = 0`, with which V8 drops the backing store and the next push allocates a new one
  // (17 slots, ~150 bytes per subscriber per tick: the young-generation garbage behind the
  // latency tail, bench/README.md "The tail"). A queue that grew past QUEUE_KEEP_SLOTS in a
  // burst is released rather than kept at its peak.
  // A queue that only ever carried control frames (WELCOME, ACK, SNAPSHOT_END: an idle
  // subscriber's whole traffic) is released when it empties.
  private items: (Uint8Array | FrameSource)[] = NO_ITEMS;
  /** Slots of `items` in use: `items[head..tail)` waits; slots from `tail` on are spare (undefined). */
  private tail = 0;
  /** Whether a delivery used `items` since it was made: then it is kept when empty. */
  private keepItems = false;
  /** FrameSources queued (rare: snapshots, replays): while 0, every item is bytes and the write loop never checks. */
  private sources = 0;
  private head = 0;
  /**
   * Live deliveries queued after everything in `items`, as the entries `runStart..runEnd` of a
   * Flusher log (`Flusher.log`); undefined when there are none. Written after `items`.
   */
  private runLog: Uint8Array[] | undefined = undefined;
  private runStart = 0;
  private runEnd = 0;
  private queuedBytes = 0;
  private conflated: Map<string, Uint8Array> | undefined;
  /** Bytes of the values in `conflated`. */
  private conflatedBytes = 0;
  private closed = false;
  /**
   * Transport buffer as last read (after each flush). It only shrinks between
   * flushes, so it over-estimates: pushData trusts it while under the limit and
   * asks the transport again only near the limit, saving a native call per delivery.
   */
  private bufferedEstimate = 0;
  /** @internal Set while its session is in a fan-out group (session/fanout-group.ts). */
  member: GroupSeat | undefined = undefined;

  constructor(
    /** The connection written to; its owner may use it too (one reference per session, not two). */
    readonly conn: Connection,
    private readonly limits: OutboxLimits,
    private readonly stats: OutboxStats,
    private readonly flusher: Flusher,
  ) {}

  /** Bytes waiting for this connection: queued here plus buffered in the transport. */
  pendingBytes(): number {
    this.bufferedEstimate = this.conn.bufferedBytes();
    return this.queuedBytes + this.bufferedEstimate;
  }

  /** The transport's buffer as last read (see `bufferedEstimate`). */
  get estimate(): number {
    return this.bufferedEstimate;
  }

  /** @internal Nothing queued or kept for later: a fan-out group may write to its connection directly. */
  idle(): boolean {
    return !this.closed && this.nothingQueued();
  }

  /** No item, no run and no conflated value waits. */
  private nothingQueued(): boolean {
    return this.head === this.tail && this.runLog === undefined && this.conflated === undefined;
  }

  /** Before this outbox queues anything of its own, the frames its fan-out group holds for it come first (session/fanout-group.ts). */
  private ownTurn(): void {
    const member = this.member;
    if (member !== undefined && member.plain) member.busy();
  }

  /** Queues a delivery; the slow-consumer policy applies. `topic` keys conflation. */
  pushData(bytes: Uint8Array, topic: string): void {
    if (!this.admits(bytes, topic)) return;
    this.keepItems = true;
    // Behind a paced source the frame may wait for many ticks: a copy, not a view into a shared slab.
    this.enqueue(this.sources > 0 ? unshared(bytes) : bytes);
  }

  /**
   * Queues a live delivery whose `frame` every subscriber of its publish shares (a native
   * DELIVERY): as `pushData`, but a subscriber's consecutive deliveries are one run of the
   * Flusher's log instead of a reference each.
   */
  pushLive(frame: Uint8Array, topic: string): void {
    if (!this.admits(frame, topic)) return;
    if (this.sources > 0) {
      this.keepItems = true;
      this.enqueue(unshared(frame)); // behind a paced source: see pushData
      return;
    }
    const flusher = this.flusher;
    const at = flusher.logged(frame);
    this.queuedBytes += frame.length;
    if (at === this.runEnd && this.runLog === flusher.log) {
      this.runEnd = at + 1; // marked when the run began
      return;
    }
    if (this.runLog !== undefined) this.unrun();
    this.runLog = flusher.log;
    this.runStart = at;
    this.runEnd = at + 1;
    flusher.mark(this);
  }

  /** Moves the pending run's frames into `items` (something is queued behind them, or they stopped being consecutive). */
  private unrun(): void {
    const log = this.runLog!;
    this.runLog = undefined;
    this.appendFrames(log, this.runStart, this.runEnd); // already counted in queuedBytes
  }

  /** Appends `frames[from..to)` to `items`; returns their bytes. */
  private appendFrames(frames: Uint8Array[], from: number, to: number): number {
    this.ownQueue();
    this.keepItems = true;
    const items = this.items;
    let bytes = 0;
    for (let i = from; i < to; i++) {
      const frame = frames[i]!;
      items[this.tail++] = frame;
      bytes += frame.length;
    }
    return bytes;
  }

  /** Whether a delivery may be queued; if not, the slow-consumer policy took it (or the outbox is closed). */
  private admits(bytes: Uint8Array, topic: string): boolean {
    if (this.closed) return false;
    this.ownTurn();
    // While conflating, everything goes to the map so no older value can follow a newer one.
    const limit = this.limits.maxBufferedBytes - bytes.length;
    if (this.conflated || (this.queuedBytes + this.bufferedEstimate > limit && this.backedUp(limit))) {
      this.overLimit(bytes, topic);
      return false;
    }
    return true;
  }

  /**
   * Whether the connection is really backed up: bytes queued this tick have not been offered
   * to the transport yet, so offer them first (one corked write) and judge by what the
   * transport could not take. A reader that keeps up is never punished for a burst.
   */
  private backedUp(limit: number): boolean {
    if (this.queuedBytes > 0) this.flush();
    return this.pendingBytes() > limit;
  }

  /** Queues a control frame (ack, error, pong): never dropped by the policy. */
  pushControl(bytes: Uint8Array): void {
    if (this.closed) return;
    this.ownTurn();
    if (this.pendingBytes() > 2 * this.limits.maxBufferedBytes) {
      this.disconnectSlow();
      return;
    }
    this.enqueue(bytes);
  }

  /** Queues a paced source (retained snapshot); frames behind it wait until it is exhausted. */
  pushSource(source: FrameSource): void {
    if (this.closed) return;
    this.ownTurn();
    if (this.runLog !== undefined) this.unrun();
    this.ownQueue();
    this.items[this.tail++] = source;
    this.sources++;
    this.flusher.mark(this);
  }

  /** Stops all sending; the connection is going away. */
  close(): void {
    this.closed = true;
    this.items = NO_ITEMS;
    this.sources = 0;
    this.head = 0;
    this.tail = 0;
    this.runLog = undefined;
    this.queuedBytes = 0;
    this.conflated = undefined;
    this.holdConflated(-this.conflatedBytes);
  }

  /** Writes what the transport will take, after pending history records (drain, near the limit, closing); the per-tick path is the Flusher's `send`. */
  flush(): void {
    this.ownTurn(); // a closing session's pending group frames are written before it closes
    this.flusher.beforeSend?.(); // outside the Flusher's turn end (drain, backedUp): see Flusher.beforeSend
    this.send();
  }

  /**
   * @internal A fan-out group's frames `frames[from..to)` for its plain member: queued here ahead of
   * what this outbox is about to queue (they were accepted under the limit: no policy again).
   */
  takeShared(frames: Uint8Array[], from: number, to: number): void {
    if (this.closed) return;
    if (this.runLog !== undefined) this.unrun();
    this.queuedBytes += this.appendFrames(frames, from, to);
    this.flusher.mark(this);
  }

  /** @internal A fan-out group writes `frames[from..to)` to its plain member (nothing queued here), corked. */
  writeShared(frames: Uint8Array[], from: number, to: number): void {
    if (this.closed) return;
    const outer = corking;
    corking = this;
    shared = frames;
    sharedFrom = from;
    sharedTo = to;
    try {
      this.conn.cork(writeSharedCorked);
    } finally {
      corking = outer;
      shared = NO_FRAMES;
    }
    this.bufferedEstimate = this.conn.bufferedBytes();
  }

  /** @internal The write itself; the Flusher calls it after running `beforeSend` once for its batch. */
  send(): void {
    if (this.closed || this.nothingQueued()) return;
    // cork() runs its callback synchronously: one shared function and a module slot instead of a
    // closure per outbox (memory at 10k idle connections) or per flush (garbage on every tick).
    const outer = corking;
    corking = this;
    try {
      this.conn.cork(writeCorked);
    } finally {
      corking = outer;
    }
    const buffered = (this.bufferedEstimate = this.conn.bufferedBytes());
    // A paced source stopped when the cork held a window's worth; if the transport then wrote it
    // all at once (a TCP socket's write completes synchronously when the kernel takes it), it
    // reports no backpressure and so no drain will ever come: go on at the next turn instead.
    if (this.sources > 0 && !this.closed && buffered < this.snapshotWindow()) this.flusher.mark(this);
  }

  /** A paced source (snapshot, replay) is written only while the transport holds less than this; never more than half the live limit, so it cannot trip the policy. */
  private snapshotWindow(): number {
    return Math.min(this.limits.snapshotWindowBytes, Math.floor(this.limits.maxBufferedBytes / 2));
  }

  /** Writes `items` up to a paced source that must wait; false when it must (or the connection closed). */
  private writeItems(): boolean {
    const { conn, stats, items } = this;
    while (this.head < this.tail) {
      if (this.closed) return false;
      const i = this.head;
      if (this.sources > 0 && !(items[i] instanceof Uint8Array)) {
        const source = items[i] as FrameSource;
        const window = this.snapshotWindow();
        let frame: Uint8Array | undefined;
        while (conn.bufferedBytes() < window && (frame = source.next()) !== undefined) {
          conn.send(frame);
          stats.framesSent++;
          stats.bytesSent += frame.length;
        }
        if (frame !== undefined || conn.bufferedBytes() >= window) return false; // resume on drain
        this.sources--;
        items[i] = undefined as unknown as Uint8Array;
        this.head++;
        continue;
      }
      const bytes = items[i] as Uint8Array;
      const result = conn.send(bytes);
      items[i] = undefined as unknown as Uint8Array; // a spare slot holds no frame alive
      this.head++;
      this.queuedBytes -= bytes.length;
      if (result === SendResult.dropped) {
        // Only reachable if the transport's own hard limit is lower than ours: count it, never hide it.
        stats.dropped++;
        continue;
      }
      stats.framesSent++;
      stats.bytesSent += bytes.length;
    }
    return true;
  }

  /** Writes the run (pushLive). False when the connection closed meanwhile. */
  private writeRun(): boolean {
    const log = this.runLog!;
    this.runLog = undefined;
    const offered = this.writeFrames(log, this.runStart, this.runEnd);
    if (this.closed) return false;
    this.queuedBytes -= offered;
    return true;
  }

  /**
   * @internal Sends `frames[from..to)`, the hot loop of a fan-out (a run, or a fan-out group's
   * frames), counted once at its end. Returns the bytes offered (sent or dropped).
   */
  writeFrames(frames: Uint8Array[], from: number, to: number): number {
    const { conn, stats } = this;
    let sent = 0;
    let bytes = 0;
    let dropped = 0;
    let droppedBytes = 0;
    for (let i = from; i < to && !this.closed; i++) {
      const frame = frames[i]!;
      if (conn.send(frame) === SendResult.dropped) {
        dropped++; // as for an item (writeItems)
        droppedBytes += frame.length;
      } else {
        sent++;
        bytes += frame.length;
      }
    }
    stats.framesSent += sent;
    stats.bytesSent += bytes;
    stats.dropped += dropped;
    return bytes + droppedBytes;
  }

  /** @internal Writes the queue; only called inside `conn.cork` (see `flush`). */
  writeQueued(): void {
    // The items, then the run behind them; again if a send led to more being queued meanwhile.
    do {
      if (!this.writeItems()) return;
      if (this.runLog !== undefined && !this.writeRun()) return;
    } while (this.head < this.tail);
    const { conn, stats } = this;
    // Queue empty: a delivery queue is kept for the next tick (the shared empty queue is frozen),
    // a control-only one released (see `items`). A queue grown past QUEUE_KEEP_SLOTS is kept while
    // the ticks keep carrying more than QUEUE_KEEP_SLOTS frames: at 1→100 fan-out a tick carries
    // 400–2,000 deliveries per subscriber, and releasing the array every tick regrew it slot by
    // slot on the next (array growth and its garbage, bench/README.md "Fan-out 1→100: the
    // per-publish cost"). A tick back under QUEUE_KEEP_SLOTS releases it.
    const slots = this.items.length;
    if (!this.keepItems || (slots > QUEUE_KEEP_SLOTS && (this.tail <= QUEUE_KEEP_SLOTS || slots > QUEUE_MAX_KEEP_SLOTS))) this.items = NO_ITEMS;
    this.head = 0;
    this.tail = 0;
    const pending = this.conflated;
    if (pending) {
      // Oldest update first, while the transport takes them; the rest waits for the next drain.
      const limit = this.limits.maxBufferedBytes;
      for (const [topic, bytes] of pending) {
        if (conn.bufferedBytes() >= limit) break;
        pending.delete(topic);
        this.holdConflated(-bytes.length);
        if (conn.send(bytes) === SendResult.dropped) {
          stats.dropped++;
          continue;
        }
        stats.framesSent++;
        stats.bytesSent += bytes.length;
      }
      if (pending.size === 0) this.conflated = undefined;
    }
  }

  private ownQueue(): void {
    if (this.items === NO_ITEMS) this.items = [];
  }

  private enqueue(bytes: Uint8Array): void {
    if (this.runLog !== undefined) this.unrun();
    this.ownQueue();
    this.items[this.tail++] = bytes;
    this.queuedBytes += bytes.length;
    this.flusher.mark(this);
  }

  private overLimit(bytes: Uint8Array, topic: string): void {
    switch (this.limits.policy) {
      case 'drop':
        this.stats.dropped++;
        return;
      case 'conflate':
        this.conflate(bytes, topic);
        return;
      case 'disconnect':
        this.disconnectSlow();
        return;
    }
  }

  /** Keeps `bytes` as the latest value of `topic`, within maxConflatedTopics and maxBufferedBytes. */
  private conflate(bytes: Uint8Array, topic: string): void {
    const { stats, limits } = this;
    const map = (this.conflated ??= new Map());
    const superseded = map.get(topic);
    if (superseded !== undefined) {
      map.delete(topic); // re-insert so flush order follows the latest update
      this.holdConflated(-superseded.length);
      stats.conflated++;
    } else if (map.size >= limits.maxConflatedTopics) {
      stats.dropped++;
      return;
    }
    if (bytes.length > limits.maxBufferedBytes) {
      stats.dropped++; // alone larger than the bound: what drop does
      return;
    }
    // Past the byte bound the least recently updated topics go, oldest first.
    for (const [oldest, old] of map) {
      if (this.conflatedBytes + bytes.length <= limits.maxBufferedBytes) break;
      map.delete(oldest);
      this.holdConflated(-old.length);
      stats.dropped++;
    }
    map.set(topic, unshared(bytes)); // kept until the connection drains: never a view into a shared slab
    this.holdConflated(bytes.length);
  }

  /** Counts conflated bytes held here and in the broker-wide gauge together. */
  private holdConflated(delta: number): void {
    this.conflatedBytes += delta;
    this.stats.conflatedBytes += delta;
  }

  private disconnectSlow(): void {
    if (this.closed) return;
    this.stats.slowConsumerDisconnects++;
    this.close();
    this.conn.close(CloseCode.slowConsumer, 'slow consumer');
  }
}
