/**
 * Broker figures: registered once on /metrics and republished as retained
 * UTF-8 text under `$SYS/broker/...` every `sysIntervalSec` (the Mosquitto
 * layout, so existing MQTT tools read them). Filters starting with a wildcard
 * never match `$SYS` [MQTT-4.7.2-1]: subscribe to `$SYS/#` explicitly.
 */
import type { BrokerContext } from '../context.js';
import { ContentType } from 'topicast/protocol';
import { createMessage, type MessageProperties } from '../core/message.js';

interface SysFigure {
  topic: string;
  metric: string;
}

/** Registers the broker-wide metrics; protocols register their own. */
export function registerCoreMetrics(ctx: BrokerContext): void {
  const { metrics: m, router, outboxStats: o, counters: c } = ctx;
  m.register('topicast_uptime_seconds', 'gauge', 'Seconds since the broker started', () => Math.floor((ctx.now() - ctx.startedAt) / 1000));
  m.register('topicast_connections', 'gauge', 'Open client connections by protocol', () => Object.entries(c.open).map(([protocol, n]) => [{ protocol }, n] as const));
  m.register('topicast_connections_open', 'gauge', 'Open client connections over all protocols', () => ctx.openConnections());
  m.register('topicast_connections_total', 'counter', 'Connections accepted since start', () => c.connectionsTotal);
  m.register('topicast_connections_refused_total', 'counter', 'Connections refused at maxConnections', () => c.connectionsRefused);
  m.register('topicast_subscriptions', 'gauge', 'Subscriptions held (connection, filter)', () => router.subscriptionCount);
  m.register('topicast_messages_received_total', 'counter', 'Messages published into the router', () => router.stats.messagesIn);
  m.register('topicast_bytes_received_total', 'counter', 'Payload bytes published into the router', () => router.stats.bytesIn);
  m.register('topicast_deliveries_total', 'counter', 'Deliveries handed to connections (one per connection per message)', () => router.stats.deliveries);
  m.register('topicast_frames_sent_total', 'counter', 'Frames and packets written to connections', () => o.framesSent);
  m.register('topicast_bytes_sent_total', 'counter', 'Bytes written to connections', () => o.bytesSent);
  m.register('topicast_dropped_total', 'counter', 'Deliveries dropped by the slow-consumer policy', () => o.dropped);
  m.register('topicast_conflated_total', 'counter', 'Deliveries replaced by a newer one on the same topic while a connection was backed up', () => o.conflated);
  m.register('topicast_conflated_bytes', 'gauge', 'Bytes of latest values held for backed-up connections by the conflate policy (at most maxBufferedBytes each)', () => o.conflatedBytes);
  m.register('topicast_slow_consumer_disconnects_total', 'counter', 'Connections closed by the disconnect policy', () => o.slowConsumerDisconnects);
  m.register('topicast_rate_limited_total', 'counter', 'Publishes refused by the per-connection rate limit', () => c.rateLimited);
  m.register('topicast_malformed_total', 'counter', 'Malformed frames or packets received', () => c.malformed);
  m.register('topicast_errors_sent_total', 'counter', 'Error frames sent to clients', () => c.errorsSent);
  m.register('topicast_wills_published_total', 'counter', 'Will messages published', () => c.willsPublished);
  m.register('topicast_http_framing_refused_total', 'counter', 'HTTP requests closed for ambiguous framing (differing Content-Length, Transfer-Encoding)', () => c.framingRefused);
  m.register('topicast_retained_messages', 'gauge', 'Retained topics held', () => router.retained.size);
  m.register('topicast_retained_bytes', 'gauge', 'Payload bytes of retained messages', () => router.retained.bytes);
  m.register('topicast_process_resident_bytes', 'gauge', 'Resident memory of the broker process', residentBytes);
  m.register('topicast_metric_read_errors_total', 'counter', 'Figures that could not be read (e.g. out of file descriptors); left out of that scrape', () => m.readErrors);
}

let lastRss = 0;

/**
 * process.memoryUsage.rss() opens /proc/self/stat: out of descriptors it throws EMFILE. The
 * last figure read stands in until it can be read again (the error is counted by Metrics once).
 */
function residentBytes(): number {
  try {
    lastRss = process.memoryUsage.rss();
  } catch (err) {
    if (lastRss === 0) throw err;
    return lastRss;
  }
  return lastRss;
}

const FIGURES: readonly SysFigure[] = [
  { topic: '$SYS/broker/uptime', metric: 'topicast_uptime_seconds' },
  { topic: '$SYS/broker/clients/connected', metric: 'topicast_connections_open' },
  { topic: '$SYS/broker/clients/total', metric: 'topicast_connections_total' },
  { topic: '$SYS/broker/subscriptions/count', metric: 'topicast_subscriptions' },
  { topic: '$SYS/broker/messages/received', metric: 'topicast_messages_received_total' },
  { topic: '$SYS/broker/messages/sent', metric: 'topicast_frames_sent_total' },
  { topic: '$SYS/broker/messages/dropped', metric: 'topicast_dropped_total' },
  { topic: '$SYS/broker/messages/conflated', metric: 'topicast_conflated_total' },
  { topic: '$SYS/broker/bytes/received', metric: 'topicast_bytes_received_total' },
  { topic: '$SYS/broker/bytes/sent', metric: 'topicast_bytes_sent_total' },
  { topic: '$SYS/broker/retained/count', metric: 'topicast_retained_messages' },
  { topic: '$SYS/broker/clients/slow-disconnects', metric: 'topicast_slow_consumer_disconnects_total' },
  { topic: '$SYS/broker/messages/rate-limited', metric: 'topicast_rate_limited_total' },
  { topic: '$SYS/broker/memory/rss', metric: 'topicast_process_resident_bytes' },
  { topic: '$SYS/broker/security/auth-failures', metric: 'topicast_auth_failures_total' },
  { topic: '$SYS/broker/security/denied', metric: 'topicast_auth_denied_total' },
  { topic: '$SYS/broker/security/withheld', metric: 'topicast_auth_withheld_total' },
  { topic: '$SYS/broker/security/expired', metric: 'topicast_auth_expired_total' },
  { topic: '$SYS/broker/security/origin-refused', metric: 'topicast_origin_refused_total' },
  { topic: '$SYS/broker/limits/connections-per-ip', metric: 'topicast_limit_connections_per_ip_refused_total' },
  { topic: '$SYS/broker/limits/connect-rate', metric: 'topicast_limit_connect_rate_refused_total' },
  { topic: '$SYS/broker/limits/auth-backoff', metric: 'topicast_limit_auth_backoff_refused_total' },
  { topic: '$SYS/broker/limits/subscriptions', metric: 'topicast_subscriptions_refused_total' },
  // Scale-out (cluster/index.ts): present only with a bus; $SYS stays per node, never crosses it.
  { topic: '$SYS/broker/cluster/state', metric: 'topicast_bus_state' },
  { topic: '$SYS/broker/cluster/sent', metric: 'topicast_bus_sent_total' },
  { topic: '$SYS/broker/cluster/received', metric: 'topicast_bus_routed_total' },
  { topic: '$SYS/broker/cluster/dropped', metric: 'topicast_bus_dropped_total' },
  { topic: '$SYS/broker/cluster/buffered', metric: 'topicast_bus_buffered' },
  { topic: '$SYS/broker/cluster/refused', metric: 'topicast_bus_refused_total' },
  { topic: '$SYS/broker/cluster/replayed', metric: 'topicast_bus_replayed_total' },
  { topic: '$SYS/broker/cluster/orphan-wills', metric: 'topicast_bus_orphan_wills_total' },
  { topic: '$SYS/broker/cluster/errors', metric: 'topicast_bus_errors_total' },
  { topic: '$SYS/broker/history/topics', metric: 'topicast_history_topics' },
  { topic: '$SYS/broker/history/messages', metric: 'topicast_history_messages' },
  { topic: '$SYS/broker/history/bytes', metric: 'topicast_history_bytes' },
  { topic: '$SYS/broker/history/evictions', metric: 'topicast_history_evictions_total' },
  { topic: '$SYS/broker/history/replays', metric: 'topicast_history_replays_total' },
  { topic: '$SYS/broker/history/replayed', metric: 'topicast_history_replayed_messages_total' },
  { topic: '$SYS/broker/history/write-errors', metric: 'topicast_history_write_errors_total' },
];

const utf8 = new TextEncoder();
// Figures are numbers written as JSON, the version is text: tagged (PROTOCOL.md §8) so every client reads them alike.
const AS_JSON: MessageProperties = Object.freeze({ contentType: ContentType.json });
const AS_TEXT: MessageProperties = Object.freeze({ contentType: ContentType.text });

/** Publishes the version once and the figures every interval; returns the stop function. */
export function startSys(ctx: BrokerContext): () => void {
  const publish = (topic: string, text: string, properties = AS_JSON): void => {
    ctx.router.publish(createMessage(topic, utf8.encode(text), true, undefined, 0, properties));
  };
  const last = new Map<string, number>();
  let loggedAt = -Infinity;
  let readErrors = ctx.metrics.readErrors;
  const tick = (): void => {
    try {
      publishFigures();
    } catch (err) {
      // A tick runs outside any request: whatever the OS throws at it is logged (at most every 10 s), never fatal.
      if (ctx.now() - loggedAt >= 10_000) {
        loggedAt = ctx.now();
        ctx.log.error({ err }, '$SYS tick failed; the figures are published again next tick');
      }
    }
    if (ctx.metrics.readErrors !== readErrors && ctx.now() - loggedAt >= 10_000) {
      loggedAt = ctx.now();
      readErrors = ctx.metrics.readErrors;
      const e = ctx.metrics.lastReadError;
      ctx.log.warn({ metric: e?.name, err: e?.err, readErrors }, 'a broker figure could not be read (e.g. out of file descriptors); the last value stands');
    }
  };
  const publishFigures = (): void => {
    for (const f of FIGURES) {
      const v = ctx.metrics.value(f.metric);
      if (v === undefined || last.get(f.topic) === v) continue; // unchanged figures are not re-sent
      last.set(f.topic, v);
      publish(f.topic, String(v));
    }
    // Open connections per protocol (native, mqtt, sse), as /metrics' topicast_connections{protocol}.
    for (const [protocol, n] of Object.entries(ctx.counters.open)) {
      const topic = `$SYS/broker/clients/connected/${protocol}`;
      if (last.get(topic) === n) continue;
      last.set(topic, n);
      publish(topic, String(n));
    }
  };
  publish('$SYS/broker/version', `topicast ${ctx.version}`, AS_TEXT);
  tick();
  if (ctx.config.sysIntervalSec === 0) return () => {};
  const timer = setInterval(tick, ctx.config.sysIntervalSec * 1000);
  timer.unref();
  return () => clearInterval(timer);
}
