/**
 * Bytes out for HTTP streaming (PROTOCOL.md §10): Server-Sent Events, one event per message.
 *
 * An event's `data:` is one line of JSON, `{"topic":…,"value":…,"contentType":…}`, with the
 * payload decoded once per message by the rules of PROTOCOL.md §8 (JSON and text as values,
 * MessagePack through `msgpackToJson`, anything else base64 with `"encoding":"base64"`). A live
 * event is built once per message and cached on it (core/message.ts `encoded`), so every SSE
 * subscriber gets the same bytes; retained and replayed events are built as they are paced out.
 *
 * The event `id:` is the stream position `<epoch>:<offset>` (PROTOCOL.md §4.6) for messages of
 * history topics; an `EventSource` sends the last one back as `Last-Event-ID` when it reconnects.
 */
import { decodeUntagged, formatOf, utf8Text, ContentType, base64, type SubscribeResult } from 'topicast/protocol';
import type { StreamPosition } from '../../core/history.js';
import type { Message } from '../../core/message.js';
import { convertedPayload } from '../../session/converted.js';

/** Cache key of a message's live event beside its other wire shapes (core/message.ts `encoded`). */
const LIVE = 'sse';

const encoder = new TextEncoder();

/** The event names (PROTOCOL.md §10.2). A live or replayed message has none: `message`, what `onmessage` gets. */
export const SseEvent = {
  retained: 'retained',
  snapshotEnd: 'snapshot-end',
  resumed: 'resumed',
  close: 'close',
} as const;
export type SseEvent = (typeof SseEvent)[keyof typeof SseEvent];

/** A heartbeat: an SSE comment line, ignored by every client, that keeps proxies from timing the stream out. */
export const HEARTBEAT = encoder.encode(':\n\n');

/**
 * The JSON text of a payload's value and whether it is base64 of bytes, or undefined for an empty
 * payload (a deleted retained value: no value). PROTOCOL.md §8 decides by the content type.
 */
function valueJson(message: Message, contentType: string | undefined): { json: string; base64: boolean } | undefined {
  const { payload } = message;
  if (payload.length === 0) return undefined;
  switch (formatOf(contentType)) {
    case 'msgpack': {
      const converted = convertedPayload(message); // once per message, shared with MQTT subscribers
      if (converted === undefined) break; // not one MessagePack value: its bytes
      if (converted.contentType === ContentType.json) return { json: textOf(converted.payload), base64: false }; // compact JSON, one line
      if (converted.contentType === ContentType.text) return { json: JSON.stringify(textOf(converted.payload)), base64: false };
      return { json: JSON.stringify(base64(converted.payload)), base64: true };
    }
    case 'json': {
      const text = utf8Text(payload);
      if (text === undefined) break;
      try {
        return { json: JSON.stringify(JSON.parse(text)), base64: false }; // re-serialised: one line, and never broken JSON in the event
      } catch {
        return { json: JSON.stringify(text), base64: false }; // tagged JSON that is not: the text, as the dashboard shows it
      }
    }
    case 'text': {
      const text = utf8Text(payload);
      if (text !== undefined) return { json: JSON.stringify(text), base64: false };
      break;
    }
    case 'unknown': {
      const value = decodeUntagged(payload);
      if (!(value instanceof Uint8Array)) return { json: JSON.stringify(value), base64: false };
      break;
    }
    case 'bytes':
    case 'other':
      break;
  }
  return { json: JSON.stringify(base64(payload)), base64: true };
}

const utf8 = new TextDecoder();
function textOf(bytes: Uint8Array): string {
  return utf8.decode(bytes);
}

/** The `data:` JSON of a message (PROTOCOL.md §10.3). */
export function messageData(message: Message): string {
  const contentType = message.properties?.contentType;
  const value = valueJson(message, contentType);
  let out = `{"topic":${JSON.stringify(message.topic)}`;
  if (value !== undefined) out += value.base64 ? `,"value":${value.json},"encoding":"base64"` : `,"value":${value.json}`;
  if (contentType !== undefined) out += `,"contentType":${JSON.stringify(contentType)}`;
  return out + '}';
}

/** The `id:` of a stream position. */
export function positionId(epoch: string, offset: number): string {
  return `${epoch}:${offset}`;
}

/**
 * Reads a `Last-Event-ID` (PROTOCOL.md §10.4): `<epoch>:<offset>` as sent in an `id:` line.
 * Undefined when it is not one.
 */
export function parsePosition(id: string): StreamPosition | undefined {
  const colon = id.lastIndexOf(':');
  if (colon < 1 || colon > 64) return undefined;
  const digits = id.slice(colon + 1);
  if (!/^[0-9]{1,15}$/.test(digits)) return undefined;
  const epoch = id.slice(0, colon);
  if (/[\u0000-\u001f\u007f]/.test(epoch)) return undefined;
  return { epoch, offset: Number(digits) };
}

/** A live message, built once per message and shared by every SSE subscriber. */
export function liveEvent(message: Message, epoch: string | undefined): Uint8Array {
  return (message.encoded[LIVE] ??= encoder.encode(messageEvent(message, epoch)));
}

/** A replayed message (after a recovered resume): the same event as live, built as it is paced out. */
export function replayedEvent(message: Message, epoch: string | undefined): Uint8Array {
  return message.encoded[LIVE] ?? encoder.encode(messageEvent(message, epoch));
}

function messageEvent(message: Message, epoch: string | undefined): string {
  const id = message.offset !== 0 && epoch !== undefined ? `id: ${positionId(epoch, message.offset)}\n` : '';
  return `${id}data: ${messageData(message)}\n\n`;
}

/** A retained message of the snapshot: no id (its position is not in the stream), never cached on the stored message. */
export function retainedEvent(message: Message): Uint8Array {
  return encoder.encode(`event: ${SseEvent.retained}\ndata: ${messageData(message)}\n\n`);
}

/**
 * The end of the snapshot (or replay). With history it carries the stream position as its `id:`:
 * a client that reconnects before any live message resumes from here, not from nothing.
 */
export function snapshotEndEvent(result: SubscribeResult): Uint8Array {
  const id = result.epoch !== undefined && result.offset !== undefined ? `id: ${positionId(result.epoch, result.offset)}\n` : '';
  return encoder.encode(`event: ${SseEvent.snapshotEnd}\n${id}data: {"retained":${result.retained}}\n\n`);
}

/** The answer to a `Last-Event-ID`: whether everything missed follows (PROTOCOL.md §4.6). */
export function resumedEvent(result: SubscribeResult): Uint8Array {
  return encoder.encode(`event: ${SseEvent.resumed}\ndata: {"recovered":${result.recovered === true},"replayed":${result.replayed ?? 0}}\n\n`);
}

/** The stream's first bytes: the reconnection delay an `EventSource` waits after the stream ends. */
export function streamStart(retryMs: number): Uint8Array {
  return encoder.encode(`retry: ${retryMs}\n\n`);
}

/** Why the broker ends a stream (slow consumer, token expired, shutdown), before it ends it. */
export function closeEvent(code: number, reason: string): Uint8Array {
  return encoder.encode(`event: ${SseEvent.close}\ndata: ${JSON.stringify({ code, reason })}\n\n`);
}
