/**
 * The seam between transports and protocols: a transport (uws.ts, tcp.ts)
 * opens a ConnectionHandler per connection from a ProtocolHandler and feeds it
 * bytes; the protocol never sees a socket.
 */
import type { Principal } from '../auth/index.js';
import type { Connection } from './connection.js';

export interface ConnectionHandler {
  /** One transport message (a WebSocket message or a TCP chunk). `bytes` is valid only during the call: copy what you keep. */
  onMessage(bytes: Uint8Array): void;
  /** The transport buffer drained: write more. */
  onDrain(): void;
  /** The transport closed (either side). `clean` is true for a close the client initiated with a normal code. */
  onClose(code: number, reason: string, clean: boolean): void;
}

export interface ProtocolHandler {
  readonly name: string;
  /** `principal`: who the transport authenticated at the upgrade (native WebSocket); protocols that authenticate in-band ignore it. */
  open(conn: Connection, principal?: Principal): ConnectionHandler;
}
