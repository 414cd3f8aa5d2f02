/**
 * The wire's error registry: one stable numeric code per failure, its default
 * text, and how a connection that fails this way is closed. The broker sends
 * these codes in ERROR frames and close frames; the SDK maps them to typed
 * errors and decides from `isRetryable` whether reconnecting can help.
 * Codes are part of protocol v1 (PROTOCOL.md §6): never renumber, only add.
 */

/** Thrown by frame and MessagePack decoders, and only by them. */
export class DecodeError extends Error {
  override readonly name = 'DecodeError';
  readonly code = ErrorCode.badFrame;
}

export const ErrorCode = {
  /** The frame is not valid MessagePack or not a known frame shape. */
  badFrame: 1,
  /** A topic name is empty, too long, too deep, has a wildcard or a NUL. */
  invalidTopic: 2,
  /** A filter breaks the wildcard rules or the length/depth limits. */
  invalidFilter: 3,
  /** The payload exceeds `maxPayloadBytes`. */
  payloadTooLarge: 4,
  /** The connection would hold more than `maxSubscriptionsPerConnection`. */
  tooManySubscriptions: 5,
  /** Publishing faster than `maxPublishesPerSec`; the message was dropped. */
  rateLimited: 6,
  /** The client may not do this (permissions). */
  notAuthorized: 7,
  /** Credentials missing, invalid or expired. */
  unauthenticated: 8,
  /** The client could not keep up; closed by the `disconnect` policy. */
  slowConsumer: 9,
  /** The broker is shutting down or draining this node. */
  goingAway: 10,
  /** An unexpected broker failure; it was logged. */
  internal: 11,
  /** The broker is at `maxConnections`. */
  tooManyConnections: 12,
  /** No frame arrived within the idle timeout. */
  idleTimeout: 13,
  /** The request id is already in flight on this connection. */
  duplicateId: 14,
  /** The broker cannot serve this right now (e.g. storage unavailable); retry later. */
  unavailable: 15,
  /** A well-formed request with values the broker refuses (e.g. a history window beyond its limits). */
  invalidRequest: 16,
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** WebSocket close codes used by Topicast (RFC 6455 §7.4 plus the 4000–4999 private range). */
export const CloseCode = {
  normal: 1000,
  goingAway: 1001,
  protocolError: 1002,
  invalidPayload: 1007,
  policyViolation: 1008,
  messageTooBig: 1009,
  internalError: 1011,
  tryAgainLater: 1013,
  unauthenticated: 4001,
  notAuthorized: 4003,
  slowConsumer: 4008,
  idleTimeout: 4009,
  rateLimited: 4029,
} as const;
export type CloseCode = (typeof CloseCode)[keyof typeof CloseCode];

const RETRYABLE: ReadonlySet<number> = new Set<number>([
  CloseCode.goingAway,
  CloseCode.internalError,
  CloseCode.tryAgainLater,
  CloseCode.slowConsumer,
  CloseCode.idleTimeout,
  CloseCode.rateLimited,
  1005, // no status: the peer vanished without a close frame
  1006, // abnormal closure: network failure, process killed
]);

/**
 * Whether a client should reconnect after a close with this code.
 * @example
 * ws.onclose = (e) => { if (isRetryable(e.code)) scheduleReconnect(); };
 */
export function isRetryable(code: number): boolean {
  // Unauthenticated is retryable only with fresh credentials; the SDK checks for a token callback.
  return RETRYABLE.has(code);
}

export interface ErrorInfo {
  readonly message: string;
  /** How the broker closes a connection that fails this way, or undefined when it stays open. */
  readonly close?: CloseCode;
  /** The closest MQTT 5 reason code, for the MQTT listener. */
  readonly mqttReason?: number;
}

export const ERRORS: { readonly [K in ErrorCode]: ErrorInfo } = {
  [ErrorCode.badFrame]: { message: 'malformed frame', close: CloseCode.protocolError, mqttReason: 0x81 },
  [ErrorCode.invalidTopic]: { message: 'invalid topic name', mqttReason: 0x90 },
  [ErrorCode.invalidFilter]: { message: 'invalid topic filter', mqttReason: 0x8f },
  [ErrorCode.payloadTooLarge]: { message: 'payload too large', mqttReason: 0x95 },
  [ErrorCode.tooManySubscriptions]: { message: 'too many subscriptions', mqttReason: 0x97 },
  [ErrorCode.rateLimited]: { message: 'publish rate limit exceeded', mqttReason: 0x96 },
  [ErrorCode.notAuthorized]: { message: 'not authorized', mqttReason: 0x87 },
  [ErrorCode.unauthenticated]: { message: 'authentication required or failed', close: CloseCode.unauthenticated, mqttReason: 0x86 },
  [ErrorCode.slowConsumer]: { message: 'slow consumer', close: CloseCode.slowConsumer, mqttReason: 0x97 },
  [ErrorCode.goingAway]: { message: 'server going away', close: CloseCode.goingAway, mqttReason: 0x8b },
  [ErrorCode.internal]: { message: 'internal error', close: CloseCode.internalError, mqttReason: 0x83 },
  [ErrorCode.tooManyConnections]: { message: 'too many connections', close: CloseCode.tryAgainLater, mqttReason: 0x9f },
  [ErrorCode.idleTimeout]: { message: 'idle timeout', close: CloseCode.idleTimeout, mqttReason: 0x8d },
  [ErrorCode.duplicateId]: { message: 'request id already in flight' },
  [ErrorCode.unavailable]: { message: 'temporarily unavailable', mqttReason: 0x88 },
  [ErrorCode.invalidRequest]: { message: 'invalid request', mqttReason: 0x83 },
};
