/**
 * The broker's history stream (core/history.ts) as configured: limits from the settings, a fresh
 * epoch, the expiry timer and the metrics. Persistence with `--data` is added below.
 */
import { randomBytes } from 'node:crypto';
import type { BrokerConfig } from '../config.js';
import { History, type HistoryLimits } from '../core/history.js';
import type { Metrics } from '../observe/metrics.js';

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
  /** Stops the expiry timer and, when persistent, writes what is pending and closes the files. */
  close(): Promise<void>;
}

/** Age eviction runs at least this often besides on every append (a quiet broker still forgets old messages). */
const EXPIRE_INTERVAL_MS = 1000;

/** History as configured, or undefined when `historyFilters` is empty (then nothing of it runs). */
export async function openHistory(config: BrokerConfig, now: () => number): Promise<OpenedHistory | undefined> {
  if (config.historyFilters.length === 0) return undefined;
  const history = new History(newEpoch(), historyLimits(config), now);
  const timer = setInterval(function expireHistory() {
    history.expire();
  }, EXPIRE_INTERVAL_MS);
  timer.unref();
  return {
    history,
    close: async () => {
      clearInterval(timer);
    },
  };
}

/** Registers the history figures on /metrics (observe/sys.ts republishes some under $SYS). */
export function registerHistoryMetrics(metrics: Metrics, history: History): void {
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
}
