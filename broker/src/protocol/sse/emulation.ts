/**
 * The native protocol over plain HTTP (PROTOCOL.md §10.5), for clients whose WebSocket cannot be
 * opened (a proxy that refuses the upgrade): the SDK's fallback, like Centrifugo's bidirectional
 * emulation. `GET /api/session` is an event stream that carries the server's frames; `POST
 * /api/session/<id>` carries the client's; `DELETE /api/session/<id>` is the clean close.
 *
 * The session behind it is an ordinary native session (protocol/native/): same frames, same
 * outbox, limits, permissions and slow-consumer policy; only its Connection is different: each
 * frame it sends becomes one event `data: <base64 of the frame>`.
 *
 * Invariants
 * - The session id (128 random bits, base64url) is the only key to the session's POSTs: it is
 *   sent once, in the stream's first event, to the client that authenticated the stream.
 * - A POST's frames reach the session in order; the client sends one POST at a time.
 * - The session ends when the stream ends (either side); a DELETE with code 1000 ends it clean
 *   (no will), exactly like a WebSocket close 1000.
 */
import { randomBytes } from 'node:crypto';
import { CloseCode, ErrorCode, base64 } from 'topicast/protocol';
import type { Principal } from '../../auth/index.js';
import type { Connection, SendResult } from '../../session/connection.js';
import type { ConnectionHandler, HttpAnswer, ProtocolHandler } from '../../session/handler.js';
import { closeEvent, HEARTBEAT } from './event.js';

const encoder = new TextEncoder();

/** The Connection a native session writes to: each frame one SSE event on the stream. */
class FrameStream implements Connection {
  constructor(private readonly stream: Connection) {}

  get remoteAddress(): string {
    return this.stream.remoteAddress;
  }

  send(frame: Uint8Array): SendResult {
    return this.stream.send(encoder.encode(`data: ${base64(frame)}\n\n`));
  }

  bufferedBytes(): number {
    return this.stream.bufferedBytes();
  }

  cork(fn: () => void): void {
    this.stream.cork(fn);
  }

  /** The broker ends the session: the client learns the close code from a `close` event first. */
  close(code: number, reason: string): void {
    this.stream.cork(() => this.stream.send(closeEvent(code, reason)));
    this.stream.close(code, reason);
  }
}

/** Between the transport's stream and the native session: decides whether the end is clean. */
class EmulatedSession implements ConnectionHandler {
  native: ConnectionHandler | undefined;
  readonly frames: FrameStream;
  /** Set by a DELETE with code 1000 before the stream is ended. */
  private cleanClose = false;

  constructor(readonly id: string, readonly stream: Connection, private readonly ended: (s: EmulatedSession) => void) {
    this.frames = new FrameStream(stream);
  }

  onMessage(bytes: Uint8Array): void {
    this.native?.onMessage(bytes);
  }

  onDrain(): void {
    this.native?.onDrain();
  }

  onClose(code: number, reason: string): void {
    this.ended(this);
    this.native?.onClose(this.cleanClose ? 1000 : code, reason, this.cleanClose);
  }

  endClean(code: number): void {
    this.cleanClose = code === 1000;
    this.stream.close(code, 'client closed');
  }
}

export interface Emulation {
  readonly size: number;
  /** Opens a session on a started stream: its first event names the session. */
  open(stream: Connection, principal: Principal | undefined): ConnectionHandler;
  /** The client's frames for session `id`: a sequence of (u32 big-endian length, frame). */
  post(id: string, body: Uint8Array): HttpAnswer;
  /** The client closes session `id` with `code` (1000: clean, no will). */
  end(id: string, code: number): HttpAnswer;
  /** Heartbeat comments on every session's stream. */
  heartbeat(): void;
}

export function createEmulation(native: ProtocolHandler, maxFrameBytes: number, onEnded: () => void): Emulation {
  const sessions = new Map<string, EmulatedSession>();
  const ended = (s: EmulatedSession): void => {
    if (sessions.delete(s.id)) onEnded();
  };
  return {
    get size() {
      return sessions.size;
    },
    open(stream, principal) {
      const id = randomBytes(16).toString('base64url');
      const session = new EmulatedSession(id, stream, ended);
      sessions.set(id, session);
      stream.cork(() => stream.send(encoder.encode(`event: session\ndata: {"id":"${id}"}\n\n`)));
      session.native = native.open(session.frames, principal);
      return session;
    },
    post(id, body) {
      const session = sessions.get(id);
      if (session === undefined) return { status: 404, code: ErrorCode.badFrame, message: 'no such session (ended, or on another node): open a new one' };
      let at = 0;
      while (at < body.length) {
        if (at + 4 > body.length) return malformed(session, 'a frame length is cut off');
        const length = ((body[at]! << 24) >>> 0) + (body[at + 1]! << 16) + (body[at + 2]! << 8) + body[at + 3]!;
        at += 4;
        if (length > maxFrameBytes) return malformed(session, `a frame exceeds ${maxFrameBytes} bytes`);
        if (at + length > body.length) return malformed(session, 'a frame is cut off');
        session.onMessage(body.subarray(at, at + length));
        at += length;
      }
      return { status: 204 };
    },
    end(id, code) {
      const session = sessions.get(id);
      if (session === undefined) return { status: 404, code: ErrorCode.badFrame, message: 'no such session' };
      session.endClean(code);
      return { status: 204 };
    },
    heartbeat() {
      for (const s of sessions.values()) s.stream.cork(() => s.stream.send(HEARTBEAT));
    },
  };
}

/** A body that is not a sequence of frames is a protocol error, like a malformed frame (PROTOCOL.md §6). */
function malformed(session: EmulatedSession, why: string): HttpAnswer {
  session.frames.close(CloseCode.protocolError, 'malformed request');
  return { status: 400, code: ErrorCode.badFrame, message: `malformed frames: ${why}` };
}
