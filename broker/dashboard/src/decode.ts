/**
 * Payload decoding for the explorer and the device cards, by the rule every Topicast client
 * follows (the SDK's `decodePayload`, PROTOCOL.md §8): each message arrives with its content type,
 * so MessagePack from SDKs, JSON and text from curl and MQTT 5, and untagged payloads from
 * mosquitto_pub and MQTT 3.1.1 devices (UTF-8 JSON → value, other UTF-8 → text, else bytes) are
 * read exactly as `topicast sub` and an SDK page read them. No guessing: the dashboard and the
 * SDK never disagree on a value.
 */
import { decodePayload as decodeBy, formatOf, msgpack } from 'topicast';

export type PayloadFormat = 'msgpack' | 'json' | 'text' | 'binary' | 'empty';

export interface Decoded {
  format: PayloadFormat;
  /** The decoded value: any MessagePack/JSON value, a string, or the bytes themselves for `binary`. */
  value: unknown;
}

/**
 * Decodes one payload by the content type it arrived with; never throws (a payload that is not
 * what its type says shows as bytes).
 * @example
 * decodePayload(new TextEncoder().encode('{"a":1}'), undefined) // { format: 'json', value: { a: 1 } }
 */
export function decodePayload(bytes: Uint8Array, contentType: string | undefined): Decoded {
  if (bytes.length === 0) return { format: 'empty', value: '' };
  let value: unknown;
  try {
    value = decodeBy(bytes, contentType, msgpack.decode);
  } catch {
    return { format: 'binary', value: bytes };
  }
  switch (formatOf(contentType)) {
    case 'msgpack': return { format: 'msgpack', value };
    case 'json': return { format: 'json', value };
    case 'text': return { format: 'text', value };
    case 'unknown':
      // Untagged: what the rules made of it.
      if (value instanceof Uint8Array) return { format: 'binary', value };
      return { format: typeof value === 'string' ? 'text' : 'json', value };
    default: return { format: 'binary', value: bytes };
  }
}

/** Lower-case hex of the first `maxBytes` bytes, spaced every byte, with an ellipsis when cut. */
export function toHex(bytes: Uint8Array, maxBytes = 64): string {
  const n = Math.min(bytes.length, maxBytes);
  let s = '';
  for (let i = 0; i < n; i++) s += (i ? ' ' : '') + bytes[i]!.toString(16).padStart(2, '0');
  return bytes.length > n ? `${s} …` : s;
}

function replacer(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Uint8Array) return `<${v.length} bytes: ${toHex(v, 16)}>`;
  if (v instanceof Map) return Object.fromEntries(v);
  if (v instanceof Set) return [...v];
  return v;
}

/** A decoded value as display text; `pretty` indents objects. Never throws. */
export function formatValue(d: Decoded, pretty = false): string {
  const v = d.value;
  if (d.format === 'empty') return '(empty)';
  if (d.format === 'binary') return toHex(v as Uint8Array, pretty ? 4096 : 64);
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  if (v instanceof Date) return v.toISOString();
  try {
    return JSON.stringify(v, replacer, pretty ? 2 : undefined) ?? String(v);
  } catch {
    return String(v);
  }
}
