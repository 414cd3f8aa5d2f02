/**
 * Payload codecs: how application values become the opaque payload bytes the
 * broker routes, and back. The broker never looks inside a payload.
 *
 * `json`, `text` and `raw` live here and cost a few hundred bytes; MessagePack
 * (the default of the full build) lives in codec-msgpack.ts so that the core
 * browser build can leave msgpackr out entirely.
 */

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
  encode(value: unknown): Uint8Array;
  decode(payload: Uint8Array): unknown;
}

/**
 * Names of the built-in codecs ('msgpack' only in the full build).
 * @example
 * const codec: CodecName = 'json';
 * await connect(url, { codec });
 */
export type CodecName = 'msgpack' | 'json' | 'text' | 'raw';

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
  encode: (value) => {
    if (value instanceof Uint8Array) return value;
    if (value instanceof ArrayBuffer) return new Uint8Array(value);
    if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    throw new TypeError(`raw codec needs a Uint8Array or ArrayBuffer, got ${typeof value}`);
  },
  decode: (payload) => payload,
};

/** The codecs a build knows by name. */
export type CodecTable = { readonly [name: string]: Codec | undefined };

/** The codecs every build has. */
export const coreCodecs: CodecTable = { json, text, raw };

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
