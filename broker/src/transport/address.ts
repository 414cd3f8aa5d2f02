/**
 * Remote addresses as transports give them: uWebSockets.js as text without a port, node:net
 * as `ip:port` or `[ip]:port`. `addressKey` makes one key per client IP of either, for the
 * per-IP limits (auth/abuse.ts) and the half-open caps (transport/admission.ts).
 */

/** The IP of a remote address as transports give it: strips a TCP `:port` and the IPv4-mapped IPv6 prefix. */
export function addressKey(remote: string, withPort: boolean): string {
  let ip = remote;
  if (withPort) {
    const i = ip.lastIndexOf(':');
    if (i > 0) ip = ip.slice(0, i);
  }
  if (ip.startsWith('::ffff:')) ip = ip.slice(7);
  return ip.replace(/^\[|\]$/g, '');
}
