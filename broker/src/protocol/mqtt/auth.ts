/**
 * The authentication hook: CONNECT hands username, password and client id here.
 * Permissive by default (every client is accepted), so devices connect out of the
 * box; the security work replaces `authenticate` via `createMqttProtocol`'s option.
 */

/** A refusal may carry the MQTT 5 reason (default 0x86 Bad User Name or Password) and a reason string. */
export interface AuthRefusal {
  allowed: false;
  reason?: number;
  reasonString?: string;
}
export interface AuthAcceptance {
  allowed: true;
}
export type AuthResult = boolean | AuthRefusal | AuthAcceptance;

export type Authenticate = (username: string | undefined, password: Uint8Array | undefined, clientId: string) => Promise<AuthResult>;

/** Accepts everyone. */
export const authenticate: Authenticate = async function permissiveAuthenticate() {
  return true;
};
