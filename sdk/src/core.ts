/**
 * topicast-core: the SDK without msgpackr. Same API as the full build, but the
 * built-in codecs are 'auto' (the default: publishes JSON, decodes by content type,
 * MessagePack included), 'json', 'text' and 'raw'; publishing MessagePack or any
 * other format is a `Codec` object passed in `connect`'s options. This is the
 * entry of the small browser build (dist/browser/topicast-core.js).
 */
import { openClient, type Client, type ConnectOptions } from './client.js';
import { coreCodecs } from './codec.js';
import type { TopicMap } from './topics.js';
import { transport } from '#transport';

/**
 * Connects to a Topicast broker (core build: default codec 'auto', publishing JSON).
 * @example
 * import { connect } from './topicast-core.js';
 * const client = await connect('ws://localhost:8080/ws');
 * await client.publish('hello', { from: 'browser' });
 */
export function connect<Topics extends TopicMap = {}>(url: string | readonly string[], options: ConnectOptions = {}): Promise<Client<Topics>> {
  return openClient<Topics>(url, options, { codecs: coreCodecs, defaultCodec: coreCodecs.auto!, transport });
}

export type { Client, ClientEvents, ClientState, ConnectOptions, DrainNotice, PublishOptions, RequestOptions, SubscribeOptions, SubscribeResult } from './client.js';
export { DEFAULT_CONNECT_TIMEOUT_MS, DEFAULT_HEARTBEAT_MS } from './client.js';
export {
  Subscription,
  DEFAULT_MAX_BUFFERED,
  type Handler,
  type Message,
  type MessageMeta,
  type ResumeOutcome,
  type SubscriptionEvents,
  type SubscriptionState,
} from './subscription.js';
export type { HistoryEndInfo, HistoryPrefill, StreamPosition } from './protocol/index.js';
export type { HistoryMessage, HistoryOptions, HistoryPage, HistoryResult } from './history.js';
export { json, text, raw, decodePayload, type Codec, type CodecName } from './codec.js';
export { ContentType, formatOf, type PayloadFormat } from './protocol/index.js';
export { backoffDelay, DEFAULT_MAX_DELAY_MS, DEFAULT_MIN_DELAY_MS, type BackoffOptions } from './backoff.js';
export { createEmitter, type Emitter, type EventsMap } from './emitter.js';
export { OfflineQueue, DEFAULT_MAX_BUFFERED_BYTES, DEFAULT_QUEUE_MAX_MESSAGES, type QueueOptions, type PushResult } from './queue.js';
export {
  ClientErrorCode,
  CodecError,
  ConnectionError,
  ErrorCode,
  errorFromClose,
  errorFromCode,
  QueueFullError,
  RequestError,
  TopicastError,
} from './errors.js';
export type { Transport, TransportHandlers, TransportSocket } from './transport/types.js';
export { httpTransport } from './transport/http.js';
export { DEFAULT_WEBSOCKET_RETRY_MS, type TransportKind, type Via } from './fallback.js';
export type { CodecValue, FilterMatches, FiltersValue, FilterValue, MatchingFilters, PublishValue, SplitLevels, TopicMap } from './topics.js';
