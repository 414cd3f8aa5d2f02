/**
 * Who a connection is, as every way in learns it (auth/index.ts authenticates): the answer of an
 * authentication, shared by sessions and transports without importing the auth machinery.
 */
import type { Permissions } from '../auth/permissions.js';

export interface Principal {
  readonly anonymous: boolean;
  /** The token's subject, when it has one. */
  readonly subject: string | undefined;
  /** undefined = unrestricted (authentication is off). */
  readonly permissions: Permissions | undefined;
  /** When the credentials expire (JWT exp, ms since the epoch); the session ends then. */
  readonly expiresAtMs: number | undefined;
}

export type AuthOutcome = { ok: true; principal: Principal } | { ok: false; reason: string };
