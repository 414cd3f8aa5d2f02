/**
 * What a subscribe request does, whatever the protocol carrying it (native SUBSCRIBE,
 * `GET /api/subscribe`): the checks it must pass, and the plan of what follows the answer —
 * the retained snapshot (filtered per topic by read permission) or, for a resume, the history
 * replay (PROTOCOL.md §4.6) — plus the paced sources that write either through the outbox.
 *
 * Invariant: the caller subscribes its filters in the router and calls `planSubscribe` in the
 * same synchronous turn, so every later live message has a larger offset than the plan's
 * `result.offset` and is queued behind the snapshot or replay (no gap, no duplicate).
 *
 * Cost: `planSubscribe` is O(matching retained topics) or O(matching history); sources encode
 * one message at a time as the outbox paces them, so nothing is encoded ahead of the window.
 */
import { ErrorCode, type SubscribeResult } from 'topicast/protocol';
import type { Permissions } from '../auth/index.js';
import type { BrokerContext } from '../context.js';
import { ReplayMerge, type StreamPosition } from '../core/history.js';
import type { Message } from '../core/message.js';
import { checkFilter } from './limits.js';
import type { FrameSource } from './outbox.js';

/** Encodes one message for one wire shape (a DELIVERY frame, an SSE event). */
export type EncodeMessage = (message: Message) => Uint8Array;

/** Retained messages captured at subscribe time, encoded as they are paced out. */
export class SnapshotSource implements FrameSource {
  private i = 0;
  constructor(private readonly messages: Message[], private readonly encode: EncodeMessage) {}
  next(): Uint8Array | undefined {
    const m = this.messages[this.i];
    if (m === undefined) return undefined;
    this.messages[this.i++] = undefined as unknown as Message; // release as we go
    return this.encode(m);
  }
}

/**
 * Messages replayed from history after a resume (PROTOCOL.md §4.6): merged in offset order and
 * encoded one at a time as the outbox paces them, so a long replay to a slow reader holds
 * references only, never encoded bytes beyond the snapshot window.
 */
export class ReplaySource implements FrameSource {
  private readonly merge: ReplayMerge;
  constructor(replay: Message[][], private readonly encode: EncodeMessage) {
    this.merge = new ReplayMerge(replay);
  }
  next(): Uint8Array | undefined {
    const m = this.merge.next();
    return m === undefined ? undefined : this.encode(m);
  }
}

export interface SubscribeProblem {
  code: ErrorCode;
  message: string;
}

/**
 * Checks a subscribe request (PROTOCOL.md §4.1), all or nothing: every filter valid, none denied
 * by the principal's permissions, and the connection's filters within `maxSubscriptionsPerConnection`.
 * Counts refusals. Returns the filters not held yet, or the problem.
 */
export function checkSubscribe(
  ctx: BrokerContext,
  filters: readonly string[],
  permissions: Permissions | undefined,
  held: { count: number; has(filter: string): boolean },
): SubscribeProblem | Set<string> {
  const added = new Set<string>(); // a filter repeated in one request counts once
  for (const filter of filters) {
    const bad = checkFilter(filter, ctx.topicLimits);
    if (bad) return bad;
    if (!held.has(filter)) added.add(filter);
  }
  if (permissions) {
    const denied = filters.find((f) => permissions.canSubscribe(f) === 'deny');
    if (denied !== undefined) {
      ctx.auth.stats.denied++;
      return { code: ErrorCode.notAuthorized, message: `not authorized to subscribe to ${JSON.stringify(denied.slice(0, 64))}` };
    }
  }
  const max = ctx.sessionLimits.maxSubscriptionsPerConnection;
  if (held.count + added.size > max) {
    ctx.auth.guard.stats.subscriptionsRefused++;
    return { code: ErrorCode.tooManySubscriptions, message: `at most ${max} subscriptions per connection` };
  }
  return added;
}

export interface SubscribePlan {
  /** Retained messages to send first (empty after a recovered resume or with `retained: false`). */
  snapshot: Message[];
  /** History slices to replay (a recovered resume), else undefined. */
  replay: Message[][] | undefined;
  /** The answer: counts, the stream position, `recovered` for a resume. */
  result: SubscribeResult;
}

/**
 * Plans what follows a subscribe answer (PROTOCOL.md §4.1, §4.6). Call it in the same synchronous
 * turn as the router subscriptions. `canRead` filters snapshot and replay per topic (undefined:
 * everything readable); it counts what it withholds.
 */
export function planSubscribe(
  ctx: BrokerContext,
  filters: readonly string[],
  options: { resume?: StreamPosition | undefined; retained?: boolean | undefined },
  canRead: ((topic: string) => boolean) | undefined,
): SubscribePlan {
  const history = ctx.router.history;
  const resume = options.resume;
  const replay = history && resume ? history.resume(filters, resume, canRead) : undefined;
  const snapshot = replay !== undefined || options.retained === false ? [] : retainedFor(ctx, filters, canRead);
  const result: SubscribeResult = { retained: snapshot.length };
  if (history) {
    result.epoch = history.epoch;
    result.offset = history.last;
  }
  if (resume) {
    result.recovered = replay !== undefined;
    result.replayed = replay === undefined ? 0 : replay.reduce((n, slice) => n + slice.length, 0);
  }
  return { snapshot, replay, result };
}

/** The retained messages matching any of the filters, once each, those `canRead` allows. */
function retainedFor(ctx: BrokerContext, filters: readonly string[], canRead: ((topic: string) => boolean) | undefined): Message[] {
  const store = ctx.router.retained;
  if (store.size === 0) return [];
  const topics = filters.length === 1 ? store.match(filters[0]!) : [...new Set(filters.flatMap((f) => store.match(f)))];
  const out: Message[] = [];
  for (const topic of topics) {
    if (canRead && !canRead(topic)) continue;
    const m = store.get(topic);
    if (m) out.push(m);
  }
  return out;
}
