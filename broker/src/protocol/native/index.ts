/** The native protocol (PROTOCOL.md) as a ProtocolHandler for the WebSocket transport. */
import { CloseCode, Op, PROTOCOL_VERSION, SUBPROTOCOL, encodeFrame, type TopicLimits } from 'topicast/protocol';
import type { Principal } from '../../session/principal.js';
import type { BrokerContext } from '../../context.js';
import type { PublishLimits } from '../../session/admission.js';
import type { Connection } from '../../session/connection.js';
import type { ConnectionHandler, ProtocolHandler } from '../../session/handler.js';
import { spreadDelaysMs } from '../../session/drain.js';
import { FanoutGroups } from '../../session/fanout-group.js';
import { liveFrame, NATIVE_OPTIONS, NativeSession, type NativeShared } from './session.js';

export interface NativeProtocol extends ProtocolHandler {
  readonly sessionCount: number;
  /** Fan-out groups now, and frames written through them so far (session/fanout-group.ts). */
  readonly fanout: { readonly groups: number; readonly written: number };
  /** Closes every native connection (graceful shutdown): 1001, clients retry elsewhere. */
  closeAll(): void;
  /**
   * Drain (PROTOCOL.md §4.7): every open connection gets a DRAIN frame now, its reconnectAfterMs
   * spread uniformly over `windowMs`; the SDK leaves on its own, closeAll ends the stragglers.
   */
  drain(windowMs: number): () => void;
}

/** The largest native frame: room for the largest payload plus topic and framing (one frame per WebSocket message). */
export function nativeFrameLimit(publish: PublishLimits, topics: TopicLimits): number {
  return publish.maxPayloadBytes + topics.maxTopicBytes + 1024;
}

export function createNativeProtocol(ctx: BrokerContext): NativeProtocol {
  const sessions = new Set<NativeSession>();
  ctx.counters.open.native = 0;
  let notified = 0;
  ctx.metrics.register('topicast_drain_native_notified_total', 'counter', 'Native connections sent a DRAIN frame', () => notified);
  const welcome = encodeFrame({
    op: Op.welcome,
    info: { version: PROTOCOL_VERSION, server: `topicast/${ctx.version}`, maxPayloadBytes: ctx.publishLimits.maxPayloadBytes, idleTimeoutSec: ctx.sessionLimits.idleTimeoutSec },
  });
  // One object for every session (no closures per connection: they cost memory at 10k+ connections).
  const shared: NativeShared = {
    ended(session) {
      if (sessions.delete(session)) ctx.counters.open.native!--;
    },
    groups: new FanoutGroups(ctx.router, ctx.flusher, ctx.outboxLimits.maxBufferedBytes, { frameOf: liveFrame, options: NATIVE_OPTIONS }),
  };
  const groups = shared.groups;
  ctx.metrics.register('topicast_fanout_groups', 'gauge', 'Filters whose native subscribers are delivered to as one fan-out group', () => groups.size);
  ctx.metrics.register('topicast_fanout_group_frames_total', 'counter', 'Deliveries written straight from a fan-out group (the rest went through each connection\'s queue)', () => groups.written);
  return {
    name: 'native',
    websocket: { path: '/ws', subprotocol: SUBPROTOCOL, maxMessageBytes: nativeFrameLimit(ctx.publishLimits, ctx.topicLimits), authentication: 'upgrade' },
    get sessionCount() {
      return sessions.size;
    },
    fanout: {
      get groups() {
        return groups.size;
      },
      get written() {
        return groups.written;
      },
    },
    open(conn: Connection, principal?: Principal): ConnectionHandler {
      const session = new NativeSession(ctx, conn, welcome, shared, principal);
      sessions.add(session);
      ctx.counters.open.native!++;
      ctx.counters.connectionsTotal++;
      return session;
    },
    closeAll() {
      for (const session of [...sessions]) session.close(CloseCode.goingAway, 'server shutting down');
    },
    drain(windowMs) {
      const delaysMs = spreadDelaysMs(sessions.size, windowMs);
      let i = 0;
      for (const session of sessions) {
        session.sendControl(encodeFrame({ op: Op.drain, info: { reconnectAfterMs: delaysMs[i++]! } }));
        notified++;
      }
      return () => {}; // told at once: nothing left scheduled
    },
  };
}
