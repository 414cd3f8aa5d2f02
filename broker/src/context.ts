/**
 * What every protocol handler shares: the router, the flusher, counters, the
 * logger and the configuration. Built once in broker.ts (the composition root).
 */
import type { TopicLimits } from 'topicast/protocol';
import type { Auth } from './auth/index.js';
import type { ConnectionLimits, HistoryLimits, PublishLimits, SessionLimits } from './session/limits.js';
import type { ClusterHooks } from './cluster/bridge.js';
import type { BrokerConfig } from './config.js';
import type { Router } from './core/router.js';
import type { Logger } from './observe/log.js';
import type { Metrics } from './observe/metrics.js';
import type { Flusher, OutboxLimits, OutboxStats } from './session/outbox.js';

/** Counters of connection-level events shared by all protocols. */
export interface BrokerCounters {
  connectionsTotal: number;
  /** Open connections per protocol name ('native', 'mqtt', ...). */
  open: Record<string, number>;
  /** Publishes refused by the rate limit. */
  rateLimited: number;
  /** Frames or packets rejected as malformed. */
  malformed: number;
  /** Errors sent to clients, by error code. */
  errorsSent: number;
  /** Connections refused at maxConnections. */
  connectionsRefused: number;
  /** Wills published. */
  willsPublished: number;
  /** HTTP requests and upgrades closed for ambiguous framing (duplicate Content-Length, Transfer-Encoding...). */
  framingRefused: number;
}

export interface BrokerContext {
  readonly config: BrokerConfig;
  readonly router: Router;
  readonly flusher: Flusher;
  readonly outboxStats: OutboxStats;
  readonly outboxLimits: OutboxLimits;
  readonly topicLimits: TopicLimits;
  /** What a publish is admitted against (session/admission.ts). */
  readonly publishLimits: PublishLimits;
  readonly connectionLimits: ConnectionLimits;
  readonly sessionLimits: SessionLimits;
  readonly historyLimits: HistoryLimits;
  readonly counters: BrokerCounters;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Authentication and permissions (auth/index.ts). */
  readonly auth: Auth;
  readonly startedAt: number;
  readonly version: string;
  /** Wall clock in ms; injectable for tests. */
  now(): number;
  /** Total open connections over every protocol. */
  openConnections(): number;
  /** Scale-out (cluster/bridge.ts); undefined for a single node (the default): protocols take their fast path. */
  cluster?: ClusterHooks;
}
