/**
 * The MessagePack payload codec, backed by msgpackr (the default of the full build).
 * Kept out of codec.ts so the core browser build can omit msgpackr.
 * `useRecords: false` keeps the bytes plain MessagePack that any decoder reads
 * (msgpackr's record extension would only be readable by msgpackr), and
 * `encodeUndefinedAsNil` avoids msgpackr's private extension for `undefined`.
 */
import { Packr } from 'msgpackr';
import type { Codec } from './codec.js';

const packr = new Packr({ useRecords: false, mapsAsObjects: true, encodeUndefinedAsNil: true });

/**
 * MessagePack via msgpackr: compact, typed (numbers stay numbers, bytes stay bytes).
 * An empty payload (a cleared retained value) decodes to `undefined`.
 * @example
 * const client = await connect(url, { codec: msgpack }); // same as the default
 */
export const msgpack: Codec = {
  name: 'msgpack',
  encode: (value) => packr.pack(value),
  decode: (payload) => (payload.length === 0 ? undefined : (packr.unpack(payload) as unknown)),
};
