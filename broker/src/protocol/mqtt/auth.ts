/**
 * The authentication hook: CONNECT hands username, password and client id here.
 * Permissive by default (every client is accepted), so devices connect out of the
 * box; the security work replaces `authenticate` via `createMqttProtocol`'s option.
 * An acceptance may carry per-topic permissions: PUBLISH, wills and SUBSCRIBE are
 * then checked (MQTT 5 reason 0x87, 3.1.1 SUBACK 0x80 / silent drop).
 */

/** A refusal may carry the MQTT 5 reason (default 0x86 Bad User Name or Password) and a reason string. */
export interface AuthRefusal {
  allowed: false;
  reason?: number;
  reasonString?: string;
}
/**
 * Per-topic permissions of an accepted client (auth/permissions.ts implements it).
 * Without them everything is allowed.
 */
export interface TopicPermissions {
  canPublish(topic: string): boolean;
  /** 'filtered': allowed, but every delivery through the subscription is checked with `canRead`. */
  canSubscribe(filter: string): 'allow' | 'deny' | 'filtered';
  canRead(topic: string): boolean;
}
export interface AuthAcceptance {
  allowed: true;
  permissions?: TopicPermissions;
  /** When the credentials expire (ms since the epoch): the connection is closed then (MQTT 5: DISCONNECT 0x87). */
  expiresAtMs?: number;
}
export type AuthResult = boolean | AuthRefusal | AuthAcceptance;

export type Authenticate = (username: string | undefined, password: Uint8Array | undefined, clientId: string) => Promise<AuthResult>;

/** Accepts everyone. */
export const authenticate: Authenticate = async function permissiveAuthenticate() {
  return true;
};
