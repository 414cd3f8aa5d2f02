/**
 * Authentication and authorization for every way in (docs/SECURITY.md).
 *
 * `createAuth(config)` reads the token file and the JWT key once at start-up
 * (bad files stop start-up with the file named) and returns an `Auth` that
 * every transport asks the same question: "this token (or none), from this
 * client id: who is it and what may it do?" The answer is a `Principal`:
 * - `permissions: undefined` means unrestricted (authentication is off);
 * - `expiresAtMs` tells sessions when to end the connection (JWT `exp`).
 *
 * Tokens are secrets: nothing here logs them or puts them in a reason.
 */
import { ConfigError, type BrokerConfig } from '../config.js';
import { AbuseGuard } from './abuse.js';
import { createJwtVerifier, type JwtVerifier } from './jwt.js';
import { checkOrigin, normalizeOrigins } from './origin.js';
import { Permissions } from './permissions.js';
import type { AuthOutcome, Principal } from '../session/principal.js';
import { loadTokenFile, parseRules, sha256Hex, type TokenEntry } from './token-file.js';

export { Permissions, filterCovers, filtersOverlap, substitute, type PermissionRules, type SubscribeDecision } from './permissions.js';
export { AUTH_SETTINGS } from './settings.js';
export { AbuseGuard, addressKey, type AbuseLimits, type AbuseStats, type Refusal } from './abuse.js';
export type { AuthOutcome, Principal } from '../session/principal.js';

/** Counters for /metrics and $SYS. */
export interface AuthStats {
  /** Connections or requests refused because of missing or bad credentials. */
  failures: number;
  /** Publishes, wills and subscriptions refused by permissions. */
  denied: number;
  /** Deliveries (live or retained) withheld per topic by a deny rule. */
  withheld: number;
  /** Connections ended because their token expired. */
  expired: number;
  /** WebSocket upgrades refused by the origin allowlist. */
  originRefused: number;
}

export interface Auth {
  /** True when a token file or a JWT key is configured. */
  readonly configured: boolean;
  /** Whether clients without credentials are let in. */
  readonly anonymous: boolean;
  readonly stats: AuthStats;
  /** Per-address limits: connections, connect rate, backoff after failed authentication. */
  readonly guard: AbuseGuard;
  /** One line for the start-up log (no secrets). */
  readonly summary: Record<string, unknown>;
  /** `token` undefined = none offered. `clientId` fills `{clientId}` in permissions (MQTT). */
  authenticate(token: string | undefined, clientId?: string): Promise<AuthOutcome>;
  /** Whether a browser upgrade with this Origin header (empty = none) may proceed; `host` is the Host header. */
  originAllowed(origin: string, host: string): boolean;
}

const UNRESTRICTED: Principal = Object.freeze({ anonymous: true, subject: undefined, permissions: undefined, expiresAtMs: undefined });

type AuthConfig = Pick<
  BrokerConfig,
  | 'authTokenFile' | 'authJwtKeyFile' | 'authJwksFile' | 'authJwtAlgorithms' | 'authJwtAudience' | 'authJwtIssuer' | 'authClockSkewSec'
  | 'authPermissionsClaim' | 'authAnonymous' | 'authAnonymousPublish' | 'authAnonymousSubscribe' | 'allowedOrigins'
  | 'maxConnectionsPerIp' | 'connectRatePerIp' | 'connectBurstPerIp' | 'authFailuresBeforeBackoff' | 'authBackoffMaxSec' | 'limitsExemptIps'
>;

function setting<T>(name: string, build: () => T): T {
  try {
    return build();
  } catch (err) {
    throw new ConfigError(`invalid setting ${name}: ${(err as Error).message}`);
  }
}

/** A compact JWS has three base64url parts separated by dots. */
function looksLikeJwt(token: string): boolean {
  return /^[\w-]+\.[\w-]+\.[\w-]*$/.test(token);
}

export function createAuth(config: AuthConfig, now: () => number = Date.now): Auth {
  if (config.authJwtKeyFile !== undefined && config.authJwksFile !== undefined) {
    throw new ConfigError('invalid setting authJwksFile: set either authJwtKeyFile or authJwksFile, not both');
  }
  const badAlg = config.authJwtAlgorithms.find((a) => !['HS256', 'HS384', 'HS512', 'RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'].includes(a));
  if (badAlg !== undefined) throw new ConfigError(`invalid setting authJwtAlgorithms: "${badAlg}" is not a supported JWS algorithm`);
  const tokens: Map<string, TokenEntry> | undefined = config.authTokenFile === undefined ? undefined : setting('authTokenFile', () => loadTokenFile(config.authTokenFile!));
  const hasJwt = config.authJwtKeyFile !== undefined || config.authJwksFile !== undefined;
  const jwt: JwtVerifier | undefined = !hasJwt
    ? undefined
    : setting(config.authJwksFile !== undefined ? 'authJwksFile' : 'authJwtKeyFile', () =>
        createJwtVerifier({
          keyFile: config.authJwtKeyFile,
          jwksFile: config.authJwksFile,
          algorithms: config.authJwtAlgorithms,
          audience: config.authJwtAudience,
          issuer: config.authJwtIssuer,
          clockSkewSec: config.authClockSkewSec,
        }),
      );
  const configured = tokens !== undefined || jwt !== undefined;
  if (!configured && (config.authJwtAudience !== undefined || config.authJwtIssuer !== undefined)) {
    throw new ConfigError('invalid setting authJwtAudience/authJwtIssuer: set authJwtKeyFile or authJwksFile too');
  }
  const anonymous = config.authAnonymous === 'auto' ? !configured : config.authAnonymous === 'true';
  const anonymousRules = { publish: config.authAnonymousPublish, subscribe: config.authAnonymousSubscribe };
  const badAnon = parseRules(anonymousRules, 'authAnonymous');
  if (typeof badAnon === 'string') throw new ConfigError(`invalid setting ${badAnon}`);
  const origins = normalizeOrigins(config.allowedOrigins);
  // Origins are checked whenever access is not wide open: a hostile page must not ride a browser's reachability.
  const checkOrigins = configured || origins.size > 0;
  const stats: AuthStats = { failures: 0, denied: 0, withheld: 0, expired: 0, originRefused: 0 };

  const anonymousPrincipal = (clientId: string | undefined): Principal =>
    configured ? { anonymous: true, subject: undefined, permissions: new Permissions(anonymousRules, { clientId }), expiresAtMs: undefined } : UNRESTRICTED;

  async function authenticate(token: string | undefined, clientId?: string): Promise<AuthOutcome> {
    if (!configured) return { ok: true, principal: UNRESTRICTED }; // a token offered to an open broker is ignored
    if (token === undefined || token === '') {
      if (anonymous) return { ok: true, principal: anonymousPrincipal(clientId) };
      stats.failures++;
      return { ok: false, reason: 'token required' };
    }
    const entry = tokens?.get(sha256Hex(token));
    if (entry !== undefined) {
      return { ok: true, principal: { anonymous: false, subject: entry.sub, permissions: new Permissions(entry.rules, { sub: entry.sub, clientId }), expiresAtMs: undefined } };
    }
    if (jwt === undefined || !looksLikeJwt(token)) {
      stats.failures++;
      return { ok: false, reason: 'token not accepted' };
    }
    const verified = await jwt(token);
    if (!verified.ok) {
      stats.failures++;
      return verified;
    }
    const { payload } = verified;
    const rules = parseRules(payload[config.authPermissionsClaim], `claim ${config.authPermissionsClaim}`);
    if (typeof rules === 'string') {
      stats.failures++;
      return { ok: false, reason: `token ${rules}`.slice(0, 120) };
    }
    const subject = typeof payload.sub === 'string' ? payload.sub : undefined;
    return {
      ok: true,
      principal: {
        anonymous: false,
        subject,
        permissions: new Permissions(rules, { sub: subject, clientId }),
        expiresAtMs: typeof payload.exp === 'number' ? payload.exp * 1000 : undefined,
      },
    };
  }

  return {
    configured,
    anonymous,
    stats,
    guard: new AbuseGuard(config, now),
    summary: {
      tokenFile: config.authTokenFile !== undefined ? `${tokens!.size} tokens` : 'off',
      jwt: jwt === undefined ? 'off' : { algorithms: config.authJwtAlgorithms, audience: config.authJwtAudience ?? null, issuer: config.authJwtIssuer ?? null },
      anonymous,
      origins: checkOrigins ? [...origins] : 'unchecked',
    },
    authenticate,
    originAllowed: (origin, host) => !checkOrigins || checkOrigin(origin, host, origins),
  };
}

