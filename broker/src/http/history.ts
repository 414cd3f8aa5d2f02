/**
 * `GET /api/history/<topic or filter>` (README "History queries", PROTOCOL.md §4.8): a history
 * query for scripts and spreadsheets, as JSON, NDJSON or CSV. The rules live here; uws.ts writes
 * the chunks this produces, pausing while the socket is backed up.
 *
 * Invariants
 * - Same checks as the native HISTORY (session/history-query.ts), with the export cap
 *   `historyMaxExportRows` and the query rate per client address.
 * - Streamed: the answer is captured as references when the request is processed (a consistent
 *   window, like a native answer) and rendered a chunk at a time; at most one chunk of text
 *   (CHUNK_BYTES) exists besides what the socket buffers. Never buffered whole.
 * - JSON and NDJSON end with the answer's `count`, `complete` and `more` (known only at the end:
 *   the byte cap may stop an answer early); CSV carries rows only.
 * - Values are rendered by their content type (renderPayload); JSON and NDJSON rows carry it.
 * Cost: per row one payload conversion and one JSON.stringify (or a CSV line); O(1) memory per row.
 */
import { base64, ContentType, decodeUntagged, ErrorCode, formatOf, msgpackToJson, utf8Text, type HistoryRequest } from 'topicast/protocol';
import type { Principal } from '../auth/index.js';
import type { BrokerContext } from '../context.js';
import type { History, HistoryAnswer } from '../core/history.js';
import { planQuery, readCheck } from '../session/history-query.js';
import { TokenBucket } from '../session/limits.js';
import { errorReply, type HttpReply } from './api.js';

export const HISTORY_PREFIX = '/api/history/';

/** A chunk is rendered up to about this many characters: large enough for few writes, small next to the socket buffer. */
const CHUNK_BYTES = 64 * 1024;
/** Client addresses whose query rate is tracked; beyond it the table starts afresh (bounded memory under address churn). */
const MAX_TRACKED_ADDRESSES = 10_000;

export type HistoryFormat = 'json' | 'ndjson' | 'csv';

const CONTENT_TYPES: Record<HistoryFormat, string> = {
  json: 'application/json; charset=utf-8',
  ndjson: 'application/x-ndjson; charset=utf-8',
  csv: 'text/csv; charset=utf-8; header=present',
};

/** A streamed answer: status and headers now, then `next()` chunks until undefined. */
export interface HistoryStream {
  status: 200;
  headers: Record<string, string>;
  /** The next chunk of the body, or undefined when it is complete. */
  next(): string | undefined;
}

/** Per-address query buckets of one broker. */
export class HistoryRates {
  private readonly buckets = new Map<string, TokenBucket>();
  constructor(private readonly ctx: BrokerContext) {}

  bucket(address: string): TokenBucket | undefined {
    const rate = this.ctx.historyLimits.queriesPerSec;
    if (rate === 0) return undefined;
    let b = this.buckets.get(address);
    if (b === undefined) {
      if (this.buckets.size >= MAX_TRACKED_ADDRESSES) this.buckets.clear();
      b = new TokenBucket(rate, rate, this.ctx.now());
      this.buckets.set(address, b);
    }
    return b;
  }
}

function bad(message: string): HttpReply {
  return errorReply(400, ErrorCode.invalidRequest, message);
}

/** A time parameter: integer milliseconds since the epoch, or an ISO 8601 date-time. */
function parseTime(name: string, raw: string): number | string {
  if (/^\d{1,16}$/.test(raw)) return Number(raw);
  const ms = /^\d{4}-\d{2}-\d{2}/.test(raw) ? Date.parse(raw) : NaN;
  return Number.isFinite(ms) ? ms : `${name} must be milliseconds since the epoch or an ISO 8601 date-time, got ${JSON.stringify(raw.slice(0, 40))}`;
}

function parseCount(name: string, raw: string, min: number): number | string {
  if (!/^\d{1,16}$/.test(raw) || !Number.isSafeInteger(Number(raw)) || Number(raw) < min) return `${name} must be an integer ≥ ${min}, got ${JSON.stringify(raw.slice(0, 40))}`;
  return Number(raw);
}

const PARAMS = new Set(['limit', 'since', 'until', 'from', 'to', 'order', 'format']);

/**
 * Answers `GET /api/history/...`: an error reply, or a stream.
 * `address` keys the query rate; `principal` is the authenticated caller (undefined: authentication off).
 */
export function historyExport(ctx: BrokerContext, rates: HistoryRates, path: string, query: string, address: string, principal?: Principal): HttpReply | HistoryStream {
  let filter: string;
  try {
    filter = decodeURIComponent(path.slice(HISTORY_PREFIX.length));
  } catch {
    return errorReply(400, ErrorCode.invalidFilter, 'filter is not valid percent-encoding');
  }
  const params = new URLSearchParams(query);
  const req: HistoryRequest = {};
  let format: HistoryFormat = 'json';
  for (const [key, raw] of params) {
    if (!PARAMS.has(key)) return bad(`unknown parameter ${JSON.stringify(key.slice(0, 32))} (limit, since, until, from, to, order, format)`);
    let v: number | string;
    switch (key) {
      case 'limit': v = parseCount('limit', raw, 1); if (typeof v === 'string') return bad(v); req.limit = v; break;
      case 'since': v = parseTime('since', raw); if (typeof v === 'string') return bad(v); req.sinceMs = v; break;
      case 'until': v = parseTime('until', raw); if (typeof v === 'string') return bad(v); req.untilMs = v; break;
      case 'from': v = parseCount('from', raw, 0); if (typeof v === 'string') return bad(v); req.fromOffset = v; break;
      case 'to': v = parseCount('to', raw, 0); if (typeof v === 'string') return bad(v); req.toOffset = v; break;
      case 'order':
        if (raw !== 'oldest' && raw !== 'newest') return bad(`order must be oldest or newest, got ${JSON.stringify(raw.slice(0, 40))}`);
        req.newestFirst = raw === 'newest';
        break;
      case 'format':
        if (raw !== 'json' && raw !== 'ndjson' && raw !== 'csv') return bad(`format must be json, ndjson or csv, got ${JSON.stringify(raw.slice(0, 40))}`);
        format = raw;
        break;
    }
  }
  const planned = planQuery(ctx, [filter], req, ctx.historyLimits.maxExportRows, principal?.permissions, rates.bucket(address));
  if ('code' in planned) {
    const reply = errorReply(planned.status, planned.code, planned.message);
    if (planned.status === 429) reply.headers['Retry-After'] = '1';
    return reply;
  }
  const { history, query: q } = planned;
  const answer = history.query(q, readCheck(ctx, principal?.permissions));
  return {
    status: 200,
    headers: {
      'Content-Type': CONTENT_TYPES[format],
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
      'X-Topicast-Epoch': history.epoch,
      'X-Topicast-Offset': String(history.last),
      ...(format === 'csv' && { 'Content-Disposition': `attachment; filename="${safeFileName(filter)}.csv"` }),
    },
    next: rowWriter(format, answer, history, ctx.historyLimits.maxQueryBytes),
  };
}

/** The filter as a file name: letters, digits, dot, dash and underscore; the rest becomes '_'. */
function safeFileName(filter: string): string {
  return filter.replace(/[^A-Za-z0-9._-]+/g, '_').slice(0, 100) || 'history';
}

function rowWriter(format: HistoryFormat, answer: HistoryAnswer, history: History, maxBytes: number): () => string | undefined {
  const cursor = answer.cursor;
  let started = false;
  let done = false;
  let count = 0;
  let bytes = 0;
  let truncated = false;
  const end = (): Record<string, unknown> => ({
    count, complete: !truncated && answer.complete(), more: answer.more || truncated, epoch: history.epoch, offset: history.last,
  });
  return function nextHistoryChunk() {
    if (done) return undefined;
    let out = '';
    if (!started) {
      started = true;
      if (format === 'csv') out += 'time,ts,topic,offset,value\r\n';
      else if (format === 'json') out += '{"rows":[';
    }
    while (out.length < CHUNK_BYTES) {
      const m = truncated ? undefined : cursor.next();
      if (m !== undefined) {
        bytes += m.payload.length + m.topic.length;
        if (bytes > maxBytes) {
          truncated = true;
          continue;
        }
      }
      if (m === undefined) {
        done = true;
        if (format === 'json') out += `],${JSON.stringify(end()).slice(1)}\n`;
        else if (format === 'ndjson') out += `${JSON.stringify({ end: end() })}\n`;
        return out;
      }
      const ts = cursor.atMs;
      const contentType = m.properties?.contentType;
      const value = renderPayload(m.payload, contentType);
      if (format === 'csv') {
        out += `${new Date(ts).toISOString()},${ts},${csvCell(m.topic)},${m.offset},${csvValue(value)}\r\n`;
      } else {
        const type = contentType === undefined ? '' : `,"contentType":${JSON.stringify(contentType)}`;
        const row = `{"topic":${JSON.stringify(m.topic)},"ts":${ts},"offset":${m.offset},"value":${jsonValue(value)}${type}}`;
        out += format === 'json' ? (count === 0 ? row : `,${row}`) : `${row}\n`;
      }
      count++;
    }
    return out;
  };
}

/** A payload rendered for an export: JSON text to embed as it is, or a string. */
type Rendered = { json: string } | { text: string };

/**
 * A payload as an export shows it, by its content type (PROTOCOL.md §5, the rules MQTT subscribers
 * get): MessagePack as its JSON (every integer digit kept, bytes as base64: `msgpackToJson`), JSON
 * as JSON, text as a string, untagged payloads by the UTF-8/JSON rules (`7` from curl is 7,
 * `online` a string), anything else (bytes, other types, malformed) as `{"base64": ...}`.
 */
export function renderPayload(payload: Uint8Array, contentType: string | undefined): Rendered {
  if (payload.length === 0) return { json: 'null' };
  switch (formatOf(contentType)) {
    case 'msgpack': {
      const converted = msgpackToJson(payload);
      if (converted === undefined) break;
      if (converted.contentType === ContentType.json) return { json: new TextDecoder().decode(converted.payload) };
      if (converted.contentType === ContentType.text) return { text: new TextDecoder().decode(converted.payload) };
      return { json: JSON.stringify({ base64: base64(converted.payload) }) };
    }
    case 'json': {
      const text = utf8Text(payload);
      if (text === undefined) break;
      try {
        return { json: JSON.stringify(JSON.parse(text)) };
      } catch {
        break; // tagged JSON that is not: shown as bytes
      }
    }
    case 'text': {
      const text = utf8Text(payload);
      if (text !== undefined) return { text };
      break;
    }
    case 'unknown': {
      const v = decodeUntagged(payload);
      if (typeof v === 'string') return { text: v };
      if (!(v instanceof Uint8Array)) return { json: JSON.stringify(v) };
      break;
    }
    default:
      break;
  }
  return { json: JSON.stringify({ base64: base64(payload) }) };
}

function jsonValue(r: Rendered): string {
  return 'json' in r ? r.json : JSON.stringify(r.text);
}

const JSON_SCALAR = /^(-?\d+(\.\d+)?([eE][+-]?\d+)?|true|false)$/;

/** A CSV value cell: numbers and booleans as they are, text as text, null empty, anything else as its JSON. */
function csvValue(r: Rendered): string {
  if ('text' in r) return csvCell(r.text);
  if (r.json === 'null') return '';
  return JSON_SCALAR.test(r.json) ? r.json : csvCell(r.json);
}

/**
 * One CSV cell (RFC 4180): quoted when it holds a comma, quote, CR or LF. A text cell a spreadsheet
 * would run as a formula (starting with =, +, -, @, tab or CR) gets a leading apostrophe (OWASP
 * "CSV injection"): a device's payload must never execute in the reader's spreadsheet.
 */
function csvCell(s: string): string {
  const safe = /^[=+\-@\t\r]/.test(s) ? `'${s}` : s;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}
