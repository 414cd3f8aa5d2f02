/**
 * Per-address abuse limits (docs/SECURITY.md "Abuse limits"), shared by every
 * way in: open connections per IP, a connect-rate token bucket per IP, and a
 * backoff after repeated failed authentication from one IP.
 *
 * Invariants
 * - `admit` is called once per connection attempt (WebSocket upgrade, TCP
 *   accept, HTTP publish) and says whether to go on; `opened`/`closed` track
 *   open connections; `authFailed`/`authSucceeded` drive the backoff.
 * - A success resets the address's failure count; the backoff doubles from
 *   1 s per failure beyond `authFailuresBeforeBackoff`, capped at `authBackoffMaxSec`.
 * - Memory is bounded: an address with nothing open, a full bucket and no
 *   backoff carries no information and is pruned (at most every second, and
 *   the table never holds more than MAX_ADDRESSES entries).
 * Cost: O(1) per event, one Map lookup.
 */
import { addressKey } from '../transport/address.js';

export { addressKey };

export interface AbuseLimits {
  /** 0 = unlimited. */
  maxConnectionsPerIp: number;
  /** Sustained connects per second per IP; 0 = unlimited. */
  connectRatePerIp: number;
  connectBurstPerIp: number;
  /** Failed authentications allowed before the backoff starts; 0 = no backoff. */
  authFailuresBeforeBackoff: number;
  authBackoffMaxSec: number;
  /** Addresses never limited (loopback by default). */
  limitsExemptIps: readonly string[];
}

export type Refusal = 'connections-per-ip' | 'connect-rate' | 'auth-backoff';

export interface AbuseStats {
  /** Refusals per limit. */
  refused: Record<Refusal, number>;
  /** Subscriptions refused at maxSubscriptionsPerConnection. */
  subscriptionsRefused: number;
}

interface AddressState {
  open: number;
  tokens: number;
  refilledAt: number;
  failures: number;
  blockedUntil: number;
}

/** Beyond this many tracked addresses, idle ones are pruned at once (a spoofing-free bound: TCP needs a handshake). */
const MAX_ADDRESSES = 100_000;

export class AbuseGuard {
  readonly stats: AbuseStats = { refused: { 'connections-per-ip': 0, 'connect-rate': 0, 'auth-backoff': 0 }, subscriptionsRefused: 0 };
  private readonly addresses = new Map<string, AddressState>();
  private prunedAt = 0;
  private readonly exempt: ReadonlySet<string>;

  constructor(private readonly limits: AbuseLimits, private readonly now: () => number) {
    this.exempt = new Set(limits.limitsExemptIps.map((ip) => addressKey(ip, false)));
  }

  private state(ip: string, now: number): AddressState {
    let s = this.addresses.get(ip);
    if (s === undefined) {
      if (this.addresses.size >= MAX_ADDRESSES || now - this.prunedAt > 1000) this.prune(now);
      s = { open: 0, tokens: this.limits.connectBurstPerIp, refilledAt: now, failures: 0, blockedUntil: 0 };
      this.addresses.set(ip, s);
    }
    return s;
  }

  /**
   * A connection attempt from `ip`: undefined to go on, else the limit that refuses it
   * and how long the client should wait (ms).
   */
  admit(ip: string, countsAsConnection = true): { refusal: Refusal; retryAfterMs: number } | undefined {
    if (this.exempt.has(ip)) return undefined;
    const now = this.now();
    const s = this.state(ip, now);
    const { limits } = this;
    if (s.blockedUntil > now) return this.refuse('auth-backoff', s.blockedUntil - now);
    if (countsAsConnection && limits.maxConnectionsPerIp > 0 && s.open >= limits.maxConnectionsPerIp) return this.refuse('connections-per-ip', 1000);
    if (limits.connectRatePerIp > 0) {
      s.tokens = Math.min(limits.connectBurstPerIp, s.tokens + ((now - s.refilledAt) * limits.connectRatePerIp) / 1000);
      s.refilledAt = now;
      if (s.tokens < 1) return this.refuse('connect-rate', Math.ceil(((1 - s.tokens) * 1000) / limits.connectRatePerIp));
      s.tokens -= 1;
    }
    return undefined;
  }

  private refuse(refusal: Refusal, retryAfterMs: number): { refusal: Refusal; retryAfterMs: number } {
    this.stats.refused[refusal]++;
    return { refusal, retryAfterMs };
  }

  opened(ip: string): void {
    if (this.exempt.has(ip)) return;
    this.state(ip, this.now()).open++;
  }

  closed(ip: string): void {
    const s = this.addresses.get(ip);
    if (s && s.open > 0) s.open--;
  }

  /** Whether `ip` is in an authentication backoff (for requests that are not connections, e.g. HTTP publish). */
  backoffMs(ip: string): number {
    const s = this.addresses.get(ip);
    const left = s === undefined ? 0 : s.blockedUntil - this.now();
    if (left > 0) this.stats.refused['auth-backoff']++;
    return Math.max(0, left);
  }

  authFailed(ip: string): void {
    const { authFailuresBeforeBackoff, authBackoffMaxSec } = this.limits;
    if (authFailuresBeforeBackoff === 0 || this.exempt.has(ip)) return;
    const now = this.now();
    const s = this.state(ip, now);
    s.failures++;
    const beyond = s.failures - authFailuresBeforeBackoff;
    if (beyond >= 0) s.blockedUntil = now + Math.min(1000 * 2 ** Math.min(beyond, 20), authBackoffMaxSec * 1000);
  }

  authSucceeded(ip: string): void {
    const s = this.addresses.get(ip);
    if (s) {
      s.failures = 0;
      s.blockedUntil = 0;
    }
  }

  /** Addresses tracked (for tests and metrics). */
  get size(): number {
    return this.addresses.size;
  }

  private prune(now: number): void {
    this.prunedAt = now;
    const { connectRatePerIp, connectBurstPerIp } = this.limits;
    for (const [ip, s] of this.addresses) {
      const full = connectRatePerIp === 0 || s.tokens + ((now - s.refilledAt) * connectRatePerIp) / 1000 >= connectBurstPerIp;
      // Failure counts are kept (slow guessing adds up) unless the table is full.
      if (s.open === 0 && full && s.blockedUntil <= now && (s.failures === 0 || this.addresses.size >= MAX_ADDRESSES)) this.addresses.delete(ip);
    }
  }
}
