/** Embedding API of the broker: start one in-process (tests, custom servers). */
export { startBroker, createContext, VERSION, DEFAULT_STATIC_ROOT, type RunningBroker, type BrokerDeps } from './broker.js';
export { loadConfig, ConfigError, settingsReference, type BrokerConfig } from './config.js';
export { Router, type Subscriber, type Subscription, type SubscriptionOptions } from './core/router.js';
export { MemoryRetainedStore, type RetainedStore } from './core/retained.js';
export { SubscriptionTrie } from './core/trie.js';
export { createMessage, type Message } from './core/message.js';
export { Outbox, Flusher, createOutboxStats, type OutboxLimits, type OutboxStats, type SlowConsumerPolicy } from './session/outbox.js';
export { SendResult, type Connection } from './session/connection.js';
export { createMqttProtocol } from './protocol/mqtt/index.js';
export { listenTcp } from './transport/tcp.js';
export { createNativeProtocol } from './protocol/native/index.js';
export { openLogRetainedStore, LogRetainedStore, StoreError } from './store/log.js';
export type { ProtocolHandler, ConnectionHandler, WebSocketEndpoint, StreamEndpoint, StreamStart, RequestEndpoint, HttpAnswer } from './session/handler.js';
