/**
 * What a session needs from its transport: the seam between per-connection state
 * and sockets. uws.ts implements it for WebSockets, tcp.ts for MQTT over TCP,
 * and tests use an in-memory one.
 */

/** Result of a send, as uWebSockets.js reports it (STYLE.md #5). */
export const SendResult = {
  /** Accepted but buffered: the socket is backed up; wait for drain. */
  backpressure: 0,
  /** Written (or corked for writing). */
  sent: 1,
  /** Dropped by the transport's own hard limit. */
  dropped: 2,
} as const;
export type SendResult = (typeof SendResult)[keyof typeof SendResult];

export interface Connection {
  /** Sends one message (one WebSocket message, or raw bytes on a stream). */
  send(bytes: Uint8Array): SendResult;
  /** Bytes accepted by `send` but not yet written to the network. */
  bufferedBytes(): number;
  /** Runs `fn` with sends coalesced into as few writes as possible. */
  cork(fn: () => void): void;
  /** Closes with a code and a short reason (WebSocket close code, or an MQTT reason for MQTT transports). */
  close(code: number, reason: string): void;
  /** Remote address as text, for logs and per-IP limits. */
  readonly remoteAddress: string;
  /**
   * The protocol's handshake completed (MQTT CONNECT accepted): the transport stops counting the
   * connection as pending (transport/admission.ts). Absent where the upgrade already settled it.
   */
  established?(): void;
  /**
   * True when the bytes handed to the handler's `onMessage` stay valid after the call and are the
   * handler's to keep: a TCP socket's chunks (Node gives every read its own buffer), so a protocol
   * may keep views into them instead of copying each read. Absent: valid only during the call.
   */
  readonly readsOwned?: boolean;
}
