/**
 * How `topicast sub` writes a decoded value as one line of text:
 * a string as it is (what `mosquitto_sub` shows for text), an empty payload as an empty line,
 * bytes as base64, anything else as compact JSON. Inside JSON the broker's MessagePack → JSON
 * rules apply (PROTOCOL.md §5): bytes become base64 strings, NaN and ±Infinity null, big integers
 * keep every digit, dates ISO 8601 strings. So `topicast sub` prints an SDK value the way
 * `mosquitto_sub` receives it from the broker.
 */

/** The text of one delivery's value. */
export function renderValue(value: unknown): string {
  if (value === undefined) return '';
  if (typeof value === 'string') return value;
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength).toString('base64');
  return toJson(value, 0);
}

/** Nesting beyond this is written as null: a display never recurses without bound. */
const MAX_DEPTH = 64;

function toJson(value: unknown, depth: number): string {
  if (value === null || value === undefined) return 'null';
  switch (typeof value) {
    case 'string':
      return JSON.stringify(value);
    case 'number':
      return Number.isFinite(value) ? String(value) : 'null';
    case 'bigint':
      return value.toString();
    case 'boolean':
      return value ? 'true' : 'false';
    case 'object':
      break;
    default:
      return 'null'; // functions, symbols: nothing a payload decodes to
  }
  if (depth >= MAX_DEPTH) return 'null';
  if (value instanceof Uint8Array) return JSON.stringify(renderValue(value));
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'null' : JSON.stringify(value.toISOString());
  if (Array.isArray(value)) return `[${value.map((v: unknown) => toJson(v, depth + 1)).join(',')}]`;
  const entries: [unknown, unknown][] = value instanceof Map ? [...(value as Map<unknown, unknown>)] : Object.entries(value);
  const parts: string[] = [];
  for (const [k, v] of entries) {
    if (v === undefined) continue; // as JSON.stringify does
    parts.push(`${JSON.stringify(typeof k === 'string' ? k : toJson(k, depth + 1))}:${toJson(v, depth + 1)}`);
  }
  return `{${parts.join(',')}}`;
}
