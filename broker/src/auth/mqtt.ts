/**
 * MQTT CONNECT credentials onto the same check as every other way in: the
 * password is the token (a static token or a JWT); the user name is free (a
 * label for the operator, e.g. the device id) and is never trusted.
 * No password = no token: anonymous, when anonymous access is on.
 *
 * Refusals: 0x87 Not authorized without credentials, 0x86 Bad User Name or
 * Password for a refused token (3.1.1 return codes 5 and 4); the reason string
 * (MQTT 5) says why, never with the token.
 */
import type { Authenticate, AuthResult } from '../protocol/mqtt/auth.js';
import type { Auth } from './index.js';

const NOT_AUTHORIZED = 0x87;
const BAD_CREDENTIALS = 0x86;

const utf8 = new TextDecoder();

export function createMqttAuthenticate(auth: Auth): Authenticate {
  return async function authenticateMqtt(_username, password, clientId): Promise<AuthResult> {
    if (!auth.configured) return true; // authentication off: the listener behaves exactly as without this hook
    const token = password === undefined || password.length === 0 ? undefined : utf8.decode(password);
    const outcome = await auth.authenticate(token, clientId);
    if (!outcome.ok) return { allowed: false, reason: token === undefined ? NOT_AUTHORIZED : BAD_CREDENTIALS, reasonString: outcome.reason };
    // The listener enforces the permissions on PUBLISH, wills, SUBSCRIBE, retained and live deliveries,
    // and closes the connection (0x87) at expiresAtMs plus authClockSkewSec.
    const { permissions, expiresAtMs } = outcome.principal;
    return { allowed: true, ...(permissions ? { permissions } : {}), ...(expiresAtMs !== undefined ? { expiresAtMs } : {}) };
  };
}
