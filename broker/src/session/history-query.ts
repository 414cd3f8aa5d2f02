/**
 * History queries as every protocol serves them (PROTOCOL.md §4.8, README "History queries"):
 * the request's checks in order, the window as core/history.ts takes it, and the rows of a
 * bounded answer. Pure apart from the context's clock: no sockets, no timers.
 *
 * Checks, in order: history kept at all, the per-connection (or per-address) query rate, the
 * filter's syntax and limits, the caller's subscribe permissions on it (a denied filter is refused
 * whole; topics a granted filter only overlaps are withheld row by row), then the window: limit
 * within the cap, bounds in order. Every refusal is an error code and one clear message.
 */
import { ErrorCode, type HistoryRequest } from 'topicast/protocol';
import type { Permissions } from '../auth/index.js';
import type { BrokerContext } from '../context.js';
import type { History, HistoryAnswer, HistoryQuery } from '../core/history.js';
import type { Message } from '../core/message.js';
import { checkFilter, type PublishCheck, type TokenBucket } from './limits.js';

export interface QueryRefusal extends PublishCheck {
  /** HTTP status for the same refusal. */
  status: number;
}

function refuse(status: number, code: ErrorCode, message: string): QueryRefusal {
  return { status, code, message };
}

/**
 * Validates a history request and turns it into a core query, or says why not.
 * `maxRows` is the protocol's cap (`historyMaxRows`, `historyMaxExportRows` over HTTP); the
 * limit defaults to it.
 */
export function planQuery(
  ctx: BrokerContext, filters: readonly string[], req: HistoryRequest, maxRows: number,
  permissions: Permissions | undefined, bucket: TokenBucket | undefined,
): { history: History; query: HistoryQuery } | QueryRefusal {
  const history = ctx.router.history;
  if (history === undefined) return refuse(404, ErrorCode.invalidRequest, 'this broker keeps no history (--history-filters is empty)');
  if (bucket !== undefined && !bucket.take(ctx.now())) {
    ctx.counters.rateLimited++;
    return refuse(429, ErrorCode.rateLimited, `more than ${ctx.historyLimits.queriesPerSec} history queries per second`);
  }
  for (const filter of filters) {
    const bad = checkFilter(filter, ctx.topicLimits);
    if (bad) return refuse(400, bad.code, bad.message);
    if (permissions && permissions.canSubscribe(filter) === 'deny') {
      ctx.auth.stats.denied++;
      return refuse(403, ErrorCode.notAuthorized, `not authorized to read ${JSON.stringify(filter.slice(0, 64))}`);
    }
  }
  if (req.epoch !== undefined && req.epoch !== history.epoch) {
    return refuse(400, ErrorCode.invalidRequest, `the history stream is now epoch ${history.epoch}, not ${req.epoch}: its offsets are not comparable, query again`);
  }
  const limit = req.limit ?? maxRows;
  if (limit > maxRows) return refuse(400, ErrorCode.invalidRequest, `limit ${limit} exceeds the broker's ${maxRows} rows per history query`);
  if (req.sinceMs !== undefined && req.untilMs !== undefined && req.sinceMs > req.untilMs) {
    return refuse(400, ErrorCode.invalidRequest, `sinceMs ${req.sinceMs} is after untilMs ${req.untilMs}`);
  }
  if (req.fromOffset !== undefined && req.toOffset !== undefined && req.fromOffset > req.toOffset) {
    return refuse(400, ErrorCode.invalidRequest, `fromOffset ${req.fromOffset} is after toOffset ${req.toOffset}`);
  }
  return {
    history,
    query: {
      filters, limit, newestFirst: req.newestFirst === true,
      sinceMs: req.sinceMs, untilMs: req.untilMs, fromOffset: req.fromOffset, toOffset: req.toOffset,
    },
  };
}

/** Per-topic read check for history rows: a topic under a granted filter may still be denied (docs/SECURITY.md). */
export function readCheck(ctx: BrokerContext, permissions: Permissions | undefined): ((topic: string) => boolean) | undefined {
  if (permissions === undefined) return undefined;
  return (topic) => {
    if (permissions.canRead(topic)) return true;
    ctx.auth.stats.withheld++;
    return false;
  };
}

/** Rows of an answer taken whole (native: at most historyMaxRows references), within the byte cap. */
export interface CollectedRows {
  messages: Message[];
  times: number[];
  /** The byte cap stopped the answer before its end. */
  truncated: boolean;
}

/** Reads the answer's rows (references only), stopping before the row that would pass `maxBytes` (payload + topic). */
export function collectRows(answer: HistoryAnswer, maxBytes: number): CollectedRows {
  const messages: Message[] = [];
  const times: number[] = [];
  let bytes = 0;
  for (let m = answer.cursor.next(); m !== undefined; m = answer.cursor.next()) {
    bytes += m.payload.length + m.topic.length;
    if (bytes > maxBytes) return { messages, times, truncated: true };
    messages.push(m);
    times.push(answer.cursor.atMs);
  }
  return { messages, times, truncated: false };
}
