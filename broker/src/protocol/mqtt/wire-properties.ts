/**
 * MQTT 5 properties (MQTT 5 §2.2.2) read straight from the packet bytes: the PUBLISH fast path
 * builds its properties object here (the shape mqtt-packet gives: booleans for one-byte flags,
 * Buffers for binary data, user properties as a null-prototype object of name → value or values),
 * and for every other packet the same walk checks what mqtt-packet's object cannot show.
 *
 * Strict where the specification is: every string property and both halves of a user property
 * must be well-formed UTF-8 [MQTT-1.5.4-1]; a value cut short or running past the property
 * length is malformed (MQTT 5 §2.2.2.1). The object also shows what the dispatcher judges:
 * a one-byte property above 1 is marked (a Protocol Error, §3.1.2.11.6-7, §3.3.2.3.2), a
 * repeat of a property that may appear once becomes an array of its values (§2.2.2.2), and
 * user properties carry their wire order where the object cannot express it [MQTT-3.3.2-18]. Cost: one pass, no allocation beyond the values themselves.
 */
import { isUtf8 } from 'node:buffer';
import { markByteAboveOne } from './properties.js';
import { recordWireOrder, type Pairs } from './user-properties.js';

type Kind = 'byte' | 'int8' | 'int16' | 'int32' | 'var' | 'string' | 'pair' | 'binary';

/** Property identifier → name and wire type (MQTT 5 §2.2.2.2, Table 2-4), the names mqtt-packet uses. */
const PROPERTIES: ReadonlyMap<number, readonly [string, Kind]> = new Map([
  [0x01, ['payloadFormatIndicator', 'byte']],
  [0x02, ['messageExpiryInterval', 'int32']],
  [0x03, ['contentType', 'string']],
  [0x08, ['responseTopic', 'string']],
  [0x09, ['correlationData', 'binary']],
  [0x0b, ['subscriptionIdentifier', 'var']],
  [0x11, ['sessionExpiryInterval', 'int32']],
  [0x12, ['assignedClientIdentifier', 'string']],
  [0x13, ['serverKeepAlive', 'int16']],
  [0x15, ['authenticationMethod', 'string']],
  [0x16, ['authenticationData', 'binary']],
  [0x17, ['requestProblemInformation', 'byte']],
  [0x18, ['willDelayInterval', 'int32']],
  [0x19, ['requestResponseInformation', 'byte']],
  [0x1a, ['responseInformation', 'string']],
  [0x1c, ['serverReference', 'string']],
  [0x1f, ['reasonString', 'string']],
  [0x21, ['receiveMaximum', 'int16']],
  [0x22, ['topicAliasMaximum', 'int16']],
  [0x23, ['topicAlias', 'int16']],
  [0x24, ['maximumQoS', 'int8']],
  [0x25, ['retainAvailable', 'byte']],
  [0x26, ['userProperties', 'pair']],
  [0x27, ['maximumPacketSize', 'int32']],
  [0x28, ['wildcardSubscriptionAvailable', 'byte']],
  [0x29, ['subscriptionIdentifiersAvailable', 'byte']],
  [0x2a, ['sharedSubscriptionAvailable', 'byte']],
]);

/** A Variable Byte Integer (MQTT 5 §1.5.5) at `at`, before `end`: value and next offset, or -1 when cut short or longer than 4 bytes. */
export function readVarInt(buf: Uint8Array, at: number, end: number): { value: number; next: number } | -1 {
  let value = 0;
  let mul = 1;
  for (let i = 0; i < 4; i++) {
    if (at >= end) return -1;
    const b = buf[at++]!;
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return { value, next: at };
    mul *= 128;
  }
  return -1;
}

/** Properties read from the wire, or why they are malformed. */
export type PropertiesRead =
  | { properties: Record<string, unknown>; next: number }
  | { error: string };

/** The result of a walk that failed (a string) or produced an object (`properties`, the offset after them). */
export function isPropertiesError(r: PropertiesRead): r is { error: string } {
  return 'error' in r;
}

/** A UTF-8 string field (MQTT 5 §1.5.4) at `at`: its end offset, or -1 when cut short or ill-formed. */
export function utf8FieldEnd(buf: Buffer, at: number, end: number): number {
  if (at + 2 > end) return -1;
  const stop = at + 2 + ((buf[at]! << 8) | buf[at + 1]!);
  if (stop > end) return -1;
  if (stop > at + 2 && !isUtf8(buf.subarray(at + 2, stop))) return -1;
  return stop;
}

/**
 * Reads the property section that starts (with its length) at `at`, within `end`. The object has
 * the keys mqtt-packet would give; `next` is the first byte after the section.
 */
export function readProperties(buf: Buffer, at: number, end: number): PropertiesRead {
  const length = readVarInt(buf, at, end);
  if (length === -1) return { error: 'Malformed properties length' };
  let pos = length.next;
  const stop = pos + length.value;
  if (stop > end) return { error: 'Properties longer than the packet' };
  const result: Record<string, unknown> = {};
  let pairs: Pairs | undefined;
  let byteAboveOne = false;
  let userProperties: Record<string, string | string[]> | undefined;
  while (pos < stop) {
    const id = buf[pos++]!;
    if (id === 0) return { error: 'Cannot parse property code type' };
    const spec = PROPERTIES.get(id);
    if (spec === undefined) return { error: 'Unknown property' };
    const [name, kind] = spec;
    let value: unknown;
    switch (kind) {
      case 'byte':
      case 'int8': {
        if (pos + 1 > stop) return { error: `Cannot parse property ${name}` };
        const b = buf[pos++]!;
        if (kind === 'int8') value = b;
        else {
          if (b > 1) byteAboveOne = true;
          value = b !== 0;
        }
        break;
      }
      case 'int16':
        if (pos + 2 > stop) return { error: `Cannot parse property ${name}` };
        value = (buf[pos]! << 8) | buf[pos + 1]!;
        pos += 2;
        break;
      case 'int32':
        if (pos + 4 > stop) return { error: `Cannot parse property ${name}` };
        value = buf.readUInt32BE(pos);
        pos += 4;
        break;
      case 'var': {
        const v = readVarInt(buf, pos, stop);
        if (v === -1) return { error: `Cannot parse property ${name}` };
        value = v.value;
        pos = v.next;
        break;
      }
      case 'string': {
        const e = utf8FieldEnd(buf, pos, stop);
        if (e === -1) return { error: `Cannot parse property ${name}` };
        value = buf.toString('utf8', pos + 2, e);
        pos = e;
        break;
      }
      case 'binary': {
        if (pos + 2 > stop) return { error: `Cannot parse property ${name}` };
        const e = pos + 2 + ((buf[pos]! << 8) | buf[pos + 1]!);
        if (e > stop) return { error: `Cannot parse property ${name}` };
        value = buf.subarray(pos + 2, e);
        pos = e;
        break;
      }
      case 'pair': {
        const k = utf8FieldEnd(buf, pos, stop);
        const v = k === -1 ? -1 : utf8FieldEnd(buf, k, stop);
        if (v === -1) return { error: 'Cannot parse property userProperties' };
        const key = buf.toString('utf8', pos + 2, k);
        const val = buf.toString('utf8', k + 2, v);
        pos = v;
        (pairs ??= []).push([key, val]);
        // mqtt-packet's shape: one value, or every value of a repeated name in wire order.
        userProperties ??= Object.create(null) as Record<string, string | string[]>;
        const had = userProperties[key];
        if (had === undefined) userProperties[key] = val;
        else if (Array.isArray(had)) had.push(val);
        else userProperties[key] = [had, val];
        continue;
      }
    }
    const had = result[name];
    // Only User Property may repeat (§2.2.2.2): a repeat becomes an array, which names the culprit (properties.ts).
    if (had === undefined) result[name] = value;
    else result[name] = Array.isArray(had) ? [...(had as unknown[]), value] : [had, value];
  }
  if (userProperties !== undefined) {
    result.userProperties = userProperties;
    recordWireOrder(userProperties, pairs!);
  }
  if (byteAboveOne) markByteAboveOne(result);
  return { properties: result, next: stop };
}
