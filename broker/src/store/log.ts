/**
 * Persistent retained store: an append-only log with snapshots (broker/STORAGE.md), on the
 * shared file engine store/append-log.ts (group commit, torn-tail recovery, compaction).
 *
 * Reads (`get`, `match`, `size`, `bytes`) are served by a MemoryRetainedStore that
 * holds everything; every write is also appended to the log as one record
 * (store/record.ts). Writes of one event-loop turn form one batch: one write and
 * one fdatasync, then every `set` promise of the batch resolves (group commit).
 *
 * Invariants
 * - A promise from `set` resolves only after its record and every earlier one are on disk.
 * - Every record states a topic's whole value (set) or deletes it: replay is last-write-wins,
 *   which is what the engine's compaction relies on.
 * - Topics rewritten while a compaction runs are left out of its snapshot (their newer record
 *   follows it); the engine drops that snapshot if one of those writes failed.
 * Cost: one MessagePack encode + CRC32 per write on the caller's turn; write + fdatasync per batch
 * off the JS thread; compaction rewrites live data once the log outgrows the snapshot (≤ 2-3× write
 * amplification). Memory: the index plus a Set of topic names (≈ 24 bytes per topic).
 */
import type { Metrics } from '../observe/metrics.js';
import { MemoryRetainedStore, type RetainedStore } from '../core/retained.js';
import { createMessage, type Message } from '../core/message.js';
import {
  openAppendLog, rejected, StoreError, type AppendLog, type LoadReport, type AppendLogOptions, type AppendLogOwner, type LogStoreStats,
} from './append-log.js';
import { decodeRetainedBody, encodeRecord, RecordKind } from './record.js';

export {
  DataCorruptionError, nodeAppendIo, StoreError, type AppendIo, type DamageInfo, type LoadReport, type LogStoreStats,
} from './append-log.js';

export type LogRetainedStoreOptions = AppendLogOptions;

/**
 * Opens (creating if needed) the retained store in `dir`, loading every retained message
 * into memory. Resolves once the store accepts writes. Close it with `close()`.
 * @example
 * const retained = await openLogRetainedStore('/var/lib/topicast');
 * const router = new Router(retained);
 * // ... on shutdown, after the listeners stopped:
 * await retained.close();
 */
export async function openLogRetainedStore(dir: string, options: LogRetainedStoreOptions = {}): Promise<LogRetainedStore> {
  const store = new LogRetainedStore();
  store.attachLog(openAppendLog(dir, 'retained store', store, options));
  return store;
}

export class LogRetainedStore implements RetainedStore, AppendLogOwner {
  private readonly memory = new MemoryRetainedStore();
  /**
   * The stored topics, for compaction to walk in slices between writes: a Set iterator stays valid
   * while topics come and go (`match('#')` would build the whole list in one blocking call and skip
   * '$' topics). Costs about 24 bytes per topic.
   */
  private readonly topics = new Set<string>();
  /**
   * While a compaction runs: topics written since it asked for its rotation. Their latest state
   * is in a segment after the snapshot, so the snapshot leaves them out instead of holding them twice.
   */
  private rewritten: Set<string> | undefined;
  private log!: AppendLog;

  /** @internal Use openLogRetainedStore. */
  attachLog(log: AppendLog): void {
    this.log = log;
  }

  get dir(): string {
    return this.log.dir;
  }

  get stats(): LogStoreStats {
    return this.log.stats;
  }

  /** What start-up found besides intact records: a torn tail cut off, a recovery (--data-recover). */
  get loadReport(): LoadReport {
    return this.log.loadReport;
  }

  get size(): number {
    return this.memory.size;
  }

  get bytes(): number {
    return this.memory.bytes;
  }

  get(topic: string): Message | undefined {
    return this.memory.get(topic);
  }

  match(filter: string): string[] {
    return this.memory.match(filter);
  }

  /**
   * Stores or (empty payload) deletes, in memory at once and on disk with this turn's batch.
   * The promise resolves when the write is durable and rejects with a StoreError when it
   * could not be written (disk full, I/O error, store closed); reads keep the value either way.
   */
  set(message: Message): Promise<void> {
    if (!this.log.isOpen) return this.log.refusal();
    if (message.payload.length === 0 && this.memory.get(message.topic) === undefined) {
      // Nothing to delete; still durable only once the writes before it are.
      return this.log.synced();
    }
    let record: Buffer;
    try {
      record = encodeRecord(message); // before touching memory: an encode failure leaves the store unchanged
    } catch (err) {
      return rejected(new StoreError(`retained store in ${this.dir}: cannot encode ${message.topic}: ${String(err)}`, undefined, { cause: err }));
    }
    this.applyMessage(message);
    this.rewritten?.add(message.topic);
    return this.log.append(record);
  }

  /**
   * Stops accepting writes, stops a running compaction, writes and syncs what is pending,
   * closes the files and releases the directory. Reads keep working from memory.
   * Resolves once everything acknowledged is on disk; idempotent.
   */
  close(): Promise<void> {
    return this.log.close();
  }

  private applyMessage(message: Message): void {
    if (message.payload.length === 0) this.topics.delete(message.topic);
    else this.topics.add(message.topic);
    this.memory.set(message);
  }

  // ---- AppendLogOwner -------------------------------------------------------------

  /** @internal */
  loadRecord(buf: Buffer, start: number, end: number): boolean {
    const entry = decodeRetainedBody(buf, start, end);
    if (!entry) return false;
    this.applyMessage(entry.kind === RecordKind.set ? entry.message : createMessage(entry.topic, new Uint8Array(0), true));
    return true;
  }

  /** @internal */
  *snapshotRecords(): Iterable<Buffer> {
    const rewritten = this.rewritten;
    for (const topic of this.topics) {
      if (rewritten?.has(topic)) continue;
      const message = this.memory.get(topic);
      if (message) yield encodeRecord(message);
    }
  }

  /** @internal */
  compactionStarted(): void {
    this.rewritten = new Set();
  }

  /** @internal */
  compactionEnded(): void {
    this.rewritten = undefined;
  }
}

/** /metrics: the retained store's write errors, group commits and log size. */
export function registerRetainedStoreMetrics(metrics: Metrics, store: LogRetainedStore): void {
  const s = store.stats;
  metrics.register('topicast_store_write_errors_total', 'counter', 'Retained store writes that failed (e.g. disk full)', () => s.writeErrors);
  metrics.register('topicast_store_batches_total', 'counter', 'Retained store group commits (one fsync each)', () => s.batches);
  metrics.register('topicast_store_log_bytes', 'gauge', 'Bytes in the retained store log since its last snapshot', () => s.logBytes);
}
