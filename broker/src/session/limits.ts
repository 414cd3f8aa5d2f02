/**
 * Per-connection limits shared by every protocol: the publish token bucket and
 * the checks a publish or a filter must pass before reaching the router.
 * Hot-path friendly: no allocation, outcomes returned instead of thrown.
 */
import { ErrorCode, filterProblem, topicProblem, type TopicLimits } from 'topicast/protocol';
import type { RetainedStore } from '../core/retained.js';

/** Token bucket: `ratePerSec` sustained, `burst` at once. A rate of 0 means unlimited. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(private readonly ratePerSec: number, private readonly burst: number, now: number) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes one token; false when the bucket is empty (the caller refuses and counts). */
  take(now: number): boolean {
    if (this.ratePerSec === 0) return true;
    if (this.tokens < 1) {
      const elapsed = now - this.last;
      if (elapsed > 0) {
        this.tokens = Math.min(this.burst, this.tokens + (elapsed * this.ratePerSec) / 1000);
        this.last = now;
      }
      if (this.tokens < 1) return false;
    }
    this.tokens--;
    return true;
  }
}

export interface PublishCheck {
  code: ErrorCode;
  message: string;
}

/** Validates a topic name (a publish's, a will's, a response topic); undefined when it is one. Admission comes after (session/admission.ts). */
/**
 * Whether `bytes[from..to)` are exactly `topic` and plain ASCII: a connection publishing to the
 * topic it checked last time reuses that string, neither decoded nor checked again (a device
 * publishes to the same few topics). MQTT's PUBLISH reader and the native fast path both use it.
 */
export function isAsciiOf(bytes: Uint8Array, from: number, to: number, topic: string): boolean {
  if (to - from !== topic.length) return false;
  for (let i = 0; i < topic.length; i++) {
    const b = bytes[from + i]!;
    if (b !== topic.charCodeAt(i) || b >= 0x80) return false;
  }
  return true;
}

export function checkTopic(topic: string, limits: TopicLimits): PublishCheck | undefined {
  const problem = topicProblem(topic, limits);
  return problem === undefined ? undefined : { code: ErrorCode.invalidTopic, message: `topic ${problem}` };
}

/** Validates a filter; undefined when it may be subscribed. */
export function checkFilter(filter: string, limits: TopicLimits): PublishCheck | undefined {
  const problem = filterProblem(filter, limits);
  return problem === undefined ? undefined : { code: ErrorCode.invalidFilter, message: `filter ${JSON.stringify(filter.slice(0, 64))} ${problem}` };
}

/**
 * Frames or packets a connection may send while its earlier ones wait (authentication running, a
 * SUBSCRIBE waiting for the cluster's retained values, at most `busSnapshotTimeoutMs`). A client
 * that waits for its answers sends a few; thousands mean it does not, and holding them would grow
 * memory without bound, so the connection is closed as rate-limited (it may retry).
 */
export const MAX_HELD_INBOUND = 1000;

/**
 * Topics only the broker publishes: `$SYS/...` (DESIGN.md "Topics"), so its figures are never
 * spoofed. Every protocol refuses client publishes and wills there (session/admission.ts).
 */
export function isBrokerTopic(topic: string): boolean {
  return topic === '$SYS' || topic.startsWith('$SYS/');
}

/** The limits a publish is admitted against (derived once from the configuration, broker.ts createContext). */
export interface PublishLimits {
  readonly maxPayloadBytes: number;
  readonly maxPublishesPerSec: number;
  readonly publishBurst: number;
  readonly maxRetainedTopics: number;
  readonly maxRetainedBytes: number;
}

export interface ConnectionLimits {
  readonly maxConnections: number;
}

/** What a session holds and how long it trusts a token (derived once from the configuration). */
export interface SessionLimits {
  readonly maxSubscriptionsPerConnection: number;
  /** Tolerance past a token's `exp` before its connection ends (authClockSkewSec). */
  readonly authClockSkewMs: number;
  /** A WebSocket silent this long is closed; the broker pings before it (told to native clients in WELCOME). */
  readonly idleTimeoutSec: number;
}

/** The bounds of history queries (PROTOCOL.md §4.8; history-query.ts). */
export interface HistoryLimits {
  /** Rows per native query or prefill (historyMaxRows). */
  readonly maxRows: number;
  /** Rows per HTTP export (historyMaxExportRows). */
  readonly maxExportRows: number;
  /** Bytes of one answer (historyMaxQueryBytes). */
  readonly maxQueryBytes: number;
  /** Queries per second per connection or address; 0 = unlimited (historyQueriesPerSec). */
  readonly queriesPerSec: number;
}

/** The bounds of the retained store (configuration). */
export interface RetainedLimits {
  maxRetainedTopics: number;
  maxRetainedBytes: number;
}

/**
 * Why a retained publish cannot be stored, or undefined when it can: `maxRetainedTopics` reached
 * for a new topic, or `maxRetainedBytes` of payload exceeded by the new value (an update counts
 * what it adds over the value it replaces, so shrinking or equal-sized updates always pass).
 * Empty payloads (deletions) always pass. Every protocol answers it as "store full".
 */
export function retainedFull(store: RetainedStore, topic: string, payloadBytes: number, limits: RetainedLimits): string | undefined {
  if (payloadBytes === 0) return undefined;
  const old = store.get(topic);
  if (old === undefined && store.size >= limits.maxRetainedTopics) return `retained store is full (maxRetainedTopics ${limits.maxRetainedTopics})`;
  if (store.bytes - (old?.payload.length ?? 0) + payloadBytes > limits.maxRetainedBytes) return `retained store is full (maxRetainedBytes ${limits.maxRetainedBytes})`;
  return undefined;
}
