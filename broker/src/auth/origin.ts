/**
 * The Origin allowlist for WebSocket upgrades (cross-site WebSocket hijacking:
 * a page on another site opening a socket with the visitor's network access).
 *
 * Allowed: no Origin header (not a browser), the broker's own origin (the
 * dashboard it serves: Origin host equals the Host header), an exact entry of
 * the list, or any origin when the list holds `*`. Comparison is on the
 * normalized `scheme://host[:port]`, lower case, without a trailing slash.
 */

export function normalizeOrigin(origin: string): string {
  return origin.trim().toLowerCase().replace(/\/+$/, '');
}

export function normalizeOrigins(list: readonly string[]): Set<string> {
  return new Set(list.map(normalizeOrigin).filter((o) => o.length > 0));
}

export function checkOrigin(origin: string, host: string, allowed: ReadonlySet<string>): boolean {
  if (origin === '') return true;
  if (allowed.has('*')) return true;
  const o = normalizeOrigin(origin);
  if (allowed.has(o)) return true;
  if (host === '') return false;
  const h = host.trim().toLowerCase();
  return o === `http://${h}` || o === `https://${h}`;
}
