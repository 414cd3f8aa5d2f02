/** Security figures on /metrics, and the start-up line that says how the broker is protected. */
import type { BrokerContext } from '../context.js';

export function registerAuthMetrics(ctx: BrokerContext): void {
  const s = ctx.auth.stats;
  const m = ctx.metrics;
  m.register('topicast_auth_failures_total', 'counter', 'Connections or HTTP requests refused for missing, invalid or expired credentials', () => s.failures);
  m.register('topicast_auth_denied_total', 'counter', 'Publishes, wills and subscriptions refused by permissions', () => s.denied);
  m.register('topicast_auth_withheld_total', 'counter', 'Deliveries (live or retained) withheld per topic by a deny rule', () => s.withheld);
  m.register('topicast_auth_expired_total', 'counter', 'Connections ended because their token expired', () => s.expired);
  const g = ctx.auth.guard.stats;
  m.register('topicast_limit_connections_per_ip_refused_total', 'counter', 'Connections refused at maxConnectionsPerIp', () => g.refused['connections-per-ip']);
  m.register('topicast_limit_connect_rate_refused_total', 'counter', 'Connections refused by connectRatePerIp', () => g.refused['connect-rate']);
  m.register('topicast_limit_auth_backoff_refused_total', 'counter', 'Attempts refused during a backoff after failed authentication', () => g.refused['auth-backoff']);
  m.register('topicast_subscriptions_refused_total', 'counter', 'Subscriptions refused at maxSubscriptionsPerConnection', () => g.subscriptionsRefused);
  m.register('topicast_origin_refused_total', 'counter', 'WebSocket upgrades refused by the Origin allowlist', () => s.originRefused);
}

/** Logs the security mode once; an open broker is a warning, never a quiet default. */
export function logAuthMode(ctx: BrokerContext): void {
  const { auth, log } = ctx;
  if (!auth.configured) {
    log.warn(
      { auth: auth.summary },
      'AUTHENTICATION IS OFF: anyone who can reach this broker may publish and subscribe to every topic. Set --auth-token-file or --auth-jwt-key-file (docs/SECURITY.md)',
    );
    return;
  }
  if (auth.anonymous) log.warn({ auth: auth.summary }, 'anonymous clients are allowed (authAnonymous=true) with the authAnonymousPublish/authAnonymousSubscribe permissions');
  else log.info({ auth: auth.summary }, 'authentication on');
}
