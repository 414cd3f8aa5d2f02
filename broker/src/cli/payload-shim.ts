// Stand-in for the SDK's payload rules until they land in main (issue 14); replaced by imports from 'topicast'.
import { msgpack } from 'topicast';

export const ContentType = { msgpack: 'application/msgpack', json: 'application/json', text: 'text/plain', bytes: 'application/octet-stream' } as const;

export type PayloadFormat = 'msgpack' | 'json' | 'text' | 'bytes' | 'unknown' | 'other';

export function formatOf(contentType: string | undefined): PayloadFormat {
  if (contentType === undefined) return 'unknown';
  const e = contentType.split(';')[0]!.trim().toLowerCase();
  if (e === '') return 'unknown';
  if (e === 'application/msgpack' || e === 'application/x-msgpack' || e === 'application/vnd.msgpack') return 'msgpack';
  if (e === 'application/json' || e.endsWith('+json')) return 'json';
  if (e.startsWith('text/')) return 'text';
  if (e === 'application/octet-stream') return 'bytes';
  return 'other';
}

export function contentTypeProblem(contentType: string): string | undefined {
  if (contentType.length === 0) return 'is empty';
  if (contentType.length > 255) return 'is longer than 255 characters';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(contentType)) return 'holds a control character';
  return undefined;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

export function decodePayload(payload: Uint8Array, contentType: string | undefined): unknown {
  if (payload.length === 0) return undefined;
  switch (formatOf(contentType)) {
    case 'msgpack': return msgpack.decode(payload);
    case 'json': return JSON.parse(utf8.decode(payload));
    case 'text': return utf8.decode(payload);
    case 'unknown': break;
    default: return payload;
  }
  let text: string;
  try {
    text = utf8.decode(payload);
  } catch {
    try {
      return msgpack.decode(payload);
    } catch {
      return payload;
    }
  }
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
