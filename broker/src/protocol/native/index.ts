/** The native protocol (PROTOCOL.md) as a ProtocolHandler for the WebSocket transport. */
import { CloseCode } from 'topicast/protocol';
import type { Principal } from '../../auth/index.js';
import type { BrokerContext } from '../../context.js';
import type { Connection } from '../../session/connection.js';
import type { ConnectionHandler, ProtocolHandler } from '../../session/handler.js';
import { NativeSession } from './session.js';

export interface NativeProtocol extends ProtocolHandler {
  readonly sessionCount: number;
  /** Closes every native connection (graceful shutdown): 1001, clients retry elsewhere. */
  closeAll(): void;
}

export function createNativeProtocol(ctx: BrokerContext): NativeProtocol {
  const sessions = new Set<NativeSession>();
  ctx.counters.open.native = 0;
  return {
    name: 'native',
    get sessionCount() {
      return sessions.size;
    },
    open(conn: Connection, principal?: Principal): ConnectionHandler {
      const session = new NativeSession(ctx, conn, principal);
      sessions.add(session);
      ctx.counters.open.native!++;
      ctx.counters.connectionsTotal++;
      return {
        onMessage: (bytes) => session.onMessage(bytes),
        onDrain: () => session.onDrain(),
        onClose: (code, reason, clean) => {
          if (!sessions.delete(session)) return;
          ctx.counters.open.native!--;
          session.onClose(code, reason, clean);
        },
      };
    },
    closeAll() {
      for (const session of [...sessions]) session.close(CloseCode.goingAway, 'server shutting down');
    },
  };
}
