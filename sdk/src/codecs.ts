/**
 * `topicast/codecs`: the SDK's codecs and its one decoding rule (PROTOCOL.md §8) without the client,
 * its transports or `ws`, for code that reads payloads but never connects: the broker's in-process
 * agent decodes commands with it and so does not load the WebSocket client (docs/EMBEDDED.md, "Memory and CPU").
 */
export { json, text, raw, decodePayload, type Codec, type CodecName } from './codec.js';
export { auto, msgpack } from './codec-msgpack.js';
