/**
 * Persistent retained store: an append-only log with snapshots (broker/STORAGE.md).
 *
 * Reads (`get`, `match`, `size`, `bytes`) are served by a MemoryRetainedStore that
 * holds everything; every write is also appended to the log as one record
 * (store/record.ts). Writes of one event-loop turn form one batch: one write and
 * one fdatasync, then every `set` promise of the batch resolves (group commit).
 * While a batch is being synced the next one gathers, so under load each fsync
 * carries more writes instead of queueing more fsyncs.
 *
 * Files in the data directory:
 *   snapshot-<N>.tcs  every retained message as of the end of segment N (written whole, synced, renamed)
 *   log-<M>.tcl       writes appended after the snapshot, M > N, replayed in order on top of it
 *   LOCK              the owning process (store/lock.ts)
 *
 * Invariants
 * - A promise from `set` resolves only after its record and every earlier one are on disk.
 * - The log never holds a gap: a failed write is truncated away before the next batch.
 * - Start-up = newest snapshot + later segments in order; a torn or corrupt tail is cut off.
 * - Compaction writes a snapshot of memory after rotating the segment; writes made while it
 *   runs go to the new segment and are replayed after the snapshot, so last-write-wins holds.
 *   Topics rewritten meanwhile are left out of the snapshot, which therefore replaces the old
 *   files only after those writes are durable, and not at all if one of them failed.
 * Cost: one MessagePack encode + CRC32 per write on the caller's turn; write + fdatasync per batch
 * off the JS thread; compaction rewrites live data once the log outgrows the snapshot (≤ 2-3× write
 * amplification). Memory: the index plus a Set of topic names (≈ 24 bytes per topic).
 */
import {
  closeSync, fdatasync, fstatSync, fsyncSync, ftruncate, ftruncateSync, mkdirSync, openSync, readdirSync, readSync,
  unlinkSync, write, type PathLike,
} from 'node:fs';
import { open as openAsync, rename, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { MemoryRetainedStore, type RetainedStore } from '../core/retained.js';
import { createMessage, type Message } from '../core/message.js';
import { lockDirectory } from './lock.js';
import { decodeRecordAt, encodeRecord, RECORD_HEADER_BYTES, RecordKind, type LogEntry } from './record.js';

/** Writes and syncs log appends and snapshots; replaceable so tests can inject disk failures and delays. */
export interface AppendIo {
  /** Writes up to `length` bytes of `buf` from `offset` at file `position`; resolves with the bytes written. */
  write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
  ftruncate(fd: number, length: number): Promise<void>;
}

export const nodeAppendIo: AppendIo = {
  write: (fd, buf, offset, length, position) =>
    new Promise((ok, fail) => write(fd, buf, offset, length, position, (err, n) => (err ? fail(err) : ok(n)))),
  fdatasync: (fd) => new Promise((ok, fail) => fdatasync(fd, (err) => (err ? fail(err) : ok()))),
  ftruncate: (fd, length) => new Promise((ok, fail) => ftruncate(fd, length, (err) => (err ? fail(err) : ok()))),
};

export interface LogRetainedStoreOptions {
  /** Compaction starts once the log since the last snapshot exceeds both this and the snapshot's size. */
  compactMinBytes?: number;
  /** Called with every write or compaction failure (the broker logs it); failures are also counted in `stats`. */
  onError?: (err: StoreError) => void;
  /** File operations for appends and snapshots (default: node:fs); tests inject ENOSPC and delays here. */
  io?: AppendIo;
}

const DEFAULTS = {
  compactMinBytes: 16 * 1024 * 1024, // small enough to bound restart replay, large enough that compaction is rare
  snapshotChunkBytes: 64 * 1024, // snapshot written in 64 KiB writes (≈ 1-2 ms of encoding each), live traffic runs between them
  readChunkBytes: 4 * 1024 * 1024, // start-up reads; a record larger than this gets its own buffer
} as const;

/** A write or open failure of the persistent store, with the errno code when the OS gave one. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(message: string, readonly code: string | undefined, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface LogStoreStats {
  /** Records appended (sets and deletes). */
  writes: number;
  /** Batches written, each one fdatasync. */
  batches: number;
  writeErrors: number;
  compactions: number;
  compactionErrors: number;
  /** Bytes of the newest snapshot and of the log segments after it. */
  snapshotBytes: number;
  logBytes: number;
  /** Start-up: time to load everything, and bytes cut off as torn or corrupt tails. */
  loadMs: number;
  truncatedBytes: number;
}

type StoreState = 'open' | 'closing' | 'closed';

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  // Failures are reported through onError and stats; a caller that does not await (QoS 0) must not crash the process.
  promise.catch(function failureReportedByStore() {});
  return { promise, resolve, reject };
}

const SNAPSHOT = /^snapshot-(\d{12})\.tcs$/;
const SEGMENT = /^log-(\d{12})\.tcl$/;
const snapshotName = (n: number): string => `snapshot-${String(n).padStart(12, '0')}.tcs`;
const segmentName = (n: number): string => `log-${String(n).padStart(12, '0')}.tcl`;

function syncDirectory(dir: PathLike): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

async function syncDirectoryAsync(dir: string): Promise<void> {
  const handle = await openAsync(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

function describeFailure(dir: string, what: string, err: unknown): StoreError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const why = code === 'ENOSPC' ? 'no space left on device (ENOSPC)'
    : code === 'EDQUOT' ? 'disk quota exceeded (EDQUOT)'
    : err instanceof Error ? err.message // Node's messages start with the code: "EACCES: permission denied, mkdir '…'"
    : String(err);
  return new StoreError(`retained store in ${dir}: ${what} failed: ${why}`, code, { cause: err });
}

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
  const abs = resolve(dir);
  let release: (() => void) | undefined;
  try {
    mkdirSync(abs, { recursive: true });
    release = lockDirectory(abs);
    return LogRetainedStore.load(abs, release, options);
  } catch (err) {
    release?.();
    // Start-up fails with one line naming the directory and the cause (e.g. EACCES, or the lock owner).
    throw describeFailure(abs, 'open', err);
  }
}

export class LogRetainedStore implements RetainedStore {
  readonly stats: LogStoreStats = {
    writes: 0, batches: 0, writeErrors: 0, compactions: 0, compactionErrors: 0,
    snapshotBytes: 0, logBytes: 0, loadMs: 0, truncatedBytes: 0,
  };

  private readonly memory = new MemoryRetainedStore();
  /**
   * The stored topics, for compaction to walk in slices between writes: a Set iterator stays valid
   * while topics come and go (`match('#')` would build the whole list in one blocking call and skip
   * '$' topics). Costs about 24 bytes per topic.
   */
  private readonly topics = new Set<string>();
  private state: StoreState = 'open';

  private fd = -1;
  private segment = 0;
  /** Bytes of the active segment that are on disk (the append position). */
  private position = 0;
  /** Sizes of the segments after the snapshot, by number. */
  private readonly segmentBytes = new Map<number, number>();
  private snapshot = -1;

  private pending: Buffer[] = [];
  private batch: Deferred | undefined;
  /** The batch being written, so a no-op delete can wait for the write it depends on. */
  private inFlight: Deferred | undefined;
  private rotation: { done: Deferred; closed: number } | undefined;
  private flushing: Promise<void> | undefined;
  private flushScheduled = false;
  /** Set when a failed write could not be truncated away: the log cannot be trusted for appends. */
  private broken: StoreError | undefined;

  private compacting: Promise<void> | undefined;
  /**
   * While a compaction runs: topics written since it asked for its rotation. Their latest state
   * is in a segment after the snapshot, so the snapshot leaves them out instead of holding them twice.
   */
  private rewritten: Set<string> | undefined;
  /** A write failed while `rewritten` was kept: a topic left out of the snapshot may not be on disk. */
  private rewriteFailed = false;
  private closing: Promise<void> | undefined;
  private compactAbort = false;
  /** After a failed compaction, the log size at which to try again (avoids retrying on every batch). */
  private compactRetryAt = 0;

  private readonly compactMinBytes: number;
  private readonly io: AppendIo;
  private readonly onError: (err: StoreError) => void;
  private readonly flushNow = (): void => {
    this.flushScheduled = false;
    this.startDrain();
  };

  private constructor(readonly dir: string, private readonly release: () => void, options: LogRetainedStoreOptions) {
    this.compactMinBytes = options.compactMinBytes ?? DEFAULTS.compactMinBytes;
    this.io = options.io ?? nodeAppendIo;
    this.onError = options.onError ?? function unreportedStoreError() {};
  }

  /** @internal Loads the directory; use openLogRetainedStore. */
  static load(dir: string, release: () => void, options: LogRetainedStoreOptions): LogRetainedStore {
    const store = new LogRetainedStore(dir, release, options);
    const started = performance.now();
    const names = readdirSync(dir);
    const numbered = (re: RegExp): number[] =>
      names.flatMap((n) => {
        const m = re.exec(n);
        return m ? [Number(m[1])] : [];
      }).sort((a, b) => a - b);
    const snapshots = numbered(SNAPSHOT);
    const segments = numbered(SEGMENT);
    const snapshot = snapshots.at(-1) ?? -1;
    // Leftovers of a compaction that stopped between rename and cleanup, or before rename.
    for (const n of snapshots) if (n < snapshot) unlinkSync(join(dir, snapshotName(n)));
    for (const n of segments) if (n <= snapshot) unlinkSync(join(dir, segmentName(n)));
    for (const n of names) if (n.endsWith('.tmp')) unlinkSync(join(dir, n));

    const apply = store.applyEntry;
    if (snapshot >= 0) {
      store.snapshot = snapshot;
      store.stats.snapshotBytes = store.loadFile(join(dir, snapshotName(snapshot)), apply);
    }
    let last = snapshot;
    for (const n of segments) {
      if (n <= snapshot) continue;
      const bytes = store.loadFile(join(dir, segmentName(n)), apply);
      if (bytes === 0) {
        unlinkSync(join(dir, segmentName(n))); // a restart without writes leaves an empty segment behind
        continue;
      }
      store.segmentBytes.set(n, bytes);
      store.stats.logBytes += bytes;
      last = n;
    }
    // Always append to a fresh segment: the old ones are never reopened for writing.
    store.segment = last + 1;
    store.fd = openSync(join(dir, segmentName(store.segment)), 'wx');
    store.segmentBytes.set(store.segment, 0);
    syncDirectory(dir);
    store.stats.loadMs = performance.now() - started;
    store.maybeCompact();
    return store;
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
    if (this.state !== 'open') {
      const d = deferred();
      d.reject(new StoreError(`retained store in ${this.dir} is ${this.state}`, undefined));
      return d.promise;
    }
    if (message.payload.length === 0 && this.memory.get(message.topic) === undefined) {
      // Nothing to delete; still durable only once the writes before it are.
      return (this.batch ?? this.inFlight)?.promise ?? Promise.resolve();
    }
    const record = encodeRecord(message); // before touching memory: an encode failure leaves the store unchanged
    this.applyMessage(message);
    this.rewritten?.add(message.topic);
    this.stats.writes++;
    this.pending.push(record);
    const batch = (this.batch ??= deferred());
    this.scheduleFlush();
    return batch.promise;
  }

  /**
   * Stops accepting writes, stops a running compaction, writes and syncs what is pending,
   * closes the files and releases the directory. Reads keep working from memory.
   * Resolves once everything acknowledged is on disk; idempotent.
   */
  close(): Promise<void> {
    return (this.closing ??= this.shutDown());
  }

  private async shutDown(): Promise<void> {
    this.state = 'closing';
    this.compactAbort = true;
    await this.compacting;
    if (this.batch) this.startDrain();
    while (this.flushing) await this.flushing;
    try {
      closeSync(this.fd);
    } finally {
      this.fd = -1;
      this.release();
      this.state = 'closed';
    }
  }

  private report(failure: StoreError): void {
    try {
      this.onError(failure);
    } catch (err) {
      // A throwing reporter must not stop the writer; the failure is still counted in stats.
      process.emitWarning(`retained store onError threw: ${String(err)} while reporting: ${failure.message}`);
    }
  }

  // ---- memory -----------------------------------------------------------------

  private readonly applyEntry = (entry: LogEntry): void => {
    this.applyMessage(entry.kind === RecordKind.set ? entry.message : createMessage(entry.topic, new Uint8Array(0), true));
  };

  private applyMessage(message: Message): void {
    if (message.payload.length === 0) this.topics.delete(message.topic);
    else this.topics.add(message.topic);
    this.memory.set(message);
  }

  // ---- start-up ---------------------------------------------------------------

  /** Applies every intact record of `path` in order, truncates a torn tail; returns the intact length. */
  private loadFile(path: string, apply: (entry: LogEntry) => void): number {
    const fd = openSync(path, 'r+');
    try {
      const size = fstatSync(fd).size;
      let buf = Buffer.alloc(0);
      let bufStart = 0; // file offset of buf[0]
      let pos = 0;
      let readTo = 0;
      for (;;) {
        const r = decodeRecordAt(buf, pos);
        if (typeof r === 'object') {
          apply(r.entry);
          pos = r.next;
          continue;
        }
        if (r === 'corrupt' || readTo >= size) break;
        // Incomplete: keep the unread rest and read at least the whole declared record.
        const rest = buf.length - pos;
        const declared = rest >= RECORD_HEADER_BYTES ? buf.readUInt32LE(pos) + RECORD_HEADER_BYTES : 0;
        const more = Math.min(size - readTo, Math.max(DEFAULTS.readChunkBytes, declared - rest));
        const next = Buffer.allocUnsafe(rest + more);
        buf.copy(next, 0, pos);
        let filled = 0;
        while (filled < more) {
          const n = readSync(fd, next, rest + filled, more - filled, readTo + filled);
          if (n === 0) break;
          filled += n;
        }
        readTo += filled;
        bufStart += pos;
        buf = filled === more ? next : next.subarray(0, rest + filled);
        pos = 0;
        if (filled === 0) break;
      }
      const intact = bufStart + pos;
      if (intact < size) {
        // A torn write (crash mid-append) or garbage: everything before it is intact, nothing after it was acknowledged.
        ftruncateSync(fd, intact);
        fsyncSync(fd);
        this.stats.truncatedBytes += size - intact;
      }
      return intact;
    } finally {
      closeSync(fd);
    }
  }

  // ---- writer -----------------------------------------------------------------

  /** Batches gather until the end of this event-loop turn (setImmediate runs after pending I/O callbacks). */
  private scheduleFlush(): void {
    if (this.flushScheduled || this.flushing) return;
    this.flushScheduled = true;
    setImmediate(this.flushNow);
  }

  private startDrain(): void {
    if (this.flushing) return;
    this.flushing = this.drain().finally(() => {
      this.flushing = undefined;
      // A write may have arrived between the loop's last check and here.
      if (this.batch || this.rotation) this.scheduleFlush();
      else this.maybeCompact();
    });
  }

  /** Writes batches (and segment rotations) one after another until none is waiting. Never rejects. */
  private async drain(): Promise<void> {
    while (this.batch || this.rotation) {
      if (this.rotation) {
        await this.rotate(this.rotation);
        continue;
      }
      const batch = this.batch!;
      const records = this.pending;
      this.batch = undefined;
      this.pending = [];
      this.inFlight = batch;
      try {
        await this.append(records.length === 1 ? records[0]! : Buffer.concat(records));
        this.stats.batches++;
        batch.resolve();
        this.maybeCompact(); // here too: under sustained writes this loop never ends
      } catch (err) {
        const failure = err instanceof StoreError ? err : describeFailure(this.dir, 'append', err);
        this.stats.writeErrors++;
        if (this.rewritten) this.rewriteFailed = true;
        this.report(failure);
        batch.reject(failure);
      } finally {
        this.inFlight = undefined;
      }
    }
  }

  private async append(buf: Buffer): Promise<void> {
    if (this.broken) throw this.broken;
    try {
      let done = 0;
      while (done < buf.length) {
        const n = await this.io.write(this.fd, buf, done, buf.length - done, this.position + done);
        if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
        done += n;
      }
      await this.io.fdatasync(this.fd);
    } catch (err) {
      const failure = describeFailure(this.dir, 'append', err);
      // Cut the partial batch off so the next batch starts on a record boundary.
      try {
        await this.io.ftruncate(this.fd, this.position);
        await this.io.fdatasync(this.fd);
      } catch (truncateErr) {
        this.broken = describeFailure(this.dir, `truncating after "${failure.message}"`, truncateErr);
      }
      throw failure;
    }
    this.position += buf.length;
    this.stats.logBytes += buf.length;
    this.segmentBytes.set(this.segment, this.position);
  }

  /** Closes the active segment (already synced) and starts the next one. */
  private async rotate(rotation: { done: Deferred; closed: number }): Promise<void> {
    this.rotation = undefined;
    try {
      const next = this.segment + 1;
      const path = join(this.dir, segmentName(next));
      const fd = openSync(path, 'wx');
      try {
        await syncDirectoryAsync(this.dir);
      } catch (err) {
        closeSync(fd);
        unlinkSync(path); // the next rotation reuses the name
        throw err;
      }
      closeSync(this.fd);
      rotation.closed = this.segment;
      this.fd = fd;
      this.segment = next;
      this.position = 0;
      this.segmentBytes.set(next, 0);
      rotation.done.resolve();
    } catch (err) {
      rotation.done.reject(err);
    }
  }

  // ---- compaction ---------------------------------------------------------------

  private maybeCompact(): void {
    if (this.compacting || this.state !== 'open' || this.broken) return;
    const log = this.stats.logBytes;
    if (log < this.compactMinBytes || log < this.stats.snapshotBytes || log < this.compactRetryAt) return;
    this.compacting = this.compact().then(
      (finished) => {
        if (finished) this.stats.compactions++;
      },
      (err: unknown) => {
        const failure = err instanceof StoreError ? err : describeFailure(this.dir, 'compaction', err);
        this.stats.compactionErrors++;
        this.compactRetryAt = this.stats.logBytes + this.compactMinBytes;
        this.report(failure);
      },
    ).finally(() => {
      this.compacting = undefined;
    });
  }

  /** Resolves true once the new snapshot replaced the old files, false when close() stopped it. */
  private async compact(): Promise<boolean> {
    this.rewritten = new Set();
    this.rewriteFailed = false;
    try {
      return await this.writeSnapshot();
    } finally {
      this.rewritten = undefined;
    }
  }

  private async writeSnapshot(): Promise<boolean> {
    const rewritten = this.rewritten!;
    // 1. Close the active segment: the snapshot will stand for it and everything before.
    //    Every write from here on lands in a later segment (rotation comes before the next batch).
    const rotation = { done: deferred(), closed: -1 };
    this.rotation = rotation;
    this.scheduleFlush();
    await rotation.done.promise;
    const through = rotation.closed;

    // 2. Write memory as it is now, except topics rewritten since step 1 (their records follow the
    //    snapshot). Writes arriving meanwhile are replayed after the snapshot, so a value newer
    //    than segment `through` is harmless.
    const tmp = join(this.dir, `${snapshotName(through)}.tmp`);
    const handle = await openAsync(tmp, 'wx');
    let written = 0;
    try {
      let chunk: Buffer[] = [];
      let chunkBytes = 0;
      const flushChunk = async (): Promise<void> => {
        const buf = Buffer.concat(chunk, chunkBytes);
        chunk = [];
        chunkBytes = 0;
        let done = 0;
        while (done < buf.length) {
          const n = await this.io.write(handle.fd, buf, done, buf.length - done, written + done);
          if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
          done += n;
        }
        written += buf.length;
      };
      for (const topic of this.topics) {
        if (this.compactAbort) throw new StoreError('compaction stopped by close', undefined);
        if (rewritten.has(topic)) continue;
        const message = this.memory.get(topic);
        if (!message) continue;
        const record = encodeRecord(message);
        chunk.push(record);
        chunkBytes += record.length;
        if (chunkBytes >= DEFAULTS.snapshotChunkBytes) await flushChunk();
      }
      if (chunkBytes > 0) await flushChunk();
      await this.io.fdatasync(handle.fd);
      // The topics left out must be on disk in the new segment before the old files go.
      await (this.batch ?? this.inFlight)?.promise.catch(function failureSeenByRewriteFailed() {});
      if (this.rewriteFailed) throw new StoreError(`retained store in ${this.dir}: compaction dropped: a write failed while it ran`, undefined);
    } catch (err) {
      await handle.close();
      await unlink(tmp);
      if (this.compactAbort) return false;
      throw err;
    }
    await handle.close();

    // 3. Publish the snapshot atomically, then drop what it replaces.
    await rename(tmp, join(this.dir, snapshotName(through)));
    await syncDirectoryAsync(this.dir);
    const previous = this.snapshot;
    this.snapshot = through;
    this.stats.snapshotBytes = written;
    if (previous >= 0) await unlink(join(this.dir, snapshotName(previous)));
    for (const [n, bytes] of this.segmentBytes) {
      if (n > through) continue;
      await unlink(join(this.dir, segmentName(n)));
      this.segmentBytes.delete(n);
      this.stats.logBytes -= bytes;
    }
    return true;
  }
}
