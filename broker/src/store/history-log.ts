/**
 * The broker's history stream (core/history.ts) as configured: limits from the settings, the
 * epoch, the expiry timer, the metrics, and with `--data` its persistence (PersistentHistory).
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import type { BrokerConfig } from '../config.js';
import { History, type HistoryLimits, type HistorySink } from '../core/history.js';
import type { Message } from '../core/message.js';
import type { Metrics } from '../observe/metrics.js';
import {
  DataCorruptionError, describeFailure, openAppendLog, StoreError, type AppendIo, type AppendLog, type AppendLogOwner, type DamageInfo,
  type LoadReport, type LogStoreStats,
} from './append-log.js';
import { lockDirectory } from './lock.js';
import { frameRecord, recordPackr, unpackBody } from './record.js';

/** A new epoch: 12 random base36 characters (≈ 62 bits), so two streams never share one by chance. */
export function newEpoch(): string {
  const bytes = randomBytes(12);
  let out = '';
  for (const b of bytes) out += (b % 36).toString(36);
  return out;
}

export function historyLimits(config: BrokerConfig): HistoryLimits {
  return {
    patterns: config.historyFilters,
    maxMessagesPerTopic: config.historyMaxMessages,
    maxAgeMs: config.historyMaxAgeSec * 1000,
    maxBytes: config.historyMaxBytes,
    maxTopics: config.historyMaxTopics,
  };
}

export interface OpenedHistory {
  readonly history: History;
  /** The store's counters with `--data` (writes, batches, write errors, ...); undefined in memory. */
  readonly storeStats: LogStoreStats | undefined;
  /** Stops the expiry timer and, when persistent, writes what is pending and closes the files. */
  close(): Promise<void>;
  /**
   * With `--data`: writes the history records of this turn to the kernel now (synchronously).
   * The broker calls it before any frame leaves the process (Flusher.beforeSend), so every offset
   * a client can see is in the file when the process dies. Undefined in memory (nothing to do).
   */
  readonly writePending: (() => void) | undefined;
  /** With `--data`: what start-up found besides intact records (a torn tail; damage recovered). */
  readonly loadReport: LoadReport | undefined;
}

/** Age eviction runs at least this often besides on every append (a quiet broker still forgets old messages). */
const EXPIRE_INTERVAL_MS = 1000;

export interface OpenHistoryOptions {
  /** `--data` directory: history is kept in `<data>/history`. */
  data?: string | undefined;
  /** Wall clock in ms. */
  now?: () => number;
  /** Logs and counts every failed write (the broker's logger). */
  onError?: (err: StoreError) => void;
  /** Start-up notes: a new epoch and why, bytes cut off a torn tail. */
  onInfo?: (fields: Record<string, unknown>, msg: string) => void;
  /** File operations (tests inject ENOSPC here). */
  io?: AppendIo;
  /** This boot of the machine (default: /proc/sys/kernel/random/boot_id; tests inject a "reboot"). */
  bootId?: string | undefined;
  compactMinBytes?: number;
  /**
   * --data-recover: damaged history files move into this directory (the log's under `log/`), what
   * is intact is loaded, and the stream gets a new epoch. Unset: damage throws DataCorruptionError.
   */
  recoverInto?: string;
  /** Start a new epoch even though the history itself is intact, keeping what it holds (another store was recovered). */
  newEpochReason?: string;
}

/**
 * History as configured, or undefined when `historyFilters` is empty (then nothing of it runs).
 * With `data`, the stream is persistent (see PersistentHistory); else it lives in memory and every
 * start is a new epoch.
 */
export async function openHistory(config: BrokerConfig, options: OpenHistoryOptions = {}): Promise<OpenedHistory | undefined> {
  if (config.historyFilters.length === 0) {
    // Messages published now get no offset: a stream kept from an earlier run would no longer be
    // complete, so it must not resume under its old epoch. (The retained store's lock on DIR holds off a second broker.)
    const dir = options.data === undefined ? undefined : join(options.data, 'history');
    if (dir !== undefined && existsSync(dir)) {
      rmSync(dir, { recursive: true, force: true });
      options.onInfo?.({ dir }, 'history: off (historyFilters empty), stored history removed');
    }
    return undefined;
  }
  const now = options.now ?? Date.now;
  const limits = historyLimits(config);
  const persistent = options.data === undefined ? undefined : await PersistentHistory.open(join(options.data, 'history'), limits, now, options);
  const history = persistent?.history ?? new History(newEpoch(), limits, now);
  const timer = setInterval(function expireHistory() {
    history.expire();
  }, EXPIRE_INTERVAL_MS);
  timer.unref();
  return {
    history,
    storeStats: persistent?.stats,
    writePending: persistent?.writePending,
    loadReport: persistent?.loadReport,
    close: async () => {
      clearInterval(timer);
      await persistent?.close();
    },
  };
}

// ---- persistence ------------------------------------------------------------------------------

/**
 * Record bodies of the history log (framed by store/record.ts):
 *   [1, offset, atMs, topic, payload]   a history message; atMs: its publish time (broker receive time, ms)
 *   [3, topic, evictedThrough, evictedAtMs?]   snapshot: a held topic had lost everything up to evictedThrough,
 *                                        the last of it published at evictedAtMs
 *   [2, through, floor, floorAtMs?]     snapshot end: it stands for every offset up to `through`
 *   [4, next]                           the stream continues at `next` (a start-up that skipped offsets)
 * The times of kinds 3 and 2 (history queries, PROTOCOL.md §4.8) were added later as optional last
 * elements: records without them load, with a bound in their place (History.restoreEvicted, lost).
 */
const Kind = { message: 1, snapshotEnd: 2, topicEvicted: 3, continueAt: 4 } as const;

/**
 * Offsets reserved ahead in STREAM: a restart after a crash continues above them, so no offset a
 * client saw is reused. Every delivered offset is in the file after a process crash (writePending),
 * except where a write or fdatasync failed and the process died before STREAM recorded them as
 * lost: the reservation keeps even those from being handed out twice. Cost: one STREAM write per block.
 */
const RESERVE_BLOCK = 1_000_000;

interface StreamFile {
  version: 1;
  epoch: string;
  patterns: string[];
  /** Every offset ever handed out is at most this (written before handing out more). */
  reservedThrough: number;
  /** Offsets up to this may have failed to reach the disk (a failed write): lost for resumes. */
  lostThrough?: number;
  /** The machine's boot id when this run opened the stream: an unclean stop under another boot id was a machine crash. */
  bootId?: string;
  /** True only when written by a clean shutdown (everything synced); every run sets it false first. */
  clean?: boolean;
}

const BOOT_ID_FILE = '/proc/sys/kernel/random/boot_id';

/** The machine's boot id (changes on every boot), or undefined where the OS does not tell it. */
export function readBootId(): string | undefined {
  try {
    return readFileSync(BOOT_ID_FILE, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

const STREAM_FILE = 'STREAM';
const STREAM_MALFORMED = 'stream file malformed';
const LOG_DIR = 'log';

function samePatterns(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((p, i) => p === b[i]);
}

function readStream(dir: string): StreamFile | string {
  let text: string;
  try {
    text = readFileSync(join(dir, STREAM_FILE), 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no stream file' : `stream file unreadable: ${(err as Error).message}`;
  }
  try {
    const v = JSON.parse(text) as Partial<StreamFile>;
    if (v.version !== 1 || typeof v.epoch !== 'string' || v.epoch.length === 0 || !Array.isArray(v.patterns)
      || !Number.isSafeInteger(v.reservedThrough) || v.reservedThrough! < 0
      || (v.lostThrough !== undefined && !Number.isSafeInteger(v.lostThrough))
      || (v.bootId !== undefined && typeof v.bootId !== 'string') || (v.clean !== undefined && typeof v.clean !== 'boolean')) return STREAM_MALFORMED;
    return v as StreamFile;
  } catch {
    return STREAM_MALFORMED;
  }
}

/** Writes STREAM atomically and durably (temporary file, fsync, rename, directory fsync). */
function writeStream(dir: string, stream: StreamFile): void {
  const tmp = join(dir, `${STREAM_FILE}.tmp`);
  const fd = openSync(tmp, 'w');
  try {
    writeFileSync(fd, `${JSON.stringify(stream)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, join(dir, STREAM_FILE));
  const d = openSync(dir, 'r');
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}

/**
 * The history stream kept in `<data>/history` (broker/STORAGE.md "History"):
 *   STREAM   JSON {version, epoch, patterns, reservedThrough, lostThrough?, bootId?, clean}, rewritten atomically
 *   log/     the records, on the shared engine store/append-log.ts (group commit, torn tail, compaction)
 *   LOCK     the owning process
 *
 * Invariants
 * - A message's durable promise resolves once its record and every earlier one are on disk; the
 *   broker acknowledges a publish (native ACK, HTTP 200, MQTT PUBACK) only then.
 * - Every history record reaches the kernel (synchronous write, page cache) before any frame
 *   carrying its offset leaves the process: the broker calls `writePending` before each outbox
 *   flush (Flusher.beforeSend). After a process crash the log holds every offset a client saw.
 * - A power loss or kernel panic loses the page cache: STREAM records the boot id and `clean`
 *   (true only after a clean shutdown); an unclean stop under another (or unknown) boot id starts
 *   a new epoch, so `recovered: true` is never claimed over offsets that may be gone.
 * - No offset above STREAM's `reservedThrough` is ever handed out, so a restart (after a crash too)
 *   continues above every offset a client may have seen.
 * - The epoch is kept only when STREAM is readable, names the same patterns, and the log loaded
 *   whole (its snapshot included); otherwise the history is dropped and a new epoch starts.
 * - Which offsets are lost is recorded, never guessed from gaps a snapshot leaves on purpose: a
 *   snapshot holds the held messages, each held topic's evictedThrough and the floor; after it (and
 *   without one) records are contiguous, so a gap there is a write that failed: lost, floor raised.
 * - Compaction (the engine's) rewrites only held messages, so files of evicted history go away.
 * Cost: one MessagePack encode + CRC32 per history message on the publishing turn, one synchronous
 * write syscall per turn's batch (page cache), grouped fdatasync off the JS thread, one synchronous
 * STREAM write per RESERVE_BLOCK offsets.
 */
class PersistentHistory implements AppendLogOwner, HistorySink {
  history!: History;
  private log!: AppendLog;
  private reservedThrough = 0;
  /** Highest offset whose write failed (kept in STREAM so a restart counts it as lost). */
  private lostThrough = 0;
  /** The batch the last write joined, and its highest offset (one failure handler per batch, not per message). */
  private batchPromise: Promise<void> | undefined;
  private batchMaxOffset = { value: 0 };
  /** Load state: whether a snapshot is being read, what it stands for, the next contiguous offset after it. */
  private loading: { inSnapshot: boolean; snapshotEnded: boolean; expected: number } | undefined;
  /** The `last` of the stream when the running compaction started: its snapshot stands for offsets up to here. */
  private snapshotThrough = 0;
  private closing: Promise<void> | undefined;
  /** After a failed reservation: no new attempt (a synchronous write) before this time. */
  private reserveRetryAtMs = 0;
  private readonly bootId: string | undefined;

  private constructor(
    private readonly dir: string,
    private readonly limits: HistoryLimits,
    private readonly now: () => number,
    private readonly options: OpenHistoryOptions,
  ) {
    this.bootId = 'bootId' in options ? options.bootId : readBootId();
  }

  get stats(): LogStoreStats {
    return this.log.stats;
  }

  static async open(dir: string, limits: HistoryLimits, now: () => number, options: OpenHistoryOptions): Promise<PersistentHistory> {
    const abs = resolve(dir);
    let release: (() => void) | undefined;
    const store = new PersistentHistory(abs, limits, now, options);
    try {
      mkdirSync(abs, { recursive: true });
      release = lockDirectory(abs);
      await store.load(release);
      return store;
    } catch (err) {
      release?.();
      throw err instanceof StoreError ? err : describeFailure('history store', abs, 'open', err);
    }
  }

  private openLog(logDir: string, recoverInto?: string): AppendLog {
    return openAppendLog(logDir, 'history store', this, {
      io: this.options.io, compactMinBytes: this.options.compactMinBytes, onError: this.options.onError, eagerWrites: true, recoverInto,
    });
  }

  private async load(release: () => void): Promise<void> {
    const logDir = join(this.dir, LOG_DIR);
    const recover = this.options.recoverInto;
    let stream = readStream(this.dir);
    if (stream === STREAM_MALFORMED) {
      // STREAM is only ever replaced whole (tmp, fsync, rename): a malformed one is damage, not a crash.
      const file = join(this.dir, STREAM_FILE);
      if (recover === undefined) throw new DataCorruptionError('history store', file, 0, 'the stream file is malformed (it is only ever replaced whole, so this is damage)');
      // Without STREAM nothing says which epoch and patterns the log belongs to: it goes aside with it.
      mkdirSync(recover, { recursive: true });
      const moved = [STREAM_FILE];
      renameSync(file, join(recover, STREAM_FILE));
      if (existsSync(logDir)) {
        renameSync(logDir, join(recover, LOG_DIR));
        moved.push(LOG_DIR);
      }
      this.damage.quarantine = recover;
      this.damage.moved.push(...moved);
      this.damage.damage.push({ file: STREAM_FILE, offset: 0, reason: 'the stream file is malformed', lostBytes: 0 });
      stream = 'stream file malformed: moved into quarantine with the log';
    }
    let why = typeof stream === 'string' ? stream
      : !samePatterns(stream.patterns, this.limits.patterns) ? 'historyFilters changed'
      : stream.clean === true ? undefined
      // An unclean stop on this boot was a process crash: the page cache kept every write (writePending), exact.
      : stream.bootId === undefined || this.bootId === undefined ? 'unclean stop, and whether the machine restarted since is unknown (no boot id)'
      : stream.bootId !== this.bootId ? 'unclean stop, and the machine restarted since (boot id changed): offsets delivered but not yet synced may be lost'
      : undefined;
    if (why === undefined) {
      const s = stream as StreamFile;
      this.history = new History(s.epoch, this.limits, this.now);
      const names = existsSync(logDir) ? readdirSync(logDir).sort() : [];
      const hasSnapshot = names.some((n) => /^snapshot-\d+\.tcs$/.test(n));
      const newest = names.filter((n) => /^(snapshot|log)-\d+\.tc[sl]$/.test(n)).sort((x, y) => x.slice(-16).localeCompare(y.slice(-16))).at(-1);
      const newestBytes = newest === undefined ? 0 : statSync(join(logDir, newest)).size;
      this.loading = { inSnapshot: hasSnapshot, snapshotEnded: false, expected: 1 };
      // Damage in the log throws (DataCorruptionError) unless recovering; any other failure stops start-up too: never a silent new epoch.
      const log = this.openLog(logDir, recover === undefined ? undefined : join(recover, LOG_DIR));
      const recovered = log.loadReport.recovered;
      if (recovered) {
        this.damage.quarantine = recovered.quarantine;
        this.damage.moved.push(...recovered.moved.map((n) => join(LOG_DIR, n)));
        this.damage.damage.push(...recovered.damage.map((d) => ({ ...d, file: join(LOG_DIR, d.file) })));
        this.damage.lostBytes += recovered.lostBytes;
      }
      const lostThrough = s.lostThrough ?? 0;
      if (!recovered && hasSnapshot && !this.loading.snapshotEnded) why = 'snapshot incomplete';
      else if (this.history.last > s.reservedThrough) why = `log holds offset ${this.history.last} above the reserved ${s.reservedThrough}`;
      else if (!recovered && s.clean === true && this.history.last < s.reservedThrough && lostThrough < s.reservedThrough) {
        // A clean stop wrote its last offset to STREAM after syncing every record: the log must reach it.
        // It does not: its newest segment was deleted, or cut at a record boundary.
        const reason = `the stream was stopped cleanly at offset ${s.reservedThrough}, but the log ends at offset ${this.history.last}: its newest records are missing`;
        if (recover === undefined) {
          await log.close();
          throw new DataCorruptionError('history store', newest === undefined ? logDir : join(logDir, newest), newestBytes, reason);
        }
        this.damage.quarantine ??= recover;
        this.damage.damage.push({ file: newest === undefined ? LOG_DIR : join(LOG_DIR, newest), offset: newestBytes, reason, lostBytes: 0 });
      }
      if (why !== undefined) await log.close();
      else {
        this.log = log;
        this.reservedThrough = s.reservedThrough;
        // Offsets up to reservedThrough may have reached clients without reaching the disk (a crash):
        // never hand them out again. After a clean shutdown reservedThrough is the last offset.
        this.history.continueAt(s.reservedThrough);
        this.lostThrough = lostThrough;
        this.history.lost(this.lostThrough);
        const renew = this.damage.damage.length > 0 ? 'stored data was damaged and recovered (--data-recover)' : this.options.newEpochReason;
        if (renew !== undefined) {
          // What is held stays, but no resume may be answered recovered: true across the damage.
          const previous = this.history.epoch;
          this.history.renewEpoch(newEpoch());
          this.lostThrough = this.history.last;
          this.options.onInfo?.({ dir: this.dir, reason: renew, previousEpoch: previous, epoch: this.history.epoch }, 'history: new epoch');
        }
      }
    }
    if (why !== undefined) {
      // History lost (or never kept): drop the files, new epoch (PROTOCOL.md §4.6).
      rmSync(logDir, { recursive: true, force: true });
      const previous = typeof stream === 'string' ? undefined : stream.epoch;
      this.history = new History(newEpoch(), this.limits, this.now);
      this.options.onInfo?.({ dir: this.dir, reason: why, previousEpoch: previous, epoch: this.history.epoch }, 'history: new epoch');
      this.loading = { inSnapshot: false, snapshotEnded: false, expected: 1 };
      this.log = this.openLog(logDir);
      this.reservedThrough = 0;
    }
    this.loading = undefined;
    this.history.expire();
    this.reserve(this.history.last + 1);
    // Written first in this run's records: offsets before `next` that the log lacks are skipped, not lost.
    void this.log.append(frameRecord(recordPackr.pack([Kind.continueAt, this.history.last + 1])));
    this.history.setSink(this);
    this.closeRelease = release;
  }

  /** What start-up found besides intact records (a torn tail; damage recovered with --data-recover). */
  get loadReport(): LoadReport {
    const torn = this.log.loadReport.torn;
    return {
      ...(torn ? { torn } : {}),
      ...(this.damage.quarantine !== undefined ? { recovered: { ...this.damage, quarantine: this.damage.quarantine } } : {}),
    };
  }

  private readonly damage: { quarantine: string | undefined; moved: string[]; damage: DamageInfo[]; lostBytes: number } = {
    quarantine: undefined, moved: [], damage: [], lostBytes: 0,
  };

  /** A recovery rewrote the intact records as a snapshot: it ends like one, standing for every offset loaded (none resumable). */
  recoveredTail(): Buffer[] {
    const last = this.history.last;
    return [frameRecord(recordPackr.pack([Kind.snapshotEnd, last, last]))];
  }

  private closeRelease: (() => void) | undefined;

  // ---- AppendLogOwner -------------------------------------------------------------

  loadRecord(buf: Buffer, start: number, end: number): boolean {
    const v = unpackBody(buf, start, end);
    if (!Array.isArray(v)) return false;
    const l = this.loading!;
    const h = this.history;
    switch (v[0]) {
      case Kind.message: {
        // The content type (6th, PROTOCOL.md §8) is absent in records written before it existed: unknown.
        const [, offset, atMs, topic, payload, contentType] = v as [number, number, number, string, Uint8Array, string | null | undefined];
        if (!Number.isSafeInteger(offset) || typeof atMs !== 'number' || typeof topic !== 'string' || !(payload instanceof Uint8Array)) return false;
        if (contentType !== undefined && contentType !== null && typeof contentType !== 'string') return false;
        if (offset <= h.last) return true; // also in the snapshot written while this segment filled
        if (!l.inSnapshot && offset > l.expected) h.lost(offset - 1, atMs); // a batch that failed: gone, published before this one
        l.expected = offset + 1;
        // Copy out of the read buffer: a view would pin the whole chunk for as long as the message is held.
        h.restore(topic, Buffer.from(payload), offset, atMs, contentType ?? undefined);
        return true;
      }
      case Kind.topicEvicted:
        if (typeof v[1] !== 'string' || !Number.isSafeInteger(v[2]) || (v[3] !== undefined && typeof v[3] !== 'number')) return false;
        h.restoreEvicted(v[1], v[2] as number, v[3] as number | undefined);
        return true;
      case Kind.snapshotEnd: {
        if (!Number.isSafeInteger(v[1]) || !Number.isSafeInteger(v[2]) || (v[3] !== undefined && typeof v[3] !== 'number')) return false;
        const through = v[1] as number;
        h.lost(v[2] as number, v[3] as number | undefined);
        h.continueAt(through);
        l.inSnapshot = false;
        l.snapshotEnded = true;
        l.expected = through + 1;
        return true;
      }
      case Kind.continueAt:
        if (!Number.isSafeInteger(v[1])) return false;
        h.continueAt((v[1] as number) - 1);
        l.expected = Math.max(l.expected, v[1] as number);
        return true;
      default:
        return false;
    }
  }

  *snapshotRecords(): Iterable<Buffer> {
    const through = this.snapshotThrough;
    const h = this.history;
    let after = 0;
    for (let e = h.heldAfter(after); e !== undefined && e.message.offset <= through; e = h.heldAfter(after)) {
      after = e.message.offset;
      yield frameRecord(recordPackr.pack(messageRecord(after, e.atMs, e.message)));
    }
    // Read at the end, in one go: an eviction while the messages were written is then included.
    const evicted = h.evictedByTopic();
    const { floor, floorAtMs } = h;
    for (const [topic, t, atMs] of evicted) yield frameRecord(recordPackr.pack([Kind.topicEvicted, topic, t, atMs]));
    yield frameRecord(recordPackr.pack([Kind.snapshotEnd, through, floor, floorAtMs]));
  }

  compactionStarted(): void {
    this.snapshotThrough = this.history.last;
  }

  /** See OpenedHistory.writePending: a failed write is recorded as lost in STREAM before anything is sent. */
  readonly writePending = (): void => {
    if (this.log.writePending() !== undefined) this.recordLost(this.batchMaxOffset.value);
  };

  // ---- HistorySink -----------------------------------------------------------------

  write(message: Message, atMs: number): Promise<void> {
    if (message.offset > this.reservedThrough && this.now() >= this.reserveRetryAtMs) this.reserve(message.offset);
    const durable = this.log.append(frameRecord(recordPackr.pack(messageRecord(message.offset, atMs, message))));
    if (durable !== this.batchPromise) {
      this.batchPromise = durable;
      const max = (this.batchMaxOffset = { value: message.offset });
      durable.catch(() => this.recordLost(max.value));
    } else this.batchMaxOffset.value = message.offset;
    return durable;
  }

  /**
   * A batch failed (disk full): its messages stay in memory, but a restart will not find them.
   * STREAM records that they are lost; if even that fails, STREAM goes, so the restart starts a new epoch.
   */
  private recordLost(through: number): void {
    if (through <= this.lostThrough) return;
    this.lostThrough = through;
    this.writeStreamOrDrop(this.reservedThrough, 'recording lost offsets');
  }

  /** Rewrites STREAM; on failure removes it (a restart then begins a new epoch) and reports. Returns whether it was written. */
  private writeStreamOrDrop(reservedThrough: number, what: string, clean = false): boolean {
    try {
      writeStream(this.dir, {
        version: 1, epoch: this.history.epoch, patterns: [...this.limits.patterns], reservedThrough, lostThrough: this.lostThrough,
        bootId: this.bootId, clean,
      });
      return true;
    } catch (err) {
      try {
        unlinkSync(join(this.dir, STREAM_FILE));
      } catch (unlinkErr) {
        if ((unlinkErr as NodeJS.ErrnoException).code !== 'ENOENT') this.options.onError?.(describeFailure('history store', this.dir, 'dropping STREAM after a failed write', unlinkErr));
      }
      this.log.stats.writeErrors++;
      this.options.onError?.(describeFailure('history store', this.dir, what, err));
      return false;
    }
  }

  /** Makes STREAM reserve offsets beyond `offset` before it is handed out (one synchronous write per RESERVE_BLOCK). */
  private reserve(offset: number): void {
    const through = offset + RESERVE_BLOCK - 1;
    if (this.writeStreamOrDrop(through, 'reserving offsets')) this.reservedThrough = through;
    // Cannot promise that a restart skips this offset: STREAM is gone, so the restart starts a new epoch.
    // A synchronous write: retried at most once a second.
    else this.reserveRetryAtMs = this.now() + 1000;
  }

  /** Writes what is pending, closes the log and records that every offset handed out is stored (a clean shutdown). */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      try {
        await this.log.close();
        await this.batchPromise?.catch(() => {}); // its failure handler has run (it records lost offsets)
        // Every offset handed out is at most last now, and every record is synced: a clean stop.
        this.writeStreamOrDrop(this.history.last, 'closing', true);
      } catch (err) {
        this.options.onError?.(err instanceof StoreError ? err : describeFailure('history store', this.dir, 'close', err));
      } finally {
        this.closeRelease?.();
      }
    })());
  }
}

/** Registers the history figures on /metrics (observe/sys.ts republishes some under $SYS). */
export function registerHistoryMetrics(metrics: Metrics, opened: OpenedHistory): void {
  const { history, storeStats } = opened;
  const s = history.stats;
  metrics.register('topicast_history_topics', 'gauge', 'Topics holding history', () => history.topics);
  metrics.register('topicast_history_messages', 'gauge', 'Messages held in history', () => history.messages);
  metrics.register('topicast_history_bytes', 'gauge', 'Bytes held in history (payload + topic + per-message overhead)', () => history.bytes);
  metrics.register('topicast_history_offset', 'gauge', 'Last offset of the history stream', () => history.last);
  metrics.register('topicast_history_appended_total', 'counter', 'Messages given a history offset', () => s.appended);
  metrics.register('topicast_history_evictions_total', 'counter', 'History messages evicted by the count, age, bytes or topic bounds', () => s.evicted);
  metrics.register('topicast_history_replays_total', 'counter', 'Resumes answered recovered: true', () => s.replays);
  metrics.register('topicast_history_replayed_messages_total', 'counter', 'Messages replayed to resuming subscriptions', () => s.replayedMessages);
  metrics.register('topicast_history_resumes_refused_total', 'counter', 'Resumes answered recovered: false (history no longer reaches back, or another epoch)', () => s.resumesRefused);
  metrics.register('topicast_history_queries_total', 'counter', 'History queries and subscribe prefills answered (PROTOCOL.md §4.8)', () => s.queries);
  metrics.register('topicast_history_queried_messages_total', 'counter', 'Messages selected by history queries and prefills', () => s.queriedMessages);
  // Counted in memory too (always 0 there), so $SYS and dashboards see one stable set of figures.
  metrics.register('topicast_history_write_errors_total', 'counter', 'History store writes that failed (e.g. disk full); live delivery is not affected', () => storeStats?.writeErrors ?? 0);
  if (storeStats) {
    metrics.register('topicast_history_store_batches_total', 'counter', 'History store group commits (one fdatasync each)', () => storeStats.batches);
    metrics.register('topicast_history_store_log_bytes', 'gauge', 'Bytes of the history store log since its last snapshot', () => storeStats.logBytes);
    metrics.register('topicast_history_store_snapshot_bytes', 'gauge', 'Bytes of the history store snapshot', () => storeStats.snapshotBytes);
  }
}

/** A history message record: `[kind, offset, atMs, topic, payload, contentType?]` (STORAGE.md). */
function messageRecord(offset: number, atMs: number, message: Message): unknown[] {
  const contentType = message.properties?.contentType;
  return contentType === undefined
    ? [Kind.message, offset, atMs, message.topic, message.payload]
    : [Kind.message, offset, atMs, message.topic, message.payload, contentType];
}
