/**
 * A message as the router sees it: a topic, opaque payload bytes and flags.
 * Frames and packets never reach the core; protocols turn them into a Message
 * at the edge and turn a Message back into bytes once per wire shape, caching
 * the bytes on the message (`encoded`) so every subscriber of that shape gets
 * the same buffer (DESIGN.md "Performance principles").
 */

/** MQTT 5 properties that travel with a message between MQTT clients (MQTT 5 §3.3.2.3). */
export interface MessageProperties {
  payloadFormatIndicator?: boolean;
  contentType?: string;
  responseTopic?: string;
  correlationData?: Uint8Array;
  userProperties?: Record<string, string | string[]>;
  /** Absolute expiry time in ms since the epoch (message expiry interval resolved at publish time). */
  expiresAt?: number;
}

export interface Message {
  readonly topic: string;
  readonly payload: Uint8Array;
  /** The publisher asked to keep this as the topic's retained value. */
  readonly retain: boolean;
  /** Publisher's QoS (0 for the native protocol and HTTP). */
  readonly qos: 0 | 1 | 2;
  /** The subscriber that published it, when it was one (MQTT 5 "no local"); undefined for HTTP and the broker itself. */
  readonly origin: object | undefined;
  readonly properties: MessageProperties | undefined;
  /**
   * Position in the broker's history stream (core/history.ts, PROTOCOL.md §4.6), assigned by the
   * router before delivery; 0 when the topic keeps no history.
   */
  offset: number;
  /** Encoded bytes per wire shape, filled lazily by the protocol that first needs them. */
  readonly encoded: { [shape: string]: Uint8Array | undefined };
}

export function createMessage(
  topic: string,
  payload: Uint8Array,
  retain = false,
  origin?: object,
  qos: 0 | 1 | 2 = 0,
  properties?: MessageProperties,
): Message {
  return { topic, payload, retain, qos, origin, properties, offset: 0, encoded: {} };
}
