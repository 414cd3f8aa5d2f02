/**
 * The MessagePack payload codec, backed by msgpackr (the default of the full build).
 * Kept out of codec.ts so the core browser build can omit msgpackr.
 * `useRecords: false` keeps the bytes plain MessagePack that any decoder reads
 * (msgpackr's record extension would only be readable by msgpackr), and
 * `encodeUndefinedAsNil` avoids msgpackr's private extension for `undefined`.
 */
import { Packr } from 'msgpackr';
import { autoCodec, type Codec } from './codec.js';
import { ContentType } from './protocol/index.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, encodeUndefinedAsNil: true });

/**
 * MessagePack via msgpackr: compact, typed (numbers stay numbers, bytes stay bytes).
 * An empty payload (a cleared retained value) decodes to `undefined`.
 * @example
 * const client = await connect(url, { codec: msgpack }); // same as the default
 */
export const msgpack: Codec = {
  name: 'msgpack',
  contentType: ContentType.msgpack,
  encode: (value) => packr.pack(value),
  decode: (payload) => {
    if (payload.length === 0) return undefined;
    const value = packr.unpack(payload) as unknown;
    // 0xC1 is "never used" in MessagePack; msgpackr returns a marker object for it instead of throwing.
    if (value !== null && typeof value === 'object' && (value as { constructor?: { name?: string } }).constructor?.name === 'C1Type') {
      throw new Error('not MessagePack: 0xc1 is never used');
    }
    return value;
  },
};

/**
 * The full build's default codec: publishes MessagePack tagged `application/msgpack`, decodes every
 * message by the content type it arrived with (`decodePayload`): `mosquitto_pub -m 7` arrives as 7.
 * @example
 * const client = await connect(url, { codec: auto }); // same as the default
 */
export const auto: Codec = autoCodec(msgpack, msgpack.decode);
