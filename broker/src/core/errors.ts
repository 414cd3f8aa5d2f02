/**
 * The broker's one error registry (STYLE.md "Errors"). Two tables, both pure data:
 *
 * - `BROKER_ERRORS`: what the broker's modules throw, by stable code, with how the process ends
 *   when one stops start-up (exit 2: the operator must change something; exit 1: a fault).
 *   Every thrown error class extends `BrokerError` and names its kind here.
 * - `REFUSALS`: what a client is refused (a connection, a publish), by stable code, with its
 *   wire form on every edge: the native error code (PROTOCOL.md §5), the MQTT 5 reason code
 *   (MQTT 5 §2.4; 3.1.1 maps it through `returnCodeFor`), the HTTP status. Hot paths return a
 *   refusal code (session/admission.ts); each edge looks its wire form up here, never in a table
 *   of its own.
 *
 * Invariants: codes never change once shipped (they reach logs and tests); the MQTT column
 * holds the numbers of protocol/mqtt/reasons.ts (a unit test compares them: core imports no protocol).
 */
import { ErrorCode } from 'topicast/protocol';

export const BROKER_ERRORS = {
  /** A setting, or what it points at, is unusable: one line naming it, exit 2. */
  config: { exit: 2 },
  /** A persistent store holds damaged acknowledged data (broker/STORAGE.md): exit 2 until --data-recover. */
  'data-corruption': { exit: 2 },
  /** A store could not read or write (disk full, I/O): a fault, exit 1. */
  store: { exit: 1 },
  /** The cluster bus cannot take a publish now (outage buffer full); carries a retry hint. */
  'bus-refused': { exit: 1 },
  /** The cluster bus is unreachable. */
  'bus-unavailable': { exit: 1 },
  /** A topic cannot be carried by the bus (cluster/subject.ts). */
  subject: { exit: 1 },
  /** A bus envelope could not be decoded (cluster/nats-envelope.ts). */
  envelope: { exit: 1 },
} as const;

export type BrokerErrorCode = keyof typeof BROKER_ERRORS;

/**
 * Base of every error the broker throws: `kind` is its entry in BROKER_ERRORS (not `code`, which
 * some errors carry for the OS's errno, e.g. a StoreError's ENOSPC).
 */
export class BrokerError extends Error {
  constructor(readonly kind: BrokerErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
  }

  /** The exit status when this error stops start-up. */
  get exitCode(): number {
    return BROKER_ERRORS[this.kind].exit;
  }
}

/** The exit status for whatever stopped start-up: the registry's for a BrokerError, 1 (a bug) otherwise. */
export function exitCodeOf(err: unknown): number {
  return err instanceof BrokerError ? err.exitCode : 1;
}

export interface RefusalWire {
  /** Native error code (PROTOCOL.md §5), also in the JSON body of an HTTP refusal. */
  readonly code: ErrorCode;
  /** MQTT 5 reason code (MQTT 5 §2.4). */
  readonly mqtt: number;
  /** HTTP status of a refused request or upgrade. */
  readonly status: number;
}

/**
 * Every refusal of a client, by stable code. The order of the publish checks is fixed in
 * session/admission.ts (`$SYS`, permission, rate, size, retained bounds); the counter each
 * bumps is kept there too, in one place.
 */
export const REFUSALS = {
  // -- connections (admitConnection, authenticate) --
  /** The Origin header is not allowed (cross-site WebSocket hijacking guard, docs/SECURITY.md). */
  origin: { code: ErrorCode.notAuthorized, mqtt: 0x87, status: 403 },
  /** The node drains (session/drain.ts): connect to another one. */
  draining: { code: ErrorCode.goingAway, mqtt: 0x8b, status: 503 },
  /** Out of file descriptors (transport/admission.ts). */
  descriptors: { code: ErrorCode.tooManyConnections, mqtt: 0x89, status: 503 },
  /** maxConnections reached. */
  capacity: { code: ErrorCode.tooManyConnections, mqtt: 0x9f, status: 503 },
  /** A per-IP limit (connections, connect rate, authentication backoff), docs/SECURITY.md. */
  'per-ip': { code: ErrorCode.tooManyConnections, mqtt: 0x9f, status: 429 },
  /** Too many failed authentications from the address: wait. */
  'auth-backoff': { code: ErrorCode.unauthenticated, mqtt: 0x9f, status: 429 },
  /** Credentials missing, invalid or expired. */
  unauthenticated: { code: ErrorCode.unauthenticated, mqtt: 0x86, status: 401 },
  // -- publishes (admitPublish), in the order they are checked --
  /** `$SYS/...` is published by the broker only (DESIGN.md "Topics"). */
  'broker-topic': { code: ErrorCode.notAuthorized, mqtt: 0x87, status: 403 },
  /** The principal's permissions do not cover the topic. */
  'not-authorized': { code: ErrorCode.notAuthorized, mqtt: 0x87, status: 403 },
  /** More than maxPublishesPerSec on this connection. */
  'rate-limited': { code: ErrorCode.rateLimited, mqtt: 0x97, status: 429 },
  /** The payload exceeds maxPayloadBytes. */
  'payload-too-large': { code: ErrorCode.payloadTooLarge, mqtt: 0x97, status: 413 },
  /** A retained value the store has no room for (maxRetainedTopics, maxRetainedBytes). */
  'retained-full': { code: ErrorCode.unavailable, mqtt: 0x97, status: 503 },
} as const satisfies Record<string, RefusalWire>;

export type RefusalCode = keyof typeof REFUSALS;

/** A refusal with the message the client is told (never a secret). */
export interface Refused {
  readonly refusal: RefusalCode;
  readonly message: string;
  /** When the client may retry (Retry-After, seconds), where the refusal has one. */
  readonly retryAfterSec?: number;
}
