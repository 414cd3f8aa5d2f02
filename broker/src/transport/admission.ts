/**
 * Admission of sockets, before any protocol sees them (docs/SECURITY.md "Descriptors and
 * half-open connections"): every accepted socket of every listener is counted here, so
 *
 * - the broker never runs itself out of file descriptors: past a budget read from the
 *   process's own limit (RLIMIT_NOFILE less what the process holds besides client sockets,
 *   less a reserve for store files, the bus and static files), new sockets are closed at
 *   once and counted, and the ones it has keep being served; freed descriptors admit again;
 * - connections that have not completed their upgrade (HTTP) or CONNECT (MQTT TCP) are
 *   capped globally and per IP, so a flood of half-open requests holds a bounded number of
 *   descriptors and bytes whatever its size.
 *
 * Invariants
 * - `accept` is called once per accepted socket and, when it admits, exactly one `closed`
 *   follows; `established` at most once in between. Counters never go negative.
 * - Per-IP pending entries settle at the first of: established, closed before it, or
 *   `pendingStaleMs` (a transport that cannot tell which socket a close belongs to relies
 *   on its own idle timeout having closed it by then).
 * - Refusals are logged at most every `LOG_EVERY_MS` with the counts since the last line.
 * Cost: O(1) per socket event; a per-IP FIFO of pending entries, bounded by the caps.
 */
import { readdirSync, readFileSync } from 'node:fs';
import type { Metrics } from '../observe/metrics.js';
import { addressKey } from './address.js';

export interface AdmissionLimits {
  /** Connections not yet upgraded / CONNECTed, over every listener; 0 = unlimited. */
  maxPendingConnections: number;
  /** The same per remote IP; 0 = unlimited. */
  maxPendingConnectionsPerIp: number;
  /** Addresses the per-IP cap skips (limitsExemptIps). */
  limitsExemptIps: readonly string[];
}

export type AdmissionRefusal = 'descriptors' | 'pending' | 'pending-per-ip';

export interface AdmissionStats {
  refused: Record<AdmissionRefusal, number>;
  /** Accept calls that failed in the OS (EMFILE, ENFILE...): the peer got a reset. */
  acceptErrors: number;
}

/** A pending socket of one IP; `settled` once established, closed or stale. */
export interface PendingEntry {
  ip: string;
  at: number;
  settled: boolean;
}

/** At most one log line per this interval about refusals: a flood must not flood the log too. */
export const LOG_EVERY_MS = 10_000;

export class Admission {
  readonly stats: AdmissionStats = { refused: { descriptors: 0, pending: 0, 'pending-per-ip': 0 }, acceptErrors: 0 };
  /** Client sockets open, every listener and state. */
  sockets = 0;
  /** Sockets not yet upgraded / CONNECTed. */
  pending = 0;
  /** Most client sockets the descriptor limit leaves room for (Infinity where it cannot be read). */
  socketBudget = Infinity;
  private readonly perIp = new Map<string, PendingEntry[]>();
  private readonly exempt: ReadonlySet<string>;
  private loggedAt = -Infinity;
  private refusedSinceLog = 0;
  private errorsSinceLog = 0;

  constructor(
    private readonly limits: AdmissionLimits,
    private readonly now: () => number,
    /** Called at most every LOG_EVERY_MS while sockets are refused or accepts fail. */
    private readonly report: (summary: { refused: number; acceptErrors: number; sockets: number; pending: number; socketBudget: number }) => void,
    /** How long a pending per-IP entry counts at most (the transports' own bound on a socket without a request). */
    private readonly pendingStaleMs = 16_000,
  ) {
    this.exempt = new Set(limits.limitsExemptIps.map((ip) => addressKey(ip, false)));
  }

  /**
   * Whether new long-lived connections should be refused for lack of descriptors: true from
   * `HTTP_HEADROOM` below the budget, so that the last descriptors still serve short HTTP
   * requests (/metrics, /healthz) and WebSocket upgrades get a 503 instead of a reset.
   */
  get full(): boolean {
    return this.sockets >= this.socketBudget - headroom(this.socketBudget);
  }

  /** Counts a refusal decided by a transport (an upgrade answered 503 because `full`). */
  refused(refusal: AdmissionRefusal): void {
    this.stats.refused[refusal]++;
    this.refusedSinceLog++;
    this.maybeReport();
  }

  /**
   * A socket was accepted from `ip`: `{entry}` to keep it (counted open and pending; call
   * `closed` when it goes), or `{refusal}`: close it now. `stream` sockets (MQTT TCP) carry a
   * long-lived connection from the first byte, so they stop at `full`; HTTP sockets at the budget.
   */
  accept(ip: string, stream = false): { refusal: AdmissionRefusal } | { entry: PendingEntry | undefined } {
    const { limits } = this;
    let refusal: AdmissionRefusal | undefined;
    if (stream ? this.full : this.sockets >= this.socketBudget) refusal = 'descriptors';
    else if (limits.maxPendingConnections > 0 && this.pending >= limits.maxPendingConnections) refusal = 'pending';
    let queue: PendingEntry[] | undefined;
    if (refusal === undefined && !this.exempt.has(ip) && limits.maxPendingConnectionsPerIp > 0) {
      queue = this.queueOf(ip);
      if (queue.length >= limits.maxPendingConnectionsPerIp) refusal = 'pending-per-ip';
    }
    if (refusal !== undefined) {
      this.refused(refusal);
      return { refusal };
    }
    this.sockets++;
    this.pending++;
    if (queue === undefined) return { entry: undefined };
    const entry: PendingEntry = { ip, at: this.now(), settled: false };
    queue.push(entry);
    return { entry };
  }

  /** The socket completed its upgrade / CONNECT; `entry` as returned by accept (or undefined). */
  established(entry: PendingEntry | undefined): void {
    if (this.pending > 0) this.pending--;
    this.settle(entry);
  }

  /**
   * A socket that `established` for a while without leaving the HTTP context (an event stream,
   * transport/uws.ts `UwsStream`) is an HTTP socket again: its filter close counts it as pending.
   */
  unestablished(): void {
    this.pending++;
  }

  /**
   * Settles the oldest pending entry of `ip`: for a transport that sees the first request on
   * a socket but cannot tell which accepted socket it came on (uWebSockets.js HTTP).
   */
  settleOldest(ip: string): void {
    const queue = this.perIp.get(ip);
    if (queue === undefined) return;
    const entry = queue.find((e) => !e.settled);
    if (entry) this.settle(entry);
  }

  /** An admitted socket closed; `wasPending` when it never got established. */
  closed(entry: PendingEntry | undefined, wasPending: boolean): void {
    if (this.sockets > 0) this.sockets--;
    if (wasPending && this.pending > 0) this.pending--;
    this.settle(entry);
  }

  /** An accept failed in the OS (the listener's 'error'): counted and reported, never thrown. */
  acceptFailed(): void {
    this.stats.acceptErrors++;
    this.errorsSinceLog++;
    this.maybeReport();
  }

  /** Pending entries tracked per IP (tests, metrics). */
  pendingOf(ip: string): number {
    return this.queueOf(ip).length;
  }

  /** Settles one per-IP entry (its socket closed before its first request), counters untouched. */
  release(entry: PendingEntry): void {
    this.settle(entry);
  }

  private settle(entry: PendingEntry | undefined): void {
    if (entry === undefined || entry.settled) return;
    entry.settled = true;
    const queue = this.perIp.get(entry.ip);
    if (queue === undefined) return;
    const i = queue.indexOf(entry);
    if (i >= 0) queue.splice(i, 1);
    if (queue.length === 0) this.perIp.delete(entry.ip);
  }

  /** The IP's live entries: settled and stale ones dropped from the front first. */
  private queueOf(ip: string): PendingEntry[] {
    let queue = this.perIp.get(ip);
    if (queue === undefined) {
      queue = [];
      this.perIp.set(ip, queue);
      return queue;
    }
    const staleBefore = this.now() - this.pendingStaleMs;
    while (queue.length > 0 && (queue[0]!.settled || queue[0]!.at < staleBefore)) queue.shift()!.settled = true;
    return queue;
  }

  private maybeReport(): void {
    const now = this.now();
    if (now - this.loggedAt < LOG_EVERY_MS) return;
    this.loggedAt = now;
    this.report({ refused: this.refusedSinceLog, acceptErrors: this.errorsSinceLog, sockets: this.sockets, pending: this.pending, socketBudget: this.socketBudget });
    this.refusedSinceLog = 0;
    this.errorsSinceLog = 0;
  }
}

/** Sockets below the budget kept for short HTTP requests: 16, or a quarter of a tiny budget. */
function headroom(budget: number): number {
  return Math.min(16, Math.floor(budget / 4));
}

/**
 * Descriptors kept free for everything that is not a client socket and may open later: store
 * segments and snapshots, the bus connection, static files, DNS. 5 % of the limit, at least 32.
 */
export function descriptorReserve(limit: number): number {
  return Math.max(32, Math.ceil(limit * 0.05));
}

/**
 * The soft RLIMIT_NOFILE of this process and the descriptors it holds now, from /proc
 * (Linux); undefined where they cannot be read (then only maxConnections bounds sockets).
 * Never throws: reading them needs a descriptor, which may be exactly what is missing.
 */
export function readDescriptors(): { limit: number; open: number } | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m || m[1] === 'unlimited') return undefined;
    return { limit: Number(m[1]), open: readdirSync('/proc/self/fd').length };
  } catch {
    return undefined;
  }
}

/**
 * Sets `admission.socketBudget` from the process's descriptors: the limit, less what is open
 * besides client sockets, less the reserve. Keeps the previous budget when /proc cannot be read.
 */
export function refreshSocketBudget(admission: Admission): void {
  const d = readDescriptors();
  if (d === undefined) return;
  const others = Math.max(0, d.open - admission.sockets);
  admission.socketBudget = Math.max(0, d.limit - others - descriptorReserve(d.limit));
}

/** /metrics: sockets, their budget, pending connections and refusals at accept. */
export function registerAdmissionMetrics(m: Metrics, admission: Admission): void {
  m.register('topicast_sockets_open', 'gauge', 'Client sockets open over every listener, upgraded or not', () => admission.sockets);
  m.register('topicast_sockets_budget', 'gauge', 'Client sockets the file descriptor limit leaves room for (beyond it new ones are closed at once)', () => (Number.isFinite(admission.socketBudget) ? admission.socketBudget : -1));
  m.register('topicast_connections_pending', 'gauge', 'Connections not yet upgraded (HTTP) or CONNECTed (MQTT)', () => admission.pending);
  m.register('topicast_connections_admission_refused_total', 'counter', 'Sockets closed at accept: out of descriptors, or past maxPendingConnections / maxPendingConnectionsPerIp', () =>
    Object.entries(admission.stats.refused).map(([reason, n]) => [{ reason }, n] as const));
  m.register('topicast_accept_errors_total', 'counter', 'Accepts the OS refused (EMFILE, ENFILE): the peer was reset', () => admission.stats.acceptErrors);
}
