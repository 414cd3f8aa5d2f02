/**
 * The SDK's typed errors. Every error the SDK hands to an application is a
 * `TopicastError` with a numeric `code`:
 * - codes below 100 are the wire's `ErrorCode` (sdk/src/protocol/errors.ts, PROTOCOL.md §6),
 *   whether the broker sent them or the SDK detected the same problem locally
 *   (an invalid topic is refused before it reaches the wire, with the broker's code);
 * - codes from 100 are the client's own (`ClientErrorCode`): connection loss, queue overflow, codec failures.
 * Subclasses let applications branch with `instanceof`; `code` lets them branch precisely.
 */
import { ERRORS, ErrorCode } from './protocol/index.js';

export { ErrorCode };

/**
 * Codes for failures that happen inside the client rather than at the broker.
 * @example
 * client.on('error', (err) => { if (err.code === ClientErrorCode.codec) console.warn('bad payload', err.topic); });
 */
export const ClientErrorCode = {
  /** The connection dropped while the request was in flight; it may or may not have taken effect. */
  connectionLost: 100,
  /** The client was closed (by `close()`, or for good after a non-retryable close). */
  closed: 101,
  /** The offline publish queue overflowed (see the `queue` option). */
  queueFull: 102,
  /** A payload could not be encoded or decoded with the chosen codec. */
  codec: 103,
  /** No connection could be established (every URL failed, or the broker refused it for good). */
  connectFailed: 104,
  /** An application handler threw; the error is attached as `cause`. */
  handler: 105,
  /** A `request` got no answer within its `timeoutMs` (the request may still have been carried out). */
  timeout: 106,
} as const;
export type ClientErrorCode = (typeof ClientErrorCode)[keyof typeof ClientErrorCode];

/**
 * Base class of every error the SDK produces.
 * @example
 * try { await client.publish('a/b', 1, { ack: true }); }
 * catch (err) { if (err instanceof TopicastError) console.log(err.code, err.message); }
 */
export class TopicastError extends Error {
  override name = 'TopicastError';
  /** An `ErrorCode` (below 100) or a `ClientErrorCode` (100 and above). */
  readonly code: number;
  constructor(code: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * The broker refused a request (an ERROR frame), or the SDK refused it locally for a
 * reason the broker would have given (invalid topic or filter, payload too large).
 * `code` is an `ErrorCode`.
 * @example
 * await client.subscribe('a/#/b').catch((err) => {
 *   if (err instanceof RequestError && err.code === ErrorCode.invalidFilter) showHint(err.message);
 * });
 */
export class RequestError extends TopicastError {
  override name = 'RequestError';
}

/**
 * The connection failed, dropped or was closed. `code` is a `ClientErrorCode`
 * (`connectionLost`, `closed`, `connectFailed`) or, when the broker closed the
 * connection with a known reason, the matching `ErrorCode` (e.g. `unauthenticated`).
 * `closeCode` is the WebSocket close code when there was one.
 * @example
 * client.on('error', (err) => { if (err instanceof ConnectionError) console.log('link', err.closeCode, err.message); });
 */
export class ConnectionError extends TopicastError {
  override name = 'ConnectionError';
  /** WebSocket close code (1006 when the link vanished without one). */
  readonly closeCode: number | undefined;
  constructor(code: number, message: string, closeCode?: number, options?: { cause?: unknown }) {
    super(code, message, options);
    this.closeCode = closeCode;
  }
}

/**
 * A publish made while disconnected did not fit in the offline queue (`queue.overflow`).
 * @example
 * client.publish('a', 1).catch((err) => { if (err instanceof QueueFullError) dropped++; });
 */
export class QueueFullError extends TopicastError {
  override name = 'QueueFullError';
  /** Topic of the message that was dropped. */
  readonly topic: string;
  constructor(topic: string, message: string) {
    super(ClientErrorCode.queueFull, message);
    this.topic = topic;
  }
}

/**
 * A payload could not be encoded (publish) or decoded (delivery) by the codec.
 * @example
 * client.on('error', (err) => { if (err instanceof CodecError) console.warn(err.topic, err.cause); });
 */
export class CodecError extends TopicastError {
  override name = 'CodecError';
  /** Topic of the message. */
  readonly topic: string;
  constructor(topic: string, message: string, cause: unknown) {
    super(ClientErrorCode.codec, message, { cause });
    this.topic = topic;
  }
}

/**
 * Maps a wire `ErrorCode` (from an ERROR frame) to its typed error.
 * @example
 * const err = errorFromCode(ErrorCode.invalidTopic, 'topic must not contain wildcards');
 * err instanceof RequestError; // true
 */
export function errorFromCode(code: number, message?: string): RequestError {
  const known = (ERRORS as { readonly [k: number]: { message: string } | undefined })[code];
  return new RequestError(code, message || known?.message || `error ${code}`);
}

/** WebSocket close codes the broker uses for a reason with an ErrorCode (the inverse of ERRORS[*].close). */
const CLOSE_TO_CODE: { readonly [close: number]: number } = {
  4001: ErrorCode.unauthenticated,
  4003: ErrorCode.notAuthorized,
  4008: ErrorCode.slowConsumer,
  4009: ErrorCode.idleTimeout,
  4029: ErrorCode.rateLimited,
  1001: ErrorCode.goingAway,
  1002: ErrorCode.badFrame,
  1011: ErrorCode.internal,
  1013: ErrorCode.tooManyConnections,
};

/**
 * The typed error for a connection that closed with `closeCode`.
 * @example
 * errorFromClose(4003, 'not authorized').code === ErrorCode.notAuthorized; // true
 */
export function errorFromClose(closeCode: number, reason: string, cause?: unknown): ConnectionError {
  const code = CLOSE_TO_CODE[closeCode] ?? ClientErrorCode.connectionLost;
  const text = reason ? `connection closed (${closeCode}): ${reason}` : `connection closed (${closeCode})`;
  return new ConnectionError(code, text, closeCode, cause === undefined ? undefined : { cause });
}
