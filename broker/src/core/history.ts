/**
 * Per-topic message history and resume (PROTOCOL.md §4.6).
 *
 * One broker-wide stream: every message published on a topic matching a history pattern
 * (`historyFilters`) gets the next offset (last + 1) before it is delivered. The stream is
 * named by an epoch string; offsets are comparable only within one epoch. Each history topic
 * keeps a ring of its newest messages, bounded by count per topic, age, total bytes and number
 * of topics. A client that saw offset `p` resumes with `[epoch, p]` and gets every message
 * after `p` on the topics its filters match, merged in offset order.
 * Each held message keeps its publish time (the broker's receive time, never decreasing along the
 * stream); a history query (PROTOCOL.md §4.8, `query`) selects a topic or filter's held messages
 * by a time and/or offset window, oldest or newest first, and says whether the answer is complete:
 * every topic remembers the offset and time of the last message it lost (`evictedThrough`,
 * `evictedAtMs`), the stream those of losses no topic can tell (`floor`, `floorAtMs`).
 *
 * Invariants
 * - Offsets are assigned in call order, +1 per history message; a ring holds its topic's
 *   messages in increasing offset order; `queue*` holds every held message in offset order
 *   (plus stale entries of messages already evicted by their topic's count bound).
 * - `evictedThrough` of a topic is the highest offset it ever lost; `floor` is the highest offset
 *   lost where the topic cannot tell: a topic gone entirely (its ring is no longer there), or an
 *   offset a store could not keep (a failed write, seen on restart). A resume from `p`
 *   is recovered only if the epoch matches, every filter is covered by a pattern, `p` ≤ `last`,
 *   `floor` ≤ `p`, and `evictedThrough` ≤ `p` for every matching topic: then nothing after `p`
 *   on those topics was ever lost and the replay is exact. The floor is conservative: a topic
 *   removed whole also refuses resumes that do not match it (from before its newest message).
 * - Pure: no timers, no I/O. The clock is passed in; persistence is an injected sink.
 *
 * Cost
 * - History off: the router holds no History, nothing runs.
 * - Per publish on a broker with history: one Map lookup (known history topic) or one walk of the
 *   pattern trie, O(topic depth); per history message O(1) amortised (ring push, queue push,
 *   evictions pop what was pushed before).
 * - Resume: O(matching part of the topic tree + messages replayed); the replay merges the topics'
 *   slices lazily (a heap of k topics: O(log k) per message) as the outbox paces it.
 * - Query: O(matching part of the topic tree + log(ring) per topic) + O(log k) per row; an
 *   answer read later (HTTP streaming) first copies each topic's part, at most `limit` references.
 * - Memory: the messages held, bounded by `maxBytes` counted as payload + topic + ENTRY_OVERHEAD_BYTES.
 */
import { filterCovers } from './filters.js';
import { createMessage, type Message } from './message.js';
import { MemoryRetainedStore } from './retained.js';
import { SubscriptionTrie } from './trie.js';

export interface HistoryLimits {
  /** MQTT filter patterns whose topics keep history; empty means no history (the router then holds none). */
  patterns: readonly string[];
  /** Newest messages kept per topic. */
  maxMessagesPerTopic: number;
  /** Messages older than this are evicted. */
  maxAgeMs: number;
  /** Total bytes held (payload + topic + ENTRY_OVERHEAD_BYTES per message); beyond it the oldest go, across topics. */
  maxBytes: number;
  /** History topics kept; a new one beyond it evicts the topic published to least recently. */
  maxTopics: number;
}

/** Approximate memory of one held message besides its payload and topic: the Message object, its slots in the ring and queue, and its publish time in both. */
export const ENTRY_OVERHEAD_BYTES = 104;

/**
 * The seam for a history several nodes share (cluster/nats/history.ts, cluster/DESIGN.md "History
 * in JetStream"). With a sequencer set (`Router.sequenceHistory`), a message on a history topic is
 * not routed when published: the router hands it to `sequence`, which stores it in the shared
 * stream and later routes it (`Router.publish`) with `message.offset` set to its place there, in
 * the stream's order, on this node as on every other. `History.append` then keeps it at that
 * offset instead of numbering it, and the local `History` is this node's mirror of the stream:
 * resumes and queries read it as they read a single node's history.
 */
export interface HistorySequencer {
  /**
   * Takes a message on a history topic (offset 0) and returns a promise that joins the publish's
   * `durable`: it resolves once the shared stream stored the message and rejects when it could not.
   * Undefined: the stream cannot take it now and the router delivers it here without a position
   * (the sequencer has counted that loss in the history, so no resume is answered across it).
   */
  sequence(message: Message, acknowledged: boolean): Promise<void> | undefined;
}

/** Persistence of the stream (store/history-log.ts). */
export interface HistorySink {
  /** Persists one message with its offset; the promise resolves once it is durable. */
  write(message: Message, atMs: number): Promise<void>;
}

export interface HistoryStats {
  /** Messages given an offset since start. */
  appended: number;
  /** Messages evicted by any bound. */
  evicted: number;
  /** Resumes answered with recovered: true, and the messages they replayed. */
  replays: number;
  replayedMessages: number;
  /** Resumes answered with recovered: false. */
  resumesRefused: number;
  /** History queries answered, and the messages they returned. */
  queries: number;
  queriedMessages: number;
}

/** A history query (PROTOCOL.md §4.8); every bound is inclusive, absent ones are open. */
export interface HistoryQuery {
  /** Topics matching any of them (each topic once). */
  filters: readonly string[];
  /** Most rows returned (≥ 1). */
  limit: number;
  sinceMs?: number | undefined;
  untilMs?: number | undefined;
  fromOffset?: number | undefined;
  toOffset?: number | undefined;
  /** Newest first (the `limit` newest of the window), else oldest first (the `limit` oldest). */
  newestFirst: boolean;
}

export interface HistoryAnswer {
  /** The rows, read lazily in answer order. */
  cursor: QueryCursor;
  /** Rows the cursor yields. */
  count: number;
  /** False when a message that belongs in the answer may be gone (see History.query); call once the cursor is read out. */
  complete(): boolean;
  /** The window holds more messages than the limit let through. */
  more: boolean;
}

/** One topic's part of an answer: `messages[lo..hi)` (and their times), read from `i`. */
interface QuerySlice {
  messages: Message[];
  times: number[];
  lo: number;
  hi: number;
  i: number;
  /** The arrays are this answer's copies: read entries are released as it goes. */
  owned: boolean;
}

export interface StreamPosition {
  epoch: string;
  offset: number;
}

/** One topic's ring: its held messages in offset order. */
class TopicHistory {
  messages: Message[] = [];
  /** Publish time (broker receive time, ms, never decreasing) of `messages[i]`, same indices. */
  times: number[] = [];
  head = 0;
  /** Highest offset this topic lost (0: none). */
  evictedThrough = 0;
  /** Publish time of the message at `evictedThrough` (an upper bound when restored without it); -1: none lost. */
  evictedAtMs = -1;
  /** Set when the topic left the history; queue entries still pointing here are stale. */
  removed = false;
  constructor(readonly topic: string) {}

  get size(): number {
    return this.messages.length - this.head;
  }

  firstOffset(): number {
    return this.messages[this.head]!.offset;
  }

  /** Removes the oldest held message, recording it as lost. */
  shift(): Message {
    const m = this.messages[this.head]!;
    this.evictedThrough = m.offset;
    this.evictedAtMs = this.times[this.head]!;
    this.messages[this.head++] = undefined as unknown as Message; // release the payload now
    if (this.head >= 64 && this.head * 2 >= this.messages.length) {
      this.messages.splice(0, this.head);
      this.times.splice(0, this.head);
      this.head = 0;
    }
    return m;
  }

  /** Index in `messages` of the first held message with an offset ≥ `offset`. */
  indexOfOffset(offset: number): number {
    return this.indexAfter(offset - 1);
  }

  /** Index in `messages` of the first held message published at or after `atMs` (binary search: times never decrease). */
  indexOfTime(atMs: number): number {
    const ts = this.times;
    let lo = this.head;
    let hi = ts.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ts[mid]! < atMs) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** Index in `messages` of the first held message with an offset greater than `after` (binary search). */
  indexAfter(after: number): number {
    const ms = this.messages;
    let lo = this.head;
    let hi = ms.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ms[mid]!.offset <= after) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The held messages with an offset greater than `after`, as a new array (references only). */
  sliceAfter(after: number): Message[] {
    return this.messages.slice(this.indexAfter(after));
  }
}

function entryBytes(m: Message): number {
  return m.payload.length + m.topic.length + ENTRY_OVERHEAD_BYTES;
}

/** A one-byte payload for the topic index, which stores a placeholder per history topic. */
const INDEX_PAYLOAD = new Uint8Array(1);
const NOTHING: Message[][] = [];

let patternMatched = false;
function markPatternMatched(): void {
  patternMatched = true;
}

export class History {
  readonly stats: HistoryStats = { appended: 0, evicted: 0, replays: 0, replayedMessages: 0, resumesRefused: 0, queries: 0, queriedMessages: 0 };
  /** The stream's last offset (0 before the first message of a fresh epoch). */
  last: number;
  /** Highest offset lost where no topic's ring can tell (see the design note). */
  floor = 0;
  /** Publish time of the message at `floor`, or an upper bound of it (history queries with `sinceMs`); -1: none. */
  floorAtMs = -1;
  private held = 0;
  private heldBytes = 0;
  /** Rings by topic, least recently appended first (re-inserted on append) for the maxTopics bound. */
  private readonly rings = new Map<string, TopicHistory>();
  /**
   * The history topics as a topic tree for filter matching. A MemoryRetainedStore is exactly that
   * (wildcards, the `$` rule, cost proportional to the matching part); it holds a placeholder per topic.
   */
  private readonly index = new MemoryRetainedStore();
  private readonly patternTrie = new SubscriptionTrie<number, string>();
  // Every held message in offset order: parallel arrays from `qHead` (no object per entry).
  private qRings: TopicHistory[] = [];
  private qOffsets: number[] = [];
  private qTimes: number[] = [];
  private qHead = 0;
  /** Queue entries whose message its topic already evicted (count bound, topic removal). */
  private stale = 0;
  private lastAtMs = 0;

  /**
   * @param epoch names the stream (PROTOCOL.md §4.6); a store that restores history passes its epoch and `last`
   * @param now wall clock in ms (tests pass a fake one)
   */
  constructor(
    private epochName: string,
    readonly limits: HistoryLimits,
    private readonly now: () => number,
    private sink?: HistorySink,
    last = 0,
  ) {
    this.last = last;
    for (const p of limits.patterns) this.patternTrie.add(p, 0, p);
  }

  /** Names the stream: offsets are comparable only within one epoch. */
  get epoch(): string {
    return this.epochName;
  }

  /**
   * Start-up, before any client: the stream is renamed because what the store restored cannot be
   * vouched for (stored data was damaged and recovered, broker/STORAGE.md "Damage"). What is held
   * stays, offsets go on from `last`, and every offset up to `last` counts as lost, so no resume
   * (from the old epoch, or from before `last` in the new one) is answered recovered: true across it.
   */
  renewEpoch(epoch: string): void {
    this.epochName = epoch;
    this.lost(this.last);
  }

  /**
   * Starts over as the mirror of a shared stream named `epoch` (HistorySequencer): nothing held,
   * nothing lost, offsets from 0. Positions of the old epoch no longer resume (the epoch differs).
   */
  reset(epoch: string): void {
    this.evictThrough(this.last);
    this.epochName = epoch;
    this.last = 0;
    this.floor = 0;
    this.floorAtMs = -1;
  }

  /** Attaches persistence once the store has put back what it holds (restore never writes). */
  setSink(sink: HistorySink): void {
    this.sink = sink;
  }

  /** History topics held. */
  get topics(): number {
    return this.rings.size;
  }

  /** Messages held. */
  get messages(): number {
    return this.held;
  }

  /** Bytes held, as counted for `maxBytes`. */
  get bytes(): number {
    return this.heldBytes;
  }

  /** Whether `topic` matches a history pattern. O(topic depth). */
  isHistoryTopic(topic: string): boolean {
    if (this.rings.has(topic)) return true;
    patternMatched = false;
    this.patternTrie.match(topic, markPatternMatched);
    return patternMatched;
  }

  /**
   * Called by the router before delivery: on a history topic, gives the message the next offset
   * (`message.offset`), keeps it, applies the bounds, and returns the promise of its durable write
   * when a sink is set. Other topics: nothing (offset stays 0). A message that already has an
   * offset (from a shared stream, HistorySequencer) is kept at it; a jump past `last + 1` counts
   * the offsets between as lost, and one not above `last` is not kept.
   */
  append(message: Message): Promise<void> | undefined {
    if (!this.isHistoryTopic(message.topic)) return undefined;
    const atMs = Math.max(this.lastAtMs, this.now()); // monotonic, so age eviction can pop from the front
    if (message.offset === 0) message.offset = ++this.last;
    else {
      // Placed by a shared stream (HistorySequencer), in its order: offsets it skipped are lost to this mirror.
      if (message.offset <= this.last) return undefined; // never kept out of order (delivered, not held)
      if (message.offset > this.last + 1) this.lost(message.offset - 1);
      this.last = message.offset;
    }
    this.keep(message, atMs);
    this.stats.appended++;
    return this.sink?.write(message, atMs);
  }

  /**
   * Start-up: puts back a message read from the store, in offset order, with its original time.
   * Bounds apply as they did when it was first appended. Which offsets count as lost is the
   * store's to say (`lost`, `restoreEvicted`): gaps between stored messages are usually evictions.
   */
  restore(topic: string, payload: Uint8Array, offset: number, atMs: number, contentType?: string): void {
    if (offset <= this.last) throw new Error(`history restore out of order: offset ${offset} after ${this.last}`);
    this.last = offset;
    if (!this.isHistoryTopic(topic)) return; // patterns narrowed since: dropped (the store keeps the epoch only for equal patterns)
    const message = createMessage(topic, payload, false, undefined, 0, contentType === undefined ? undefined : { contentType });
    message.offset = offset;
    this.keep(message, Math.max(this.lastAtMs, atMs));
  }

  /**
   * Start-up: `topic` had lost everything up to `through` (from a snapshot of the rings), the last of
   * it published at `atMs`. Records written before publish times were kept with it have none: then the
   * topic's oldest held message bounds it (times never decrease), or the clock now.
   */
  restoreEvicted(topic: string, through: number, atMs?: number): void {
    const ring = this.rings.get(topic);
    if (ring) {
      ring.evictedThrough = Math.max(ring.evictedThrough, through);
      ring.evictedAtMs = Math.max(ring.evictedAtMs, atMs ?? (ring.size > 0 ? ring.times[ring.head]! : this.now()));
    } else this.lost(through, atMs); // not held now: count it for every topic, conservatively
  }

  /**
   * Everything up to `through` counts as lost (e.g. offsets whose write failed, found as a gap on
   * start-up); `atMs` bounds their publish times from above (default: now, always a bound).
   */
  lost(through: number, atMs?: number): void {
    if (through <= 0) return;
    this.floor = Math.max(this.floor, through);
    this.floorAtMs = Math.max(this.floorAtMs, atMs ?? this.now());
  }

  /** Start-up: the stream continues after `last` (a store skips offsets that may have been delivered but not stored). */
  continueAt(last: number): void {
    this.last = Math.max(this.last, last);
  }

  /** The held message with the smallest offset above `after`, and its time; for a store's snapshot, robust to evictions in between. */
  heldAfter(after: number): { message: Message; atMs: number } | undefined {
    const offsets = this.qOffsets;
    let lo = this.qHead;
    let hi = offsets.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (offsets[mid]! <= after) lo = mid + 1;
      else hi = mid;
    }
    for (let i = lo; i < offsets.length; i++) {
      const ring = this.qRings[i]!;
      if (ring.removed || ring.size === 0 || ring.firstOffset() > offsets[i]!) continue; // evicted by its topic
      return { message: ring.messages[ring.indexAfter(offsets[i]! - 1)]!, atMs: this.qTimes[i]! };
    }
    return undefined;
  }

  /** Per held topic, the highest offset it lost and that message's publish time (topics that never lost one are left out). */
  evictedByTopic(): [topic: string, through: number, atMs: number][] {
    const out: [string, number, number][] = [];
    for (const ring of this.rings.values()) if (ring.evictedThrough > 0) out.push([ring.topic, ring.evictedThrough, ring.evictedAtMs]);
    return out;
  }

  /** Evicts messages older than maxAgeMs. The broker calls it periodically; append and resume call it too. */
  expire(): void {
    this.expireBefore(this.now() - this.limits.maxAgeMs);
  }

  /** Evicts every held message with an offset up to `offset` (the store frees disk space this way). */
  evictThrough(offset: number): void {
    while (this.hasHead() && this.qOffsets[this.qHead]! <= offset) this.evictOldest();
  }

  /** Offset of the oldest message held, or last + 1 when none is. */
  oldestOffset(): number {
    return this.hasHead() ? this.qOffsets[this.qHead]! : this.last + 1;
  }

  /** Whether every filter is covered by a history pattern (every topic it can match keeps history). */
  covers(filters: readonly string[]): boolean {
    const patterns = this.limits.patterns;
    return filters.every((f) => patterns.some((p) => filterCovers(p, f)));
  }

  /**
   * Plans a resume: the slices to replay (one per matching topic `canRead` allows, messages after
   * `from.offset` as held now) when the replay is exact, or undefined when it cannot be (the
   * subscription then starts fresh, `recovered: false`). Counts the outcome.
   */
  resume(filters: readonly string[], from: StreamPosition, canRead?: (topic: string) => boolean): Message[][] | undefined {
    this.expire();
    const p = from.offset;
    if (from.epoch !== this.epoch || p > this.last || this.floor > p || !this.covers(filters)) {
      this.stats.resumesRefused++;
      return undefined;
    }
    const topics = filters.length === 1 ? this.index.match(filters[0]!) : [...new Set(filters.flatMap((f) => this.index.match(f)))];
    let slices = NOTHING;
    let count = 0;
    for (const topic of topics) {
      const ring = this.rings.get(topic)!;
      if (ring.evictedThrough > p) {
        this.stats.resumesRefused++;
        return undefined;
      }
      if (canRead && !canRead(topic)) continue;
      const slice = ring.sliceAfter(p);
      if (slice.length === 0) continue;
      if (slices === NOTHING) slices = [];
      slices.push(slice);
      count += slice.length;
    }
    this.stats.replays++;
    this.stats.replayedMessages += count;
    return slices;
  }

  /**
   * A history query (PROTOCOL.md §4.8): the held messages on topics matching `q.filters` that
   * `canRead` allows, inside the window (every bound inclusive), in offset order (oldest first, or
   * newest first), at most `q.limit`. Captured now (references only); the rows are read lazily from
   * the returned cursor as the caller paces them. `complete` is false when a message that would
   * belong in the answer may be gone (evicted by a bound, lost, or the filter reaches topics without
   * history); `more` says the window holds messages beyond the limit.
   * `readNow`: the caller reads every row in this synchronous turn (nothing can be evicted
   * meanwhile), so the rings are read in place; otherwise each topic's part is copied first.
   * Cost: O(matching part of the topic tree + log(ring) per topic) + per row O(log k); copying
   * adds O(min(window, limit)) per topic.
   */
  query(q: HistoryQuery, canRead?: (topic: string) => boolean, readNow = false): HistoryAnswer {
    this.expire();
    const from = q.fromOffset ?? 1;
    const to = q.toOffset ?? Number.MAX_SAFE_INTEGER;
    const since = q.sinceMs ?? -Infinity;
    const until = q.untilMs ?? Infinity;
    const limit = q.limit;
    const slices: QuerySlice[] = [];
    let total = 0;
    // Lost through (offset, time) per readable matching topic, judged once the answer's reach is known.
    const losses: number[] = [];
    const f = q.filters;
    const topics = f.length === 1 ? this.index.match(f[0]!) : [...new Set(f.flatMap((x) => this.index.match(x)))];
    for (const topic of topics) {
      const ring = this.rings.get(topic)!;
      if (canRead && !canRead(topic)) continue;
      if (ring.evictedThrough > 0) losses.push(ring.evictedThrough, ring.evictedAtMs);
      let lo = ring.indexOfOffset(from);
      let hi = ring.indexAfter(to);
      if (since > -Infinity) lo = Math.max(lo, ring.indexOfTime(since));
      if (until < Infinity) hi = Math.min(hi, ring.indexOfTime(until + 1));
      if (hi <= lo) continue;
      total += hi - lo;
      // No topic can give more than `limit` rows: copy only the end the answer starts from.
      if (hi - lo > limit) {
        if (q.newestFirst) lo = hi - limit;
        else hi = lo + limit;
      }
      if (readNow) slices.push({ messages: ring.messages, times: ring.times, lo, hi, i: lo, owned: false });
      else slices.push({ messages: ring.messages.slice(lo, hi), times: ring.times.slice(lo, hi), lo: 0, hi: hi - lo, i: 0, owned: true });
    }
    if (this.floor > 0) losses.push(this.floor, this.floorAtMs);
    const count = Math.min(total, limit);
    const cursor = new QueryCursor(slices, q.newestFirst, count);
    const covered = this.covers(q.filters);
    const cutByLimit = q.newestFirst && total >= limit;
    this.stats.queries++;
    this.stats.queriedMessages += count;
    return {
      cursor,
      count,
      more: total > limit,
      complete: () => {
        // The answer reaches down to `from` (oldest first, or newest first short of the limit), or only
        // down to its oldest row (newest first, limit reached: known once read): a loss below it is no hole.
        const reach = cutByLimit ? Math.max(from, cursor.lastOffset) : from;
        if (!covered) return false;
        for (let i = 0; i < losses.length; i += 2) if (losses[i]! >= reach && losses[i + 1]! >= since) return false;
        return true;
      },
    };
  }

  // ---- internals ------------------------------------------------------------------

  private keep(message: Message, atMs: number): void {
    this.lastAtMs = atMs;
    const topic = message.topic;
    let ring = this.rings.get(topic);
    if (ring === undefined) {
      if (this.rings.size >= this.limits.maxTopics) this.removeTopic(this.rings.values().next().value!);
      ring = new TopicHistory(topic);
      this.index.set(createMessage(topic, INDEX_PAYLOAD, true));
    } else {
      this.rings.delete(topic); // re-inserted below: the Map's order is least recently appended first
    }
    this.rings.set(topic, ring);
    ring.messages.push(message);
    ring.times.push(atMs);
    this.qRings.push(ring);
    this.qOffsets.push(message.offset);
    this.qTimes.push(atMs);
    this.held++;
    this.heldBytes += entryBytes(message);
    while (ring.size > this.limits.maxMessagesPerTopic) {
      this.forget(ring.shift());
      this.stale++;
    }
    while (this.heldBytes > this.limits.maxBytes && this.hasHead()) this.evictOldest();
    this.expireBefore(atMs - this.limits.maxAgeMs);
    this.compactQueue();
  }

  private forget(m: Message): void {
    this.held--;
    this.heldBytes -= entryBytes(m);
    this.stats.evicted++;
  }

  private expireBefore(oldestKeptMs: number): void {
    while (this.hasHead() && this.qTimes[this.qHead]! < oldestKeptMs) this.evictOldest();
  }

  /** Whether a message is held; leaves the queue's head on the oldest one. */
  private hasHead(): boolean {
    this.dropStaleHead();
    return this.qHead < this.qOffsets.length;
  }

  /** Pops the oldest held message of the stream from its topic; call after hasHead() said true. */
  private evictOldest(): void {
    const ring = this.qRings[this.qHead]!;
    this.popQueueHead();
    this.forget(ring.shift());
    if (ring.size === 0) this.removeTopic(ring);
  }

  private removeTopic(ring: TopicHistory): void {
    while (ring.size > 0) {
      this.forget(ring.shift());
      this.stale++;
    }
    ring.removed = true;
    this.floor = Math.max(this.floor, ring.evictedThrough);
    this.floorAtMs = Math.max(this.floorAtMs, ring.evictedAtMs);
    this.rings.delete(ring.topic);
    this.index.set(createMessage(ring.topic, new Uint8Array(0), true)); // an empty payload deletes
  }

  private dropStaleHead(): void {
    while (this.qHead < this.qOffsets.length) {
      const ring = this.qRings[this.qHead]!;
      if (!ring.removed && ring.size > 0 && ring.firstOffset() === this.qOffsets[this.qHead]) return;
      this.popQueueHead();
      this.stale--;
    }
  }

  private popQueueHead(): void {
    this.qRings[this.qHead] = undefined as unknown as TopicHistory;
    this.qHead++;
  }

  /** Drops popped and stale queue entries once they outnumber the live ones (amortised O(1) per append). */
  private compactQueue(): void {
    const dead = this.qHead + this.stale;
    if (dead < 1024 || dead < this.held) return;
    const rings: TopicHistory[] = [];
    const offsets: number[] = [];
    const times: number[] = [];
    for (let i = this.qHead; i < this.qOffsets.length; i++) {
      const ring = this.qRings[i]!;
      const offset = this.qOffsets[i]!;
      if (ring.removed || ring.size === 0 || ring.firstOffset() > offset) continue; // evicted by its topic
      rings.push(ring);
      offsets.push(offset);
      times.push(this.qTimes[i]!);
    }
    this.qRings = rings;
    this.qOffsets = offsets;
    this.qTimes = times;
    this.qHead = 0;
    this.stale = 0;
  }
}

/** Restores the min-heap order by `key` below index `i` (the cursor heaps of ReplayMerge and QueryCursor). */
function siftDown<T>(heap: T[], i: number, key: (item: T) => number): void {
  for (;;) {
    const l = 2 * i + 1;
    const r = l + 1;
    let min = i;
    if (l < heap.length && key(heap[l]!) < key(heap[min]!)) min = l;
    if (r < heap.length && key(heap[r]!) < key(heap[min]!)) min = r;
    if (min === i) return;
    const t = heap[i]!;
    heap[i] = heap[min]!;
    heap[min] = t;
    i = min;
  }
}

function replayKey(c: { slice: Message[]; i: number }): number {
  return c.slice[c.i]!.offset;
}

function queryKeyAscending(s: QuerySlice): number {
  return s.messages[s.i]!.offset;
}

function queryKeyDescending(s: QuerySlice): number {
  return -s.messages[s.i]!.offset;
}

/**
 * Merges per-topic slices (each in offset order) into one sequence in offset order, lazily:
 * a binary heap of slice cursors, O(log k) per message, nothing copied.
 */
export class ReplayMerge {
  private readonly heap: { slice: Message[]; i: number }[];
  constructor(slices: Message[][]) {
    this.heap = slices.filter((s) => s.length > 0).map((slice) => ({ slice, i: 0 }));
    for (let i = (this.heap.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  /** The next message in offset order, or undefined when all are out. */
  next(): Message | undefined {
    const heap = this.heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const m = top.slice[top.i]!;
    top.slice[top.i++] = undefined as unknown as Message; // release as we go
    if (top.i === top.slice.length) {
      const lastCursor = heap.pop()!;
      if (heap.length === 0) return m;
      heap[0] = lastCursor;
    }
    this.down(0);
    return m;
  }

  private down(i: number): void {
    siftDown(this.heap, i, replayKey);
  }
}

/**
 * The rows of a history query: per-topic slices (each in offset order) merged lazily in offset
 * order, ascending or descending, up to `count` rows: a binary heap of slice cursors, O(log k) per
 * row, nothing copied (the ReplayMerge scheme, both directions, with publish times).
 */
export class QueryCursor {
  /** Publish time of the row `next` returned last. */
  atMs = 0;
  /** Offset of the row `next` returned last (0 before the first). */
  lastOffset = 0;
  private left: number;
  private readonly heap: QuerySlice[];
  private readonly sign: number;
  constructor(slices: QuerySlice[], newestFirst: boolean, count: number) {
    this.left = count;
    this.sign = newestFirst ? -1 : 1;
    if (newestFirst) for (const s of slices) s.i = s.hi - 1;
    this.heap = slices;
    for (let i = (slices.length >> 1) - 1; i >= 0; i--) this.down(i);
  }

  /** Rows not read yet. */
  get remaining(): number {
    return this.left;
  }

  /** The next row, or undefined when the answer is out. */
  next(): Message | undefined {
    const heap = this.heap;
    const top = heap[0];
    if (this.left === 0 || top === undefined) return undefined;
    this.left--;
    const m = top.messages[top.i]!;
    this.atMs = top.times[top.i]!;
    this.lastOffset = m.offset;
    if (top.owned) top.messages[top.i] = undefined as unknown as Message; // release as we go
    top.i += this.sign;
    if (top.i < top.lo || top.i >= top.hi) {
      const last = heap.pop()!;
      if (heap.length === 0) return m;
      heap[0] = last;
    }
    this.down(0);
    return m;
  }

  private down(i: number): void {
    siftDown(this.heap, i, this.sign > 0 ? queryKeyAscending : queryKeyDescending);
  }
}
