/**
 * A connection whose token is still being checked: the WebSocket is already
 * open (upgraded synchronously), the protocol session is not. Messages that
 * arrive meanwhile (clients may send requests right after the upgrade,
 * PROTOCOL.md §1) are copied and replayed in order once the token is accepted;
 * a refused token closes the connection before any frame of the protocol is sent.
 *
 * Why not authenticate before upgrading: a uWebSockets.js upgrade done later,
 * from a promise, inside `res.cork` intermittently closed the new socket (1006;
 * measured on 2% of JWT connects, whose verification resolves on the thread
 * pool), and without the cork uWS warns. Upgrading at once avoids both.
 *
 * Bound: at most `maxBufferedBytes` wait here; beyond it the connection is closed (1008).
 */
import { CloseCode } from 'topicast/protocol';
import type { ConnectionHandler } from './handler.js';
import type { AuthOutcome, Principal } from './principal.js';

export interface PendingCallbacks {
  /** The token was accepted: opens the protocol session. */
  open(principal: Principal): ConnectionHandler;
  /** The token was refused: the caller closes with 4001 and the reason. */
  refuse(reason: string): void;
  /** Closes the connection (buffer bound exceeded, or a handler failed while replaying). */
  close(code: number, reason: string, err?: unknown): void;
}

export class AuthenticatingHandler implements ConnectionHandler {
  private target: ConnectionHandler | undefined;
  private buffered: Uint8Array[] = [];
  private bufferedBytes = 0;
  private closed = false;

  constructor(outcome: Promise<AuthOutcome>, private readonly callbacks: PendingCallbacks, private readonly maxBufferedBytes: number) {
    void outcome.then((auth) => this.settle(auth));
  }

  private settle(auth: AuthOutcome): void {
    if (this.closed) return;
    if (!auth.ok) {
      this.buffered = [];
      this.callbacks.refuse(auth.reason);
      return;
    }
    const target = this.callbacks.open(auth.principal);
    this.target = target;
    const replay = this.buffered;
    this.buffered = [];
    try {
      for (const bytes of replay) {
        if (this.closed) break;
        target.onMessage(bytes);
      }
    } catch (err) {
      this.callbacks.close(CloseCode.internalError, 'internal error', err);
    }
  }

  onMessage(bytes: Uint8Array): void {
    if (this.target) return this.target.onMessage(bytes);
    if (this.closed) return;
    this.bufferedBytes += bytes.byteLength;
    if (this.bufferedBytes > this.maxBufferedBytes) {
      this.buffered = [];
      this.closed = true; // nothing more is kept or opened; the transport's close follows
      this.callbacks.close(CloseCode.policyViolation, 'too much data before authentication completed');
      return;
    }
    this.buffered.push(new Uint8Array(bytes)); // a copy (not `slice`, a view on a Buffer): the transport's bytes are only valid during this call (STYLE.md #4)
  }

  onDrain(): void {
    this.target?.onDrain();
  }

  onClose(code: number, reason: string, clean: boolean): void {
    this.closed = true;
    this.buffered = [];
    this.target?.onClose(code, reason, clean);
  }
}
