/**
 * History queries (PROTOCOL.md §4.8): one HISTORY request and its answer, and the paging that
 * turns a large window into an async iteration. The client owns sending and routing frames; this
 * file collects rows, decodes them with the request's codec and pages on with the offsets.
 *
 * Paging: rows of one epoch come in offset order, so the next page of an oldest-first window
 * starts at the last offset + 1 and of a newest-first one ends at the last offset - 1; no row is
 * skipped or repeated. Later pages name the first page's epoch: if the broker lost its history
 * meanwhile, it refuses them (ERROR invalidRequest) and the iteration throws, since offsets of two
 * epochs are not comparable.
 */
import type { Codec, CodecName } from './codec.js';
import type { HistoryEndInfo, HistoryRequest } from './protocol/index.js';

/**
 * Options of `client.history`: the window (every bound inclusive, absent ones open) and the order.
 * @example
 * const hour = await client.history('devices/pi-01/cpu/temperature', { sinceMs: Date.now() - 3_600_000 });
 * const last10 = await client.history('devices/+/cpu/temperature', { limit: 10, newestFirst: true });
 */
export interface HistoryOptions extends HistoryRequest {
  /** Codec for the rows' payloads (default: the client's). */
  codec?: CodecName | Codec;
  /** Async iteration only: rows asked per request after the first page (default 1000; at most the broker's `historyMaxRows`). */
  pageSize?: number;
}

/**
 * One stored message, as returned by `client.history`.
 * @example
 * for (const { topic, value, ts, offset } of await client.history('devices/#', { limit: 5 })) console.log(new Date(ts), topic, value, offset);
 */
export interface HistoryMessage<T = unknown> {
  topic: string;
  /** The decoded payload (same rules as deliveries). */
  value: T;
  /** Publish time: when the broker received it, ms since the epoch. */
  ts: number;
  /** Position in the broker's history stream (PROTOCOL.md §4.6). */
  offset: number;
  /** The payload bytes as stored. */
  payload: Uint8Array;
  /** The content type it was published with (PROTOCOL.md §5); undefined when the publisher gave none. */
  contentType: string | undefined;
}

/**
 * The answer of `await client.history(...)`: the rows, plus how the answer ended.
 * @example
 * const rows = await client.history('devices/pi-01/cpu/temperature', { sinceMs: Date.now() - 3_600_000 });
 * if (!rows.complete) console.warn('the broker no longer holds the whole hour');
 */
export type HistoryPage<T = unknown> = HistoryMessage<T>[] & HistoryEndInfo;

/**
 * What `client.history` returns: a promise of one page (at most the broker's `historyMaxRows`,
 * or `limit`), also async-iterable over every row of the window, page by page.
 * @example
 * const rows = await client.history('devices/#', { limit: 100 });
 * for await (const row of client.history('devices/#', { sinceMs: 0 })) csv.write(`${row.ts},${row.topic},${row.value}\n`);
 */
export type HistoryResult<T> = Promise<HistoryPage<T>> & AsyncIterable<HistoryMessage<T>>;

/** What a history request needs from its client: one request on the wire, its page as the answer. */
export type HistoryFetch = (request: HistoryRequest) => Promise<HistoryPage<unknown>>;

/** Every row of the window, one request per page (see the top of this file). */
export async function* historyPages(fetch: HistoryFetch, options: HistoryOptions, first: Promise<HistoryPage<unknown>>): AsyncGenerator<HistoryMessage> {
  const { pageSize = 1000, codec: _codec, ...request } = options;
  let left = request.limit ?? Infinity;
  for (let next = first; ; next = fetch(request)) {
    const page = await next;
    request.epoch = page.epoch; // the broker refuses the next page if its stream changed epoch meanwhile
    yield* page;
    left -= page.length;
    const last = page[page.length - 1];
    if (!page.more || left <= 0 || !last) return;
    if (request.newestFirst) request.toOffset = last.offset - 1;
    else request.fromOffset = last.offset + 1;
    request.limit = Math.min(pageSize, left);
  }
}

/** Misuse of history options is a TypeError at the call, never a malformed frame that closes the connection. */
export function checkHistoryOptions(o: HistoryOptions): void {
  for (const [k, v] of Object.entries(o)) {
    if (k === 'codec' || v === undefined) continue;
    if (k === 'epoch' ? typeof v !== 'string' : k === 'newestFirst' ? typeof v !== 'boolean' : !Number.isSafeInteger(v) || (v as number) < (k === 'limit' || k === 'pageSize' ? 1 : 0)) {
      throw new TypeError(`bad history option ${k}`);
    }
  }
}
