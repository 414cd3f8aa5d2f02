/**
 * The wire contract of Topicast's native protocol v1, shared by the SDK and the broker.
 * @example
 * import { encodeFrame, decodeServerFrame, Op } from 'topicast/protocol';
 * ws.send(encodeFrame({ op: Op.ping, id: 1 }));
 */
export * from './frames.js';
export * from './errors.js';
export * from './topic.js';
export { encode as encodeMsgpack, decode as decodeMsgpack, type Value as MsgpackValue } from './msgpack.js';
export * from './payload.js';
