/**
 * An HTTP streaming session (PROTOCOL.md §10): one `GET /api/subscribe` response, an ordinary
 * session behind the outbox like a native one — same limits, same slow-consumer policy, same
 * paced snapshot and replay (session/subscribe.ts) — that writes Server-Sent Events.
 *
 * Invariants
 * - Written in order through the outbox: `retry:`, then `resumed` (for a Last-Event-ID), then the
 *   retained snapshot or the replay (paced), then `snapshot-end`, then live messages.
 * - The request was checked before the response started (index.ts `check`): nothing here refuses.
 * - Permissions as for native sessions: snapshot and replay filtered per topic, live deliveries
 *   checked per topic while a filter overlaps a deny rule; a token's `exp` ends the stream.
 * - Receives nothing: a stream is one-way.
 */
import { CloseCode } from 'topicast/protocol';
import type { Permissions, Principal } from '../../auth/index.js';
import type { BrokerContext } from '../../context.js';
import type { StreamPosition } from '../../core/history.js';
import type { Message } from '../../core/message.js';
import type { Subscriber, SubscriptionOptions } from '../../core/router.js';
import type { Connection } from '../../session/connection.js';
import type { ConnectionHandler } from '../../session/handler.js';
import { Outbox } from '../../session/outbox.js';
import { planSubscribe, ReplaySource, SnapshotSource } from '../../session/subscribe.js';
import { closeEvent, HEARTBEAT, liveEvent, replayedEvent, resumedEvent, retainedEvent, snapshotEndEvent } from './event.js';

/** What a checked `GET /api/subscribe` asks for. */
export interface StreamRequest {
  filters: string[];
  /** From `Last-Event-ID`: resume like a native SUBSCRIBE with `resume` (PROTOCOL.md §4.6). */
  resume: StreamPosition | undefined;
}

const SSE_OPTIONS: SubscriptionOptions = Object.freeze({ qos: 0 });

export class SseSession implements Subscriber, ConnectionHandler {
  routerStamp = 0;
  private readonly outbox: Outbox;
  private readonly permissions: Permissions | undefined;
  /** Filters that overlap a deny rule: while any is held, each delivery is checked per topic. */
  private filtered = false;
  private closed = false;
  private expiryTimer: NodeJS.Timeout | undefined = undefined;
  private readonly epoch: string | undefined;

  constructor(
    private readonly ctx: BrokerContext,
    conn: Connection,
    start: Uint8Array,
    private readonly request: StreamRequest,
    private readonly ended: (session: SseSession) => void,
    principal: Principal | undefined,
  ) {
    this.permissions = principal?.permissions;
    this.epoch = ctx.router.history?.epoch;
    this.outbox = new Outbox(conn, ctx.outboxLimits, ctx.outboxStats, ctx.flusher);
    this.outbox.pushControl(start);
    if (principal?.expiresAtMs !== undefined) this.armExpiry(principal.expiresAtMs + ctx.sessionLimits.authClockSkewMs);
  }

  /** Subscribes and queues the snapshot or replay; with a cluster bus, after its retained values arrived. */
  start(): void {
    const mirrored = this.ctx.cluster?.prepare(this.request.filters);
    if (mirrored === undefined) return this.subscribe();
    void mirrored.then(() => {
      if (!this.closed) this.subscribe();
    });
  }

  private subscribe(): void {
    const { router } = this.ctx;
    const { filters, resume } = this.request;
    const permissions = this.permissions;
    for (const filter of filters) {
      if (permissions?.canSubscribe(filter) === 'filtered') this.filtered = true;
      router.subscribe(this, filter, SSE_OPTIONS);
    }
    // One synchronous turn with the subscriptions above (session/subscribe.ts): no gap, no duplicate.
    const { snapshot, replay, result } = planSubscribe(this.ctx, filters, { resume }, permissions && ((topic) => this.readable(topic)));
    if (resume) this.outbox.pushControl(resumedEvent(result));
    if (snapshot.length > 0) this.outbox.pushSource(new SnapshotSource(snapshot, retainedEvent));
    if (replay !== undefined && replay.length > 0) this.outbox.pushSource(new ReplaySource(replay, (m) => replayedEvent(m, this.epoch)));
    this.outbox.pushControl(snapshotEndEvent(result));
  }

  private readable(topic: string): boolean {
    if (this.permissions!.canRead(topic)) return true;
    this.ctx.auth.stats.withheld++;
    return false;
  }

  // ---- router side ----------------------------------------------------------

  deliver(message: Message): void {
    if (this.filtered && !this.permissions!.canRead(message.topic)) {
      this.ctx.auth.stats.withheld++;
      return;
    }
    this.outbox.pushData(liveEvent(message, this.epoch), message.topic);
  }

  // ---- transport side -------------------------------------------------------

  onMessage(): void {
    // A stream carries nothing from the client: the transport never calls this.
  }

  onDrain(): void {
    this.outbox.flush();
  }

  onClose(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.expiryTimer);
    this.ended(this);
    this.outbox.close();
    for (const filter of this.request.filters) this.ctx.router.unsubscribe(this, filter);
  }

  /** A comment line (index.ts sends one to every stream periodically). */
  heartbeat(): void {
    if (!this.closed) this.outbox.pushControl(HEARTBEAT);
  }

  /** Ends the stream from the broker's side, saying why in a `close` event (shutdown, expiry). */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.outbox.pushControl(closeEvent(code, reason));
    this.outbox.flush();
    this.outbox.conn.close(code, reason);
  }

  /** Ends the stream when the token expires (plus the clock tolerance it was accepted with). */
  private armExpiry(atMs: number): void {
    // setTimeout holds at most 2^31-1 ms (~24.8 days): longer tokens re-arm on the way.
    const delayMs = Math.min(Math.max(0, atMs - this.ctx.now()), 0x7fffffff);
    this.expiryTimer = setTimeout(() => {
      if (this.closed) return;
      if (this.ctx.now() < atMs) return this.armExpiry(atMs);
      this.ctx.auth.stats.expired++;
      this.close(CloseCode.unauthenticated, 'token expired');
    }, delayMs);
  }
}
