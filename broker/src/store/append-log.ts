/**
 * The crash-safe file engine under the persistent stores (broker/STORAGE.md): an append-only
 * log of framed records (store/record.ts) with group commit, torn-tail recovery and compaction
 * into snapshots. It knows nothing about what the records mean: its owner (the retained store,
 * the MQTT session store) decodes them on load and lists its live state as records for a
 * snapshot. The owner keeps its state in memory and serves every read from there.
 *
 * Files in the directory:
 *   snapshot-<N>.tcs  the owner's whole state as of the end of segment N (written whole, synced, renamed)
 *   log-<M>.tcl       records appended after the snapshot, M > N, replayed in order on top of it
 *   LOCK              the owning process (store/lock.ts)
 *
 * Invariants
 * - A promise from `append` resolves only after its record and every earlier one are on disk.
 * - Records of one event-loop turn form one batch: one write + one fdatasync (group commit). While
 *   a batch is being synced the next one gathers, so under load each fsync carries more writes.
 * - The log never holds a gap: a failed write is truncated away before the next batch.
 * - With `eagerWrites` (the history store) a batch reaches the kernel (one synchronous write,
 *   page cache) at the end of its turn, or earlier through `writePending()`, so its records
 *   survive a process crash before anything that follows them leaves the process; fdatasync
 *   stays off the JS thread and grouped: one covers every batch written while the previous ran.
 *   A failed fdatasync cuts every batch written since the last good one (all rejected).
 * - Start-up = newest snapshot + later segments in order; a torn or corrupt tail is cut off.
 * - Replaying records must be last-write-wins per key (every record states a key's whole value,
 *   or deletes it): compaction rotates the segment, then snapshots memory in slices while live
 *   writes land in the new segment and are replayed after the snapshot. The snapshot replaces the
 *   old files only once every write made meanwhile is durable, and not at all if one of them failed.
 * Cost: one write + fdatasync per batch off the JS thread; compaction rewrites live data once the
 * log outgrows the snapshot (≤ 2-3× write amplification).
 */
import {
  closeSync, fdatasync, fstatSync, fsyncSync, ftruncate, ftruncateSync, mkdirSync, openSync, readdirSync, readSync,
  unlinkSync, write, writeSync, type PathLike,
} from 'node:fs';
import { open as openAsync, rename, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { lockDirectory } from './lock.js';
import { readFrameAt, RECORD_HEADER_BYTES } from './record.js';

/** Writes and syncs log appends and snapshots; replaceable so tests can inject disk failures and delays. */
export interface AppendIo {
  /** Writes up to `length` bytes of `buf` from `offset` at file `position`; resolves with the bytes written. */
  write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number>;
  fdatasync(fd: number): Promise<void>;
  ftruncate(fd: number, length: number): Promise<void>;
  /** The synchronous write of `eagerWrites` (default node:fs writeSync): bytes written, throws on failure. */
  writeSync?(fd: number, buf: Buffer, offset: number, length: number, position: number): number;
}

export const nodeAppendIo: AppendIo = {
  write: (fd, buf, offset, length, position) =>
    new Promise((ok, fail) => write(fd, buf, offset, length, position, (err, n) => (err ? fail(err) : ok(n)))),
  fdatasync: (fd) => new Promise((ok, fail) => fdatasync(fd, (err) => (err ? fail(err) : ok()))),
  ftruncate: (fd, length) => new Promise((ok, fail) => ftruncate(fd, length, (err) => (err ? fail(err) : ok()))),
  writeSync: (fd, buf, offset, length, position) => writeSync(fd, buf, offset, length, position),
};

export interface AppendLogOptions {
  /** Compaction starts once the log since the last snapshot exceeds both this and the snapshot's size. */
  compactMinBytes?: number;
  /** Called with every write or compaction failure (the broker logs it); failures are also counted in `stats`. */
  onError?: (err: StoreError) => void;
  /** File operations for appends and snapshots (default: node:fs); tests inject ENOSPC and delays here. */
  io?: AppendIo;
  /**
   * Write each batch synchronously (page cache) at the end of its turn, or when the owner calls
   * `writePending()`; only fdatasync runs off the JS thread. For a store whose records are
   * delivered before they are durable (history offsets): a process crash then loses none of them.
   */
  eagerWrites?: boolean;
}

/** What the engine needs from the store that owns the records. */
export interface AppendLogOwner {
  /** Applies one record body found on load (`buf[start..end)`); false when it does not decode (treated as a corrupt tail). */
  loadRecord(buf: Buffer, start: number, end: number): boolean;
  /**
   * The owner's whole state as framed records, for a snapshot. Iterated in slices with live
   * writes running in between, so it must tolerate changes while it runs (e.g. walk a Set).
   */
  snapshotRecords(): Iterable<Buffer>;
  /**
   * False while the owner cannot list its whole state yet (the session store until the MQTT server
   * has rebuilt the loaded sessions): no compaction starts then; the next batch tries again.
   */
  canCompact?(): boolean;
  /** A compaction starts (before its rotation) / ended; the retained store tracks rewritten topics between them. */
  compactionStarted?(): void;
  compactionEnded?(): void;
}

const DEFAULTS = {
  compactMinBytes: 16 * 1024 * 1024, // small enough to bound restart replay, large enough that compaction is rare
  snapshotChunkBytes: 64 * 1024, // snapshot written in 64 KiB writes (≈ 1-2 ms of encoding each), live traffic runs between them
  readChunkBytes: 4 * 1024 * 1024, // start-up reads; a record larger than this gets its own buffer
} as const;

/** A write or open failure of a persistent store, with the errno code when the OS gave one. */
export class StoreError extends Error {
  override readonly name = 'StoreError';
  constructor(message: string, readonly code: string | undefined, options?: { cause?: unknown }) {
    super(message, options);
  }
}

export interface LogStoreStats {
  /** Records appended. */
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

export interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(err: unknown): void;
}

export function deferred(): Deferred {
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

/** A promise already rejected with `err` (its rejection is reported by the store, never unhandled). */
export function rejected(err: StoreError): Promise<void> {
  const d = deferred();
  d.reject(err);
  return d.promise;
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

/** One line naming the store, its directory, the operation and the cause, e.g. "… append failed: no space left on device (ENOSPC)". */
export function describeFailure(label: string, dir: string, what: string, err: unknown): StoreError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const why = code === 'ENOSPC' ? 'no space left on device (ENOSPC)'
    : code === 'EDQUOT' ? 'disk quota exceeded (EDQUOT)'
    : err instanceof Error ? err.message // Node's messages start with the code: "EACCES: permission denied, mkdir '…'"
    : String(err);
  return new StoreError(`${label} in ${dir}: ${what} failed: ${why}`, code, { cause: err });
}

/**
 * Opens (creating if needed) the log in `dir` for `owner`, replaying every record into it.
 * `label` names the store in errors ("retained store", "session store").
 */
export function openAppendLog(dir: string, label: string, owner: AppendLogOwner, options: AppendLogOptions = {}): AppendLog {
  const abs = resolve(dir);
  let release: (() => void) | undefined;
  try {
    mkdirSync(abs, { recursive: true });
    release = lockDirectory(abs);
    return AppendLog.load(abs, label, release, owner, options);
  } catch (err) {
    release?.();
    // Start-up fails with one line naming the directory and the cause (e.g. EACCES, or the lock owner).
    throw describeFailure(label, abs, 'open', err);
  }
}

export class AppendLog {
  readonly stats: LogStoreStats = {
    writes: 0, batches: 0, writeErrors: 0, compactions: 0, compactionErrors: 0,
    snapshotBytes: 0, logBytes: 0, loadMs: 0, truncatedBytes: 0,
  };

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
  /** The batch being written, so `synced()` can wait for it. */
  private inFlight: Deferred | undefined;
  private rotation: { done: Deferred; closed: number } | undefined;
  private flushing: Promise<void> | undefined;
  private flushScheduled = false;
  /** Set when a failed write could not be truncated away: the log cannot be trusted for appends. */
  private broken: StoreError | undefined;

  private compacting: Promise<void> | undefined;
  /** A write failed while a compaction ran: a record it relies on (after its rotation) may not be on disk. */
  private failedDuringCompaction = false;
  private closing: Promise<void> | undefined;
  private compactAbort = false;
  /** After a failed compaction, the log size at which to try again (avoids retrying on every batch). */
  private compactRetryAt = 0;

  // eagerWrites only: batches written (page cache) and waiting for the grouped fdatasync, the end of
  // what is written in the active segment, closed segments' fds still to sync, a new segment's directory entry to sync.
  private readonly eager: boolean;
  private written: Deferred[] = [];
  private writePosition = 0;
  private retired: number[] = [];
  private directoryDirty = false;
  private writeScheduled = false;
  private lastBatch: Deferred | undefined;
  private readonly writeAtTurnEnd = (): void => {
    this.writeScheduled = false;
    this.writePending();
  };

  private readonly compactMinBytes: number;
  private readonly io: AppendIo;
  private readonly onError: (err: StoreError) => void;
  private readonly flushNow = (): void => {
    this.flushScheduled = false;
    this.startDrain();
  };

  private constructor(
    readonly dir: string,
    readonly label: string,
    private readonly release: () => void,
    private readonly owner: AppendLogOwner,
    options: AppendLogOptions,
  ) {
    this.compactMinBytes = options.compactMinBytes ?? DEFAULTS.compactMinBytes;
    this.io = options.io ?? nodeAppendIo;
    this.eager = options.eagerWrites === true;
    this.onError = options.onError ?? function unreportedStoreError() {};
  }

  /** @internal Loads the directory; use openAppendLog. */
  static load(dir: string, label: string, release: () => void, owner: AppendLogOwner, options: AppendLogOptions): AppendLog {
    const log = new AppendLog(dir, label, release, owner, options);
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

    if (snapshot >= 0) {
      log.snapshot = snapshot;
      log.stats.snapshotBytes = log.loadFile(join(dir, snapshotName(snapshot)));
    }
    let last = snapshot;
    for (const n of segments) {
      if (n <= snapshot) continue;
      const bytes = log.loadFile(join(dir, segmentName(n)));
      if (bytes === 0) {
        unlinkSync(join(dir, segmentName(n))); // a restart without writes leaves an empty segment behind
        continue;
      }
      log.segmentBytes.set(n, bytes);
      log.stats.logBytes += bytes;
      last = n;
    }
    // Always append to a fresh segment: the old ones are never reopened for writing.
    log.segment = last + 1;
    log.fd = openSync(join(dir, segmentName(log.segment)), 'wx');
    log.segmentBytes.set(log.segment, 0);
    syncDirectory(dir);
    log.stats.loadMs = performance.now() - started;
    log.maybeCompact();
    return log;
  }

  /** 'open' while appends are accepted. */
  get isOpen(): boolean {
    return this.state === 'open';
  }

  /**
   * Appends one framed record with this turn's batch. Resolves when it is durable; rejects with a
   * StoreError when it could not be written (disk full, I/O error, store closed).
   */
  append(record: Buffer): Promise<void> {
    if (this.state !== 'open') return this.refusal();
    this.stats.writes++;
    this.pending.push(record);
    if (this.batch === undefined) {
      this.batch = deferred();
      if (this.eager) {
        this.lastBatch = this.batch;
        if (!this.writeScheduled) {
          this.writeScheduled = true;
          setImmediate(this.writeAtTurnEnd);
        }
      } else this.scheduleFlush();
    }
    return this.batch.promise;
  }

  /** The rejection of a write after close() began. */
  refusal(): Promise<void> {
    return rejected(new StoreError(`${this.label} in ${this.dir} is ${this.state}`, undefined));
  }

  /** Resolves once everything appended so far is durable (rejects if that batch failed). */
  synced(): Promise<void> {
    // Eager: batches settle in order, so the newest one settles last.
    if (this.eager) return this.lastBatch?.promise ?? Promise.resolve();
    return (this.batch ?? this.inFlight)?.promise ?? Promise.resolve();
  }

  /**
   * eagerWrites: writes this turn's batch now, synchronously (one write syscall into the page
   * cache), and queues it for the grouped fdatasync. Returns the failure when the write failed
   * (the batch's promise rejects with it too), so the owner can record it before anything is sent.
   * Nothing pending: returns at once (one check).
   */
  writePending(): StoreError | undefined {
    const batch = this.batch;
    if (batch === undefined || !this.eager) return undefined;
    const records = this.pending;
    this.batch = undefined;
    this.pending = [];
    const buf = records.length === 1 ? records[0]! : Buffer.concat(records);
    const fd = this.fd;
    try {
      if (this.broken) throw this.broken;
      const writeNow = this.io.writeSync ?? writeSync;
      let done = 0;
      while (done < buf.length) {
        const n = writeNow(fd, buf, done, buf.length - done, this.writePosition + done);
        if (n <= 0) throw Object.assign(new Error('write made no progress'), { code: 'EIO' });
        done += n;
      }
    } catch (err) {
      const failure = err instanceof StoreError ? err : describeFailure(this.label, this.dir, 'append', err);
      if (failure !== this.broken) {
        // Cut the partial write off so the next batch starts on a record boundary.
        try {
          ftruncateSync(fd, this.writePosition);
        } catch (truncateErr) {
          this.broken = describeFailure(this.label, this.dir, `truncating after "${failure.message}"`, truncateErr);
        }
      }
      this.stats.writeErrors++;
      if (this.compacting) this.failedDuringCompaction = true;
      this.report(failure);
      batch.reject(failure);
      return failure;
    }
    this.writePosition += buf.length;
    this.stats.logBytes += buf.length;
    this.segmentBytes.set(this.segment, this.writePosition);
    this.written.push(batch);
    this.startDrain();
    return undefined;
  }

  /**
   * Stops accepting writes, stops a running compaction, writes and syncs what is pending,
   * closes the files and releases the directory. Resolves once everything appended is on disk; idempotent.
   */
  close(): Promise<void> {
    return (this.closing ??= this.shutDown());
  }

  private async shutDown(): Promise<void> {
    this.state = 'closing';
    this.compactAbort = true;
    await this.compacting;
    if (this.eager) this.writePending();
    else if (this.batch) this.startDrain();
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
      process.emitWarning(`${this.label} onError threw: ${String(err)} while reporting: ${failure.message}`);
    }
  }

  // ---- start-up ---------------------------------------------------------------

  /** Applies every intact record of `path` in order, truncates a torn tail; returns the intact length. */
  private loadFile(path: string): number {
    const owner = this.owner;
    const fd = openSync(path, 'r+');
    try {
      const size = fstatSync(fd).size;
      let buf = Buffer.alloc(0);
      let bufStart = 0; // file offset of buf[0]
      let pos = 0;
      let readTo = 0;
      for (;;) {
        const r = readFrameAt(buf, pos);
        if (typeof r === 'number') {
          if (!owner.loadRecord(buf, pos + RECORD_HEADER_BYTES, r)) break; // a CRC-valid body that does not decode: corrupt
          pos = r;
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
    if (this.eager) {
      this.flushing = this.syncWritten().finally(() => {
        this.flushing = undefined;
        if (this.written.length > 0 || this.retired.length > 0) this.startDrain();
        else this.maybeCompact();
      });
      return;
    }
    this.flushing = this.drain().finally(() => {
      this.flushing = undefined;
      // A write may have arrived between the loop's last check and here.
      if (this.batch || this.rotation) this.scheduleFlush();
      else this.maybeCompact();
    });
  }

  /**
   * eagerWrites: fdatasyncs what is written, one round at a time; a round covers every batch
   * written before it started (group commit). Never rejects.
   */
  private async syncWritten(): Promise<void> {
    while (this.written.length > 0 || this.retired.length > 0) {
      const waiters = this.written;
      const retired = this.retired;
      const directoryDirty = this.directoryDirty;
      this.written = [];
      this.retired = [];
      this.directoryDirty = false;
      const fd = this.fd;
      const segment = this.segment;
      const through = this.writePosition;
      try {
        try {
          for (const old of retired) await this.io.fdatasync(old);
        } finally {
          for (const old of retired) closeSync(old);
        }
        if (directoryDirty) await syncDirectoryAsync(this.dir);
        if (waiters.length > 0) await this.io.fdatasync(fd);
        if (segment === this.segment) this.position = through;
        this.stats.batches++;
        for (const w of waiters) w.resolve();
        this.maybeCompact(); // here too: under sustained writes this loop never ends
      } catch (err) {
        const failure = describeFailure(this.label, this.dir, 'append', err);
        this.stats.writeErrors++;
        if (this.compacting) this.failedDuringCompaction = true;
        this.report(failure);
        // What was written since the last good fdatasync may not be on disk: cut it off (with the
        // batches written meanwhile, same segment) so the log holds no gap. Rejected first, and their
        // failure handlers run (the history store records the offsets as lost) before the records
        // leave the file: a crash in between never leaves a delivered offset missing unrecorded.
        const cuttable = retired.length === 0 && segment === this.segment;
        const cut = cuttable ? this.written : [];
        if (cuttable) this.written = [];
        for (const w of waiters) w.reject(failure);
        for (const w of cut) w.reject(failure);
        await Promise.resolve();
        if (cuttable) {
          try {
            ftruncateSync(fd, this.position);
            this.stats.logBytes -= this.writePosition - this.position;
            this.writePosition = this.position;
            this.segmentBytes.set(segment, this.position);
          } catch (truncateErr) {
            this.broken = describeFailure(this.label, this.dir, `truncating after "${failure.message}"`, truncateErr);
          }
        } else {
          // Across a segment rotation the cut is not one truncation: stop appending rather than risk a gap.
          this.broken = failure;
        }
      }
    }
  }

  /** eagerWrites: starts the next segment now; the old one's fd is synced and closed by syncWritten. */
  private rotateNow(rotation: { done: Deferred; closed: number }): void {
    this.rotation = undefined;
    try {
      const next = this.segment + 1;
      const fd = openSync(join(this.dir, segmentName(next)), 'wx');
      this.retired.push(this.fd);
      this.directoryDirty = true;
      rotation.closed = this.segment;
      this.fd = fd;
      this.segment = next;
      this.position = 0;
      this.writePosition = 0;
      this.segmentBytes.set(next, 0);
      rotation.done.resolve();
      this.startDrain();
    } catch (err) {
      rotation.done.reject(err);
    }
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
        await this.appendBuffer(records.length === 1 ? records[0]! : Buffer.concat(records));
        this.stats.batches++;
        batch.resolve();
        this.maybeCompact(); // here too: under sustained writes this loop never ends
      } catch (err) {
        const failure = err instanceof StoreError ? err : describeFailure(this.label, this.dir, 'append', err);
        this.stats.writeErrors++;
        if (this.compacting) this.failedDuringCompaction = true;
        this.report(failure);
        batch.reject(failure);
      } finally {
        this.inFlight = undefined;
      }
    }
  }

  private async appendBuffer(buf: Buffer): Promise<void> {
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
      const failure = describeFailure(this.label, this.dir, 'append', err);
      // Cut the partial batch off so the next batch starts on a record boundary.
      try {
        await this.io.ftruncate(this.fd, this.position);
        await this.io.fdatasync(this.fd);
      } catch (truncateErr) {
        this.broken = describeFailure(this.label, this.dir, `truncating after "${failure.message}"`, truncateErr);
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
    if (this.compacting || this.state !== 'open' || this.broken || this.owner.canCompact?.() === false) return;
    const log = this.stats.logBytes;
    if (log < this.compactMinBytes || log < this.stats.snapshotBytes || log < this.compactRetryAt) return;
    this.compacting = this.compact().then(
      (finished) => {
        if (finished) this.stats.compactions++;
      },
      (err: unknown) => {
        const failure = err instanceof StoreError ? err : describeFailure(this.label, this.dir, 'compaction', err);
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
    this.failedDuringCompaction = false;
    this.owner.compactionStarted?.();
    try {
      return await this.writeSnapshot();
    } finally {
      this.owner.compactionEnded?.();
    }
  }

  private async writeSnapshot(): Promise<boolean> {
    // 1. Close the active segment: the snapshot will stand for it and everything before.
    //    Every write from here on lands in a later segment (rotation comes before the next batch).
    const rotation = { done: deferred(), closed: -1 };
    this.rotation = rotation;
    if (this.eager) this.rotateNow(rotation);
    else this.scheduleFlush();
    await rotation.done.promise;
    const through = rotation.closed;

    // 2. Write the owner's state as it is now. Writes arriving meanwhile are replayed after the
    //    snapshot (last-write-wins), so a value newer than segment `through` is harmless.
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
      for (const record of this.owner.snapshotRecords()) {
        if (this.compactAbort) throw new StoreError('compaction stopped by close', undefined);
        chunk.push(record);
        chunkBytes += record.length;
        if (chunkBytes >= DEFAULTS.snapshotChunkBytes) await flushChunk();
      }
      if (this.compactAbort) throw new StoreError('compaction stopped by close', undefined);
      if (chunkBytes > 0) await flushChunk();
      await this.io.fdatasync(handle.fd);
      // Records the snapshot relies on (written after the rotation) must be on disk before the old files go.
      await this.synced().catch(function failureSeenByFailedDuringCompaction() {});
      if (this.failedDuringCompaction) throw new StoreError(`${this.label} in ${this.dir}: compaction dropped: a write failed while it ran`, undefined);
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
