/**
 * What `topicast pub` / `topicast sub` print when something fails: one line that says what
 * happened and what to change, built from the SDK's typed errors (never a stack trace).
 */
import { ClientErrorCode, ConnectionError, ErrorCode, RequestError, TopicastError } from 'topicast';
import { CloseCode } from 'topicast/protocol';
import { CliError, Exit, oneLine } from './args.js';

/** The innermost `cause` that carries a Node system error code (ECONNREFUSED, ENOTFOUND, ...). */
function systemCode(err: unknown): string | undefined {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
  }
  return undefined;
}

/** The HTTP status of a refused WebSocket upgrade (`ws` says "Unexpected server response: 404"). */
function httpStatus(err: unknown): number | undefined {
  const m = /Unexpected server response: (\d{3})/.exec(err instanceof Error ? err.message : String(err));
  return m ? Number(m[1]) : undefined;
}

const CONNECT_HINTS: { readonly [code: string]: string } = {
  ECONNREFUSED: 'connection refused: is the broker running there? Check --url',
  ENOTFOUND: 'host not found: check the host in --url',
  EAI_AGAIN: 'host name lookup failed: check the host in --url and the network',
  EHOSTUNREACH: 'host unreachable: check the host in --url and the network',
  ENETUNREACH: 'network unreachable: check the network',
  ETIMEDOUT: 'timed out: check the host and port in --url and any firewall',
  ECONNRESET: 'the connection was reset: is --url a Topicast broker (ws:// vs wss://)?',
  EPROTO: 'TLS handshake failed: is the port plain ws:// rather than wss://?',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'the broker\'s certificate is self-signed: trust it with NODE_EXTRA_CA_CERTS=ca.pem',
  SELF_SIGNED_CERT_IN_CHAIN: 'the broker\'s certificate chain is not trusted: trust its CA with NODE_EXTRA_CA_CERTS=ca.pem',
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'the broker\'s certificate is not trusted: trust its CA with NODE_EXTRA_CA_CERTS=ca.pem',
  ERR_TLS_CERT_ALTNAME_INVALID: 'the broker\'s certificate does not name this host: use the host name it was issued for in --url',
};

/** Why the broker refused a connection, from the wire code or the close code. */
function refusal(err: TopicastError, withToken: boolean): string | undefined {
  const code = err instanceof ConnectionError && err.closeCode === CloseCode.unauthenticated ? ErrorCode.unauthenticated
    : err instanceof ConnectionError && err.closeCode === CloseCode.notAuthorized ? ErrorCode.notAuthorized
    : err.code;
  switch (code) {
    case ErrorCode.unauthenticated:
      if (withToken && /\bexpired\b/.test(err.message)) return 'the token expired (4001): give a fresh --token';
      return withToken ? 'the broker refused the token (4001: unknown, expired or not yet valid); check --token' : 'the broker requires a token (4001): give --token TOKEN (or TOPICAST_TOKEN)';
    case ErrorCode.notAuthorized:
      return 'not authorized: this token may not do that; use a token whose permissions cover it';
    case ErrorCode.tooManyConnections:
      return 'the broker is at its connection limit: try again later';
    default:
      return undefined;
  }
}

/** What a command was doing when it failed, for its failure line. */
export interface FailureContext {
  url: string;
  /** Whether a token was given (--token or TOPICAST_TOKEN). */
  withToken: boolean;
  /** What the broker was asked for, as a noun: "the message on a/b", "the subscription to a/#". */
  request: string;
  /** The connection had been open (a close, not a failed connect). */
  connected?: boolean;
}

/** Turns whatever a command's SDK calls threw into the `CliError` it exits with. */
export function cliFailure(err: unknown, { url, withToken, request, connected }: FailureContext): CliError {
  if (err instanceof CliError) return err;
  if (err instanceof RequestError) {
    const why = refusal(err, withToken);
    switch (err.code) {
      case ErrorCode.notAuthorized:
        return new CliError(`the broker refused ${request}: not authorized (the token's permissions do not cover it; use another --token)`, Exit.failed);
      case ErrorCode.payloadTooLarge:
        return new CliError(`the broker refused ${request}: ${oneLine(err.message)} (its --max-payload-bytes)`, Exit.failed);
      case ErrorCode.invalidTopic:
      case ErrorCode.invalidFilter:
        return new CliError(`the broker refused ${request}: ${oneLine(err.message)}; change -t`, Exit.usage);
      case ErrorCode.rateLimited:
        return new CliError(`the broker refused ${request}: publish rate limit exceeded (its --max-publishes-per-sec and --publish-burst); send more slowly`, Exit.failed);
      case ErrorCode.tooManySubscriptions:
        return new CliError(`the broker refused ${request}: too many subscriptions (its --max-subscriptions-per-connection); give fewer -t`, Exit.failed);
      default:
        return new CliError(`the broker refused ${request}: ${why ?? oneLine(err.message)}`, Exit.failed);
    }
  }
  if (err instanceof ConnectionError) {
    const why = refusal(err, withToken);
    if (why) return new CliError(`${connected ? `the broker closed the connection (${url})` : `cannot connect to ${url}`}: ${why}`, Exit.failed);
    if (err.code === ClientErrorCode.connectFailed && !connected) {
      const status = httpStatus(err);
      if (status === 401 || status === 403) return new CliError(`cannot connect to ${url}: refused with HTTP ${status}: give a valid --token (or TOPICAST_TOKEN)`, Exit.failed);
      if (status !== undefined) return new CliError(`cannot connect to ${url}: the server answered HTTP ${status}, not a WebSocket: the native endpoint is ws://HOST:PORT/ws; check --url`, Exit.failed);
      const code = systemCode(err);
      const hint = code ? CONNECT_HINTS[code] : undefined;
      if (hint) return new CliError(`cannot connect to ${url}: ${hint}`, Exit.failed);
      return new CliError(`${oneLine(err.message)}; check --url`, Exit.failed);
    }
    return new CliError(`${oneLine(err.message)} (${url})`, Exit.failed);
  }
  if (err instanceof TopicastError) return new CliError(oneLine(err.message), Exit.failed);
  return new CliError(oneLine(err instanceof Error ? err.message : String(err)), Exit.failed);
}
