/**
 * Payload codecs: how application values become the payload bytes the broker
 * routes, and back. Every payload travels with its content type (PROTOCOL.md §8),
 * so the default codec, `auto`, decodes each message by what arrived: MessagePack
 * from SDKs, JSON or text from mosquitto_pub, curl and MQTT devices.
 *
 * `json`, `text`, `raw` and the `auto` rules live here and cost a few hundred bytes;
 * msgpackr (the full build's MessagePack) lives in codec-msgpack.ts so that the
 * core browser build can leave it out.
 */
import { ContentType, decodeMsgpack, decodeUntagged, formatOf } from './protocol/index.js';

/**
 * Turns values into payload bytes and back. Both functions may throw; the SDK
 * wraps what they throw in a `CodecError`.
 * @example
 * const cbor: Codec = { name: 'cbor', encode: (v) => cborEncode(v), decode: (b) => cborDecode(b) };
 * const client = await connect(url, { codec: cbor });
 */
export interface Codec {
  /** Short name, used in error messages. */
  readonly name: string;
  /** The content type of what `encode` makes, sent with every message (PROTOCOL.md §8); none = unknown. */
  readonly contentType?: string;
  encode(value: unknown): Uint8Array;
  /** `contentType` is what the message arrived with (undefined = none); most codecs ignore it. */
  decode(payload: Uint8Array, contentType?: string): unknown;
}

/**
 * Names of the built-in codecs ('msgpack' only in the full build). `auto`, the default,
 * publishes MessagePack (JSON in topicast-core) and decodes each message by its content type.
 * @example
 * const codec: CodecName = 'json';
 * await connect(url, { codec });
 */
export type CodecName = 'auto' | 'msgpack' | 'json' | 'text' | 'raw';

const utf8Encoder = new TextEncoder();
// fatal: a payload that is not UTF-8 is a CodecError, not a string full of U+FFFD.
const utf8Decoder = new TextDecoder('utf-8', { fatal: true });

/**
 * JSON as UTF-8 text. `undefined` is encoded as `null`; an empty payload (a
 * cleared retained value) decodes to `undefined`.
 * @example
 * await client.publish('a', { x: 1 }); // with { codec: 'json' }: payload is the bytes of '{"x":1}'
 */
export const json: Codec = {
  name: 'json',
  contentType: ContentType.json,
  encode: (value) => utf8Encoder.encode(JSON.stringify(value) ?? 'null'),
  decode: (payload) => (payload.length === 0 ? undefined : (JSON.parse(utf8Decoder.decode(payload)) as unknown)),
};

/**
 * UTF-8 text: `String(value)` on the way out, a string on the way in. What
 * `mosquitto_pub -m` and `curl --data` send.
 * @example
 * const sub = await client.subscribe('devices/+/status', (s) => console.log(s), { codec: 'text' });
 */
export const text: Codec = {
  name: 'text',
  contentType: ContentType.text,
  encode: (value) => utf8Encoder.encode(typeof value === 'string' ? value : String(value)),
  decode: (payload) => utf8Decoder.decode(payload),
};

/**
 * Raw bytes: publishes a `Uint8Array` (or an `ArrayBuffer`) unchanged and delivers a `Uint8Array`.
 * @example
 * await client.publish('cam/frame', jpegBytes); // with { codec: 'raw' }
 */
export const raw: Codec = {
  name: 'raw',
  contentType: ContentType.bytes,
  encode: (value) => {
    if (value instanceof Uint8Array) return value;
    if (value instanceof ArrayBuffer) return new Uint8Array(value);
    if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    throw new TypeError(`raw codec needs a Uint8Array or ArrayBuffer, got ${typeof value}`);
  },
  decode: (payload) => payload,
};

/**
 * Decodes a payload by the content type it arrived with — the one rule every Topicast client
 * follows (the SDK's `auto` codec, the dashboard, `topicast sub`, the agent):
 * MessagePack-tagged → `msgpackDecode`; JSON → `JSON.parse`; text → the string; bytes or a type
 * no built-in codec reads → the `Uint8Array`; no content type → `decodeUntagged` (UTF-8 JSON →
 * its value, other UTF-8 → the string, else bytes). An empty payload (a cleared retained value)
 * is `undefined` whatever its type. Throws when a tagged payload is not what its tag says.
 * @example
 * decodePayload(new TextEncoder().encode('7'), undefined, msgpack.decode); // 7 (what `mosquitto_pub -m 7` sends)
 * decodePayload(bytes, 'application/msgpack', msgpack.decode);             // the MessagePack value
 */
export function decodePayload(payload: Uint8Array, contentType: string | undefined, msgpackDecode: (payload: Uint8Array) => unknown): unknown {
  if (payload.length === 0) return undefined;
  switch (formatOf(contentType)) {
    case 'unknown': return decodeUntagged(payload);
    case 'msgpack': return msgpackDecode(payload);
    case 'json': return JSON.parse(utf8Decoder.decode(payload)) as unknown;
    case 'text': return utf8Decoder.decode(payload);
    default: return payload;
  }
}

/**
 * MessagePack without msgpackr, for topicast-core: the wire contract's decoder, which reads the
 * common subset (nil, booleans, numbers up to 2^53, strings, bytes, arrays and maps nested up to 8
 * deep) and throws on the rest (extensions, larger integers): a CodecError for that message.
 */
export function decodeMsgpackCore(payload: Uint8Array): unknown {
  return decodeMsgpack(payload);
}

/**
 * The `auto` codec: publishes with `publishWith` (MessagePack in the full build, JSON in
 * topicast-core), tagged with its content type, and decodes every message by the content type it
 * arrived with (`decodePayload`).
 * @example
 * const codec = autoCodec(json, decodeMsgpackCore); // what topicast-core uses by default
 */
export function autoCodec(publishWith: Codec, msgpackDecode: (payload: Uint8Array) => unknown): Codec {
  return {
    name: 'auto',
    contentType: publishWith.contentType,
    encode: publishWith.encode,
    decode: (payload, contentType) => decodePayload(payload, contentType, msgpackDecode),
  };
}

/** The codecs a build knows by name. */
export type CodecTable = { readonly [name: string]: Codec | undefined };

/** The codecs every build has (topicast-core's `auto` publishes JSON). */
export const coreCodecs: CodecTable = { json, text, raw, auto: autoCodec(json, decodeMsgpackCore) };

/** Resolves a codec option against the codecs of this build; throws TypeError for an unknown name. */
export function resolveCodec(option: CodecName | Codec | undefined, table: CodecTable, fallback: Codec): Codec {
  if (option === undefined) return fallback;
  if (typeof option !== 'string') return option;
  const codec = table[option];
  if (!codec) {
    throw new TypeError(
      option === 'msgpack'
        ? "codec 'msgpack' is not in this build (topicast-core): pass a Codec object, e.g. one built from msgpackr"
        : `unknown codec '${option}'`,
    );
  }
  return codec;
}
