/**
 * The publish queue: publishes made while no connection is open, or while the
 * socket already holds more than `maxBufferedBytes` unsent, wait here, already
 * encoded, and are sent in order as soon as the connection (re)opens or drains.
 * Bounded by `maxMessages`; what happens beyond is the overflow policy:
 * - 'drop-oldest' (default): the oldest waiting message makes room; readings
 *   lose value with age, so the newest are the ones worth keeping;
 * - 'drop-newest': the new message is dropped, the backlog kept intact;
 * - 'error': the new message is refused with a QueueFullError.
 * Cost: O(1) amortized per push and shift (a head index instead of Array.shift).
 */

/**
 * Size and overflow policy of the offline queue.
 * @example
 * await connect(url, { queue: { maxMessages: 100, overflow: 'error' } });
 */
export interface QueueOptions {
  /** Most publishes held while disconnected. */
  maxMessages?: number;
  /** What to do with a publish that does not fit. */
  overflow?: 'drop-oldest' | 'drop-newest' | 'error';
  /** Unsent bytes the socket may hold before publishes wait in the queue instead (backpressure). */
  maxBufferedBytes?: number;
}

/**
 * Default `queue.maxMessages`. 1000: minutes of a typical agent's readings, a few hundred KB at most.
 * @example
 * await connect(url, { queue: { maxMessages: 10 * DEFAULT_QUEUE_MAX_MESSAGES } });
 */
export const DEFAULT_QUEUE_MAX_MESSAGES = 1000;

/**
 * Default `queue.maxBufferedBytes`. 1 MiB: thousands of readings in flight; beyond it a
 * publisher outrunning the network fills the bounded queue instead of socket memory.
 * @example
 * await connect(url, { queue: { maxBufferedBytes: DEFAULT_MAX_BUFFERED_BYTES / 4 } });
 */
export const DEFAULT_MAX_BUFFERED_BYTES = 1 << 20;

/**
 * Outcome of `OfflineQueue.push`.
 * @example
 * const r: PushResult<string> = queue.push('x');
 * if (r.kind === 'queued-dropped') console.warn('evicted', r.dropped);
 */
export type PushResult<T> =
  | { kind: 'queued' }
  | { kind: 'queued-dropped'; dropped: T } // queued, the oldest item was evicted
  | { kind: 'refused' }; // not queued ('drop-newest' or 'error', by policy)

/**
 * A bounded FIFO with an overflow policy (the client's offline publish queue).
 * @example
 * const q = new OfflineQueue<number>({ maxMessages: 2 });
 * q.push(1); q.push(2); q.push(3); // { kind: 'queued-dropped', dropped: 1 }
 * q.drain(); // [2, 3]
 */
export class OfflineQueue<T> {
  readonly maxMessages: number;
  readonly overflow: 'drop-oldest' | 'drop-newest' | 'error';
  private items: T[] = [];
  private head = 0;

  constructor(options: QueueOptions = {}) {
    this.maxMessages = Math.max(0, options.maxMessages ?? DEFAULT_QUEUE_MAX_MESSAGES);
    this.overflow = options.overflow ?? 'drop-oldest';
  }

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): PushResult<T> {
    if (this.length < this.maxMessages) {
      this.items.push(item);
      return { kind: 'queued' };
    }
    if (this.overflow !== 'drop-oldest' || this.maxMessages === 0) return { kind: 'refused' };
    const dropped = this.shift()!;
    this.items.push(item);
    return { kind: 'queued-dropped', dropped };
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.items[this.head] = undefined as T; // let it be collected
    this.head++;
    if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }

  /** Removes and returns everything, oldest first. */
  drain(): T[] {
    const out = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return out;
  }
}
