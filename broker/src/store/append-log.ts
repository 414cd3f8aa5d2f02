/**
 * The crash-safe file engine under the persistent stores (broker/STORAGE.md): an append-only
 * log of framed records (store/record.ts) with group commit, torn-tail recovery and compaction
 * into snapshots. It knows nothing about what the records mean: its owner (the retained store,
 * the MQTT session store) decodes them on load and lists its live state as records for a
 * snapshot. The owner keeps its state in memory and serves every read from there.
 *
 * Files in the directory:
 *   snapshot-<N>.tcs  the owner's whole state as of the end of segment N (written whole, synced, renamed),
 *                     between a header mark and an end mark holding its record count, size and CRC32
 *   log-<M>.tcl       records appended after the snapshot, M > N, replayed in order on top of it; the first
 *                     record is a header mark naming M and the size segment M-1 had when M began
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
 * - Start-up = newest snapshot + later segments in order, every record checked (store/scan.ts). A bad
 *   stretch at the very end of the newest segment with nothing intact after it is a torn write: cut
 *   off and reported. Anything else is damage (a bad record elsewhere; a snapshot whose header or end
 *   mark is missing or disagrees; a segment missing from the chain or shorter than its successor's
 *   header says): DataCorruptionError before anything changes on disk, or with `recoverInto` the
 *   intact records become a new snapshot and every old file moves into that quarantine directory.
 * - Replaying records must be last-write-wins per key (every record states a key's whole value,
 *   or deletes it): compaction rotates the segment, then snapshots memory in slices while live
 *   writes land in the new segment and are replayed after the snapshot. The snapshot replaces the
 *   old files only once every write made meanwhile is durable, and not at all if one of them failed.
 * Cost: one write + fdatasync per batch off the JS thread; compaction rewrites live data once the
 * log outgrows the snapshot (≤ 2-3× write amplification).
 */
import {
  closeSync, existsSync, fdatasync, fsyncSync, ftruncate, ftruncateSync, mkdirSync, openSync, readdirSync, readSync, renameSync,
  unlinkSync, write, writeFileSync, writeSync, type PathLike,
} from 'node:fs';
import { BrokerError } from '../core/errors.js';
import { crc32 } from './crc32.js';
import { open as openAsync, rename, unlink } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { lockDirectory } from './lock.js';
import { encodeFileMark, readFrameAt, RECORD_HEADER_BYTES } from './record.js';
import { scanFile, type FileScan } from './scan.js';

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
  /**
   * --data-recover: when the files are damaged (anything but a torn tail), move them into this
   * directory, load what is intact and keep it as a new snapshot. Unset: damage throws DataCorruptionError.
   */
  recoverInto?: string;
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
  /**
   * A recovery wrote the intact records as a new snapshot: records to end it with (the history
   * store closes it with its snapshot-end record, so the next start reads it as a whole snapshot).
   */
  recoveredTail?(): Buffer[];
}

const DEFAULTS = {
  compactMinBytes: 16 * 1024 * 1024, // small enough to bound restart replay, large enough that compaction is rare
  snapshotChunkBytes: 64 * 1024, // snapshot written in 64 KiB writes (≈ 1-2 ms of encoding each), live traffic runs between them
  readChunkBytes: 4 * 1024 * 1024, // start-up reads; a record larger than this gets its own buffer
} as const;

/** A write or open failure of a persistent store, with the errno code when the OS gave one. */
export class StoreError extends BrokerError {
  override readonly name: string = 'StoreError';
  constructor(message: string, readonly code: string | undefined, options?: { cause?: unknown }, kind: 'store' | 'data-corruption' = 'store') {
    super(kind, message, options);
  }
}

/**
 * Start-up found a damaged store (anything but a torn tail, broker/STORAGE.md "Damage"): one line
 * naming the file and the byte offset. The broker refuses to start with it unless --data-recover.
 */
export class DataCorruptionError extends StoreError {
  constructor(readonly label: string, readonly file: string, readonly offset: number, readonly reason: string) {
    super(`${label}: ${file} is damaged at byte ${offset}: ${reason}`, 'EDATACORRUPT', undefined, 'data-corruption');
  }
}

/** One damage found on load. */
export interface DamageInfo {
  /** File name inside the store directory (a missing segment is named too). */
  file: string;
  offset: number;
  reason: string;
  /** Bytes of records known lost (0 where it cannot be known, e.g. a whole missing segment). */
  lostBytes: number;
}

/** What start-up found besides intact records. */
export interface LoadReport {
  /** A torn write at the end of the newest segment, cut off. */
  torn?: { file: string; offset: number; bytes: number };
  /** --data-recover ran: the damage, the old files moved into `quarantine`, the bytes of records lost. */
  recovered?: { quarantine: string; moved: string[]; damage: DamageInfo[]; lostBytes: number };
}

/** Damage found while loading: thrown at once (DataCorruptionError), or collected when recovering. */
class DamageList {
  readonly list: DamageInfo[] = [];
  lostBytes = 0;
  constructor(private readonly log: { dir: string; label: string }, private readonly recovering: boolean) {}

  get found(): boolean {
    return this.list.length > 0;
  }

  add(file: string, offset: number, reason: string, lostBytes: number): void {
    if (!this.recovering) throw new DataCorruptionError(this.log.label, join(this.log.dir, file), offset, reason);
    this.list.push({ file, offset, reason, lostBytes });
    this.lostBytes += lostBytes;
  }
}

/** Framed records in `buf` (an owner may yield several in one buffer). */
function countRecords(buf: Buffer): number {
  let n = 0;
  for (let at = 0; at + RECORD_HEADER_BYTES <= buf.length; at += RECORD_HEADER_BYTES + buf.readUInt32LE(at)) n++;
  return n;
}

/** Whether the segment at `path` starts with its header mark (a file written by this version). */
function segmentHasHeader(path: string): boolean {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(64);
    const n = readSync(fd, buf, 0, 64, 0);
    const end = readFrameAt(buf.subarray(0, n), 0);
    return typeof end === 'number' && buf[RECORD_HEADER_BYTES + 1] === 0;
  } finally {
    closeSync(fd);
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
    throw err instanceof DataCorruptionError ? err : describeFailure(label, abs, 'open', err);
  }
}

export class AppendLog {
  readonly stats: LogStoreStats = {
    writes: 0, batches: 0, writeErrors: 0, compactions: 0, compactionErrors: 0,
    snapshotBytes: 0, logBytes: 0, loadMs: 0, truncatedBytes: 0,
  };

  /** @internal What start-up found (see `report`). */
  readonly found: LoadReport = {};
  private readonly recoverInto: string | undefined;
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
    this.recoverInto = options.recoverInto;
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
    // An unfinished snapshot of a compaction that stopped before its rename: never part of the state.
    for (const n of names) if (n.endsWith('.tmp')) unlinkSync(join(dir, n));
    // Leftovers of a compaction that stopped between its rename and its cleanup: removed once the load succeeded.
    const leftovers = [...snapshots.filter((n) => n < snapshot).map(snapshotName), ...segments.filter((n) => n <= snapshot).map(segmentName)];
    const live = segments.filter((n) => n > snapshot);
    const damage = new DamageList(log, options.recoverInto !== undefined);
    const read: { name: string; scan: FileScan }[] = [];
    const scanOptions = {
      apply: (buf: Buffer, start: number, end: number) => owner.loadRecord(buf, start, end),
      checksum: false,
      readChunkBytes: DEFAULTS.readChunkBytes,
    };

    if (snapshot >= 0) {
      const name = snapshotName(snapshot);
      const scan = scanFile(join(dir, name), { ...scanOptions, checksum: true });
      read.push({ name, scan });
      for (const d of scan.damage) damage.add(name, d.start, d.reason, d.end - d.start);
      if (scan.damage.length === 0) {
        const header = scan.header;
        if (scan.size === 0 || scan.legacy) {
          // Written before file marks existed (record checks only); an empty one only where no segment has marks either.
          if (scan.size === 0 && live.length > 0 && segmentHasHeader(join(dir, segmentName(live[0]!)))) damage.add(name, 0, 'the snapshot is empty', 0);
        } else if (header?.kind !== 'snapshot' || header.number !== snapshot) {
          damage.add(name, 0, `the snapshot's header names ${header?.kind ?? 'nothing'} ${header && 'number' in header ? header.number : ''}`.trim(), 0);
        } else if (scan.end === undefined) {
          damage.add(name, scan.size, 'the snapshot has no end mark: the file was cut short', 0);
        } else if (scan.end.mark.bytes !== scan.end.at || scan.end.mark.records !== scan.records || scan.end.mark.crc !== scan.crc) {
          damage.add(name, scan.end.at, `the snapshot's checksum or size does not match its end mark (${scan.records} of ${scan.end.mark.records} records)`, 0);
        }
      }
      log.snapshot = snapshot;
      log.stats.snapshotBytes = scan.size;
    }

    let last = snapshot;
    let expected = snapshot + 1;
    const sizes = new Map<number, number>();
    for (let i = 0; i < live.length; i++) {
      const n = live[i]!;
      const name = segmentName(n);
      const path = join(dir, name);
      const isLast = i === live.length - 1;
      const scan = scanFile(path, scanOptions);
      read.push({ name, scan });
      const header = scan.header?.kind === 'segment' ? scan.header : undefined;
      if (header !== undefined) {
        // The chain: every segment after the snapshot is there, whole.
        if (header.number !== n) damage.add(name, 0, `the segment's header names segment ${header.number}`, 0);
        if (n > expected) {
          const known = n - 1 === expected && header.previousBytes >= 0 ? header.previousBytes : 0;
          const what = n - 1 === expected ? `${segmentName(expected)} is missing` : `${segmentName(expected)} to ${segmentName(n - 1)} are missing`;
          damage.add(segmentName(expected), 0, `${what}: ${name} follows it, and ${snapshot >= 0 ? `${snapshotName(snapshot)} covers segments up to ${snapshot} only` : 'no snapshot covers it'}`, known);
        }
        const previous = sizes.get(n - 1);
        if (previous !== undefined && header.previousBytes >= 0 && previous !== header.previousBytes) {
          damage.add(segmentName(n - 1), previous, `the segment is ${previous} bytes, but was ${header.previousBytes} when ${name} began: cut short`, Math.max(0, header.previousBytes - previous));
        }
      } else if (!scan.legacy && scan.size > 0 && scan.damage[0]?.start !== 0) {
        damage.add(name, 0, 'the segment has no header', 0);
      }
      for (const d of scan.damage) {
        if (isLast && d.end === scan.size) {
          // A torn write: a crash in the middle of an append. Nothing after it was acknowledged.
          log.cutTornTail(path, name, d.start, scan.size);
          scan.size = d.start;
        } else damage.add(name, d.start, d.reason, d.end - d.start);
      }
      const onlyHeader = scan.records === 0 && scan.damage.length === 0 && (scan.size === 0 || header !== undefined);
      if (isLast && (onlyHeader || scan.size === 0)) {
        unlinkSync(path); // a restart without writes (or a crash right after the segment was created) leaves it behind
        break;
      }
      sizes.set(n, scan.size);
      log.segmentBytes.set(n, scan.size);
      log.stats.logBytes += scan.size;
      last = n;
      expected = n + 1;
    }

    if (damage.found) {
      log.recover(read, Math.max(snapshot, segments.at(-1) ?? -1) + 1, damage, leftovers);
      last = log.snapshot;
    } else {
      for (const name of leftovers) unlinkSync(join(dir, name));
    }
    // Always append to a fresh segment: the old ones are never reopened for writing.
    log.segment = last + 1;
    log.fd = log.startSegment(log.segment, last > log.snapshot ? (log.segmentBytes.get(last) ?? -1) : -1);
    syncDirectory(dir);
    log.stats.loadMs = performance.now() - started;
    log.maybeCompact();
    return log;
  }

  /** Creates segment `n` with its header mark; returns its fd. The header is made durable by the segment's first fdatasync. */
  private startSegment(n: number, previousBytes: number): number {
    const path = join(this.dir, segmentName(n));
    const fd = openSync(path, 'wx');
    const header = encodeFileMark({ kind: 'segment', number: n, previousBytes });
    try {
      let done = 0;
      while (done < header.length) done += writeSync(fd, header, done, header.length - done, done);
    } catch (err) {
      closeSync(fd);
      unlinkSync(path);
      throw err;
    }
    this.position = header.length;
    this.writePosition = header.length;
    this.segmentBytes.set(n, header.length);
    this.stats.logBytes += header.length;
    return fd;
  }

  private cutTornTail(path: string, name: string, offset: number, size: number): void {
    const fd = openSync(path, 'r+');
    try {
      ftruncateSync(fd, offset);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    this.stats.truncatedBytes += size - offset;
    this.found.torn = { file: join(this.dir, name), offset, bytes: size - offset };
  }

  /**
   * --data-recover with damage found: the owner holds everything intact. Writes it as a new
   * snapshot (the intact records, in the order they were read), then moves every old file into the
   * quarantine directory, untouched, with a DAMAGE.txt listing what was found.
   */
  private recover(read: { name: string; scan: FileScan }[], through: number, damage: DamageList, leftovers: string[]): void {
    const quarantine = this.recoverInto!;
    const name = snapshotName(through);
    const tmp = join(this.dir, `${name}.tmp`);
    const out = openSync(tmp, 'wx');
    let written = 0;
    let crc = 0;
    let records = 0;
    const put = (buf: Buffer): void => {
      let done = 0;
      while (done < buf.length) done += writeSync(out, buf, done, buf.length - done, written + done);
      crc = crc32(buf, crc);
      written += buf.length;
    };
    try {
      put(encodeFileMark({ kind: 'snapshot', number: through }));
      for (const { name: file, scan } of read) {
        records += scan.records;
        if (scan.good.length === 0) continue;
        const fd = openSync(join(this.dir, file), 'r');
        try {
          for (const [start, end] of scan.good) {
            for (let at = start; at < end;) {
              const chunk = Buffer.allocUnsafe(Math.min(DEFAULTS.readChunkBytes, end - at));
              let filled = 0;
              while (filled < chunk.length) {
                const n = readSync(fd, chunk, filled, chunk.length - filled, at + filled);
                if (n === 0) throw new Error(`${file} changed while it was being recovered`);
                filled += n;
              }
              put(chunk);
              at += chunk.length;
            }
          }
        } finally {
          closeSync(fd);
        }
      }
      for (const record of this.owner.recoveredTail?.() ?? []) {
        put(record);
        records++;
      }
      put(encodeFileMark({ kind: 'snapshot-end', records, bytes: written, crc }));
      fsyncSync(out);
    } catch (err) {
      closeSync(out);
      unlinkSync(tmp);
      throw err;
    }
    closeSync(out);
    // The new snapshot first: a crash from here on finds it and everything older superseded.
    renameSync(tmp, join(this.dir, name));
    syncDirectory(this.dir);
    mkdirSync(quarantine, { recursive: true });
    const moved: string[] = [];
    for (const file of [...leftovers, ...read.map((r) => r.name)]) {
      if (!existsSync(join(this.dir, file))) continue;
      renameSync(join(this.dir, file), join(quarantine, file));
      moved.push(file);
    }
    writeFileSync(join(quarantine, 'DAMAGE.txt'), `${damage.list.map((d) => `${d.file} at byte ${d.offset}: ${d.reason} (${d.lostBytes} bytes lost)`).join('\n')}\n`);
    syncDirectory(quarantine);
    syncDirectory(this.dir);
    for (const n of [...this.segmentBytes.keys()]) this.segmentBytes.delete(n);
    this.stats.logBytes = 0;
    this.snapshot = through;
    this.stats.snapshotBytes = written;
    this.found.recovered = { quarantine, moved, damage: damage.list, lostBytes: damage.lostBytes };
  }

  /** What start-up found besides intact records: a torn tail cut off, a recovery. */
  get loadReport(): LoadReport {
    return this.found;
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
      const fd = this.startSegment(next, this.writePosition);
      this.retired.push(this.fd);
      this.directoryDirty = true;
      rotation.closed = this.segment;
      this.fd = fd;
      this.segment = next;
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
      const closing = { position: this.position, logBytes: this.stats.logBytes };
      const fd = this.startSegment(next, this.position);
      try {
        await syncDirectoryAsync(this.dir);
      } catch (err) {
        closeSync(fd);
        unlinkSync(path); // the next rotation reuses the name
        this.segmentBytes.delete(next);
        this.position = closing.position;
        this.writePosition = closing.position;
        this.stats.logBytes = closing.logBytes;
        throw err;
      }
      closeSync(this.fd);
      rotation.closed = this.segment;
      this.fd = fd;
      this.segment = next;
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
      // Header mark, the owner's records, end mark (records, bytes and CRC32 of everything before it).
      let chunk: Buffer[] = [encodeFileMark({ kind: 'snapshot', number: through })];
      let chunkBytes = chunk[0]!.length;
      let crc = 0;
      let records = 0;
      const take = (): Buffer => {
        const buf = Buffer.concat(chunk, chunkBytes);
        chunk = [];
        chunkBytes = 0;
        crc = crc32(buf, crc);
        return buf;
      };
      const writeOut = async (buf: Buffer): Promise<void> => {
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
        records += countRecords(record);
        if (chunkBytes >= DEFAULTS.snapshotChunkBytes) await writeOut(take());
      }
      if (this.compactAbort) throw new StoreError('compaction stopped by close', undefined);
      const rest = take();
      await writeOut(Buffer.concat([rest, encodeFileMark({ kind: 'snapshot-end', records, bytes: written + rest.length, crc })]));
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
