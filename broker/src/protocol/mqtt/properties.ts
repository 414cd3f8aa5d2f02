/**
 * Rules on MQTT 5 properties as parsed: their shape, their repeats, where each may appear.
 * The shape check is a second line behind the property reader (wire-properties.ts), which
 * already refuses a value cut short: re-encoding such a property later (to a subscriber, as a
 * will) would throw, so a packet with one is malformed [MQTT-1.5.4-1, MQTT 5 §2.2.2].
 */
import type mqtt from 'mqtt-packet';

const STRINGS = ['contentType', 'responseTopic', 'assignedClientIdentifier', 'authenticationMethod', 'responseInformation', 'serverReference', 'reasonString'] as const;
const BINARIES = ['correlationData', 'authenticationData'] as const;
const INTEGERS = ['messageExpiryInterval', 'topicAlias', 'sessionExpiryInterval', 'receiveMaximum', 'maximumPacketSize', 'topicAliasMaximum', 'willDelayInterval', 'serverKeepAlive', 'maximumQoS'] as const;

function isCount(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0;
}

/** The name of the first ill-formed property, or undefined when all are well-formed. */
export function propertiesProblem(properties: unknown): string | undefined {
  if (properties === undefined || properties === null) return undefined;
  if (typeof properties !== 'object') return 'properties';
  const p = properties as Record<string, unknown>;
  for (const k of STRINGS) if (p[k] !== undefined && typeof p[k] !== 'string') return k;
  for (const k of BINARIES) if (p[k] !== undefined && !Buffer.isBuffer(p[k])) return k;
  for (const k of INTEGERS) if (p[k] !== undefined && !isCount(p[k])) return k;
  const ids = p.subscriptionIdentifier;
  if (ids !== undefined && !(Array.isArray(ids) ? ids.every(isCount) : isCount(ids))) return 'subscriptionIdentifier';
  const user = p.userProperties;
  if (user !== undefined) {
    if (user === null || typeof user !== 'object') return 'userProperties';
    for (const v of Object.values(user as Record<string, unknown>)) {
      if (Array.isArray(v) ? !v.every((x) => typeof x === 'string') : typeof v !== 'string') return 'userProperties';
    }
  }
  return undefined;
}

/**
 * The name of a property given more than once where MQTT 5 allows it once — a Protocol Error
 * (MQTT 5 §2.2.2.2 and each property's definition). The property reader (wire-properties.ts)
 * turns a repeat into an array; only User Property may repeat in what a client sends (a
 * Subscription Identifier from a client appears once, in SUBSCRIBE).
 */
export function repeatedProperty(properties: unknown): string | undefined {
  if (properties === undefined || properties === null || typeof properties !== 'object') return undefined;
  for (const [k, v] of Object.entries(properties)) if (k !== 'userProperties' && Array.isArray(v)) return k;
  return undefined;
}

const ACK = ['reasonString', 'userProperties'];
/** The properties MQTT 5 §3 defines for each packet a client sends (and for the will, §3.1.3.2). */
const ALLOWED: Record<string, ReadonlySet<string>> = {
  connect: new Set(['sessionExpiryInterval', 'receiveMaximum', 'maximumPacketSize', 'topicAliasMaximum', 'requestResponseInformation',
    'requestProblemInformation', 'userProperties', 'authenticationMethod', 'authenticationData']),
  will: new Set(['willDelayInterval', 'payloadFormatIndicator', 'messageExpiryInterval', 'contentType', 'responseTopic', 'correlationData', 'userProperties']),
  publish: new Set(['payloadFormatIndicator', 'messageExpiryInterval', 'topicAlias', 'responseTopic', 'correlationData', 'userProperties',
    'subscriptionIdentifier', 'contentType']),
  puback: new Set(ACK),
  pubrec: new Set(ACK),
  pubrel: new Set(ACK),
  pubcomp: new Set(ACK),
  subscribe: new Set(['subscriptionIdentifier', 'userProperties']),
  unsubscribe: new Set(['userProperties']),
  disconnect: new Set(['sessionExpiryInterval', 'reasonString', 'userProperties', 'serverReference']),
  auth: new Set(['authenticationMethod', 'authenticationData', 'reasonString', 'userProperties']),
};

/**
 * The name of a property that is not defined for this packet kind (`will` for will properties):
 * such a packet is malformed (MQTT 5 §2.2.2.2). The reader parses any known property in any packet.
 */
export function misplacedProperty(kind: string, properties: unknown): string | undefined {
  if (properties === undefined || properties === null || typeof properties !== 'object') return undefined;
  const allowed = ALLOWED[kind];
  if (allowed === undefined) return undefined;
  for (const k of Object.keys(properties)) if (!allowed.has(k)) return k;
  return undefined;
}

const BYTE_ABOVE_ONE = Symbol('byteAboveOne');

/**
 * Marks a properties object that held a one-byte property above 1 (wire-properties.ts): the
 * Payload Format Indicator and Request Problem / Response Information read as booleans, so 2..255
 * would otherwise pass as 1. A Protocol Error (MQTT 5 §3.1.2.11.6-7, §3.3.2.3.2).
 */
export function markByteAboveOne(properties: object): void {
  Object.defineProperty(properties, BYTE_ABOVE_ONE, { value: true });
}

/** Whether these properties held a one-byte property above 1 (see markByteAboveOne). */
export function hasByteAboveOne(properties: unknown): boolean {
  return properties !== null && typeof properties === 'object' && (properties as { [BYTE_ABOVE_ONE]?: boolean })[BYTE_ABOVE_ONE] === true;
}
