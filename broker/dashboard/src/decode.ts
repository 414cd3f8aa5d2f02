/**
 * Payload decoding for the explorer and the device cards. Payloads are opaque
 * bytes to the broker, so the dashboard subscribes with the `raw` codec and
 * guesses each payload's shape in this order: MessagePack (the SDK default),
 * JSON, UTF-8 text, and hex for anything else.
 *
 * The one real ambiguity: a single printable ASCII byte is both a MessagePack
 * positive fixint (48 → "0") and one character of text ("5" from
 * mosquitto_pub). Every other printable-text payload fails MessagePack with
 * trailing bytes. For that case the caller passes a hint: the format last seen
 * on the topic, else the last unambiguous one near it in the tree (a device that
 * sends text status sends text readings); without one, `$` topics (the broker's
 * own, always text) read as text and the rest as MessagePack.
 * Cost: one MessagePack attempt, then at most one UTF-8 decode and one JSON.parse.
 */
import { unpack } from 'msgpackr';

export type PayloadFormat = 'msgpack' | 'json' | 'text' | 'binary' | 'empty';

export interface Decoded {
  format: PayloadFormat;
  /** The decoded value: any MessagePack/JSON value, a string, or the bytes themselves for `binary`. */
  value: unknown;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
// Control characters other than tab, LF and CR mark a payload as binary even when it is valid UTF-8.
const CONTROL = /[\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f]/;
const JSON_START = /^\s*[-{["0-9tfn]/;

function decodeText(bytes: Uint8Array): Decoded | undefined {
  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    return undefined;
  }
  if (CONTROL.test(text)) return undefined;
  if (JSON_START.test(text)) {
    try {
      return { format: 'json', value: JSON.parse(text) as unknown };
    } catch {
      // Not JSON: plain text such as "online" or "nope".
    }
  }
  return { format: 'text', value: text };
}

function decodeMsgpack(bytes: Uint8Array): Decoded | undefined {
  try {
    const value = unpack(bytes) as unknown;
    // 0xC1 is "never used" in MessagePack; msgpackr returns a marker object instead of throwing.
    if (value !== null && typeof value === 'object' && (value as { constructor?: { name?: string } }).constructor?.name === 'C1Type') return undefined;
    return { format: 'msgpack', value };
  } catch {
    return undefined;
  }
}

/**
 * Decodes one payload.
 * @example
 * decodePayload(new TextEncoder().encode('{"a":1}')) // { format: 'json', value: { a: 1 } }
 */
export function decodePayload(bytes: Uint8Array, topic = '', hint?: PayloadFormat): Decoded {
  if (bytes.length === 0) return { format: 'empty', value: '' };
  const b0 = bytes[0]!;
  if (bytes.length === 1 && b0 >= 0x20 && b0 <= 0x7e) {
    const preferText = hint === 'json' || hint === 'text' || (hint === undefined && topic.startsWith('$'));
    if (preferText) return decodeText(bytes)!;
    return decodeMsgpack(bytes)!;
  }
  return decodeMsgpack(bytes) ?? decodeText(bytes) ?? { format: 'binary', value: bytes };
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
