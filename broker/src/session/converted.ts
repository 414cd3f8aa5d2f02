/**
 * A MessagePack payload as readable bytes (`msgpackToJson`, PROTOCOL.md §8), converted once per
 * message for every subscriber that cannot read MessagePack — MQTT (`--mqtt-payloads json`) and
 * HTTP streams alike — and cached beside the message's encoded frames (core/message.ts `encoded`).
 * Cost: one conversion per MessagePack-tagged message that has such a subscriber; none otherwise.
 */
import { ContentType, msgpackToJson, type ConvertedPayload } from 'topicast/protocol';
import type { Message } from '../core/message.js';

/** Cache key on `message.encoded`; the original payload stored there stands for "not convertible". */
const CONVERTED = 'converted';

/**
 * The converted payload of a MessagePack-tagged message, or undefined when its payload is not one
 * MessagePack value (it then goes out as published). The caller checks the tag.
 */
export function convertedPayload(message: Message): ConvertedPayload | undefined {
  let bytes = message.encoded[CONVERTED];
  if (bytes === undefined) {
    // A bad payload is tried once, not once per subscriber.
    bytes = msgpackToJson(message.payload)?.payload ?? message.payload;
    message.encoded[CONVERTED] = bytes;
  }
  if (bytes === message.payload) return undefined;
  return { payload: bytes, contentType: convertedType(message.payload[0]!) };
}

/** The content type msgpackToJson gives a value starting with this MessagePack type byte. */
function convertedType(first: number): ContentType {
  if ((first >= 0xa0 && first <= 0xbf) || first === 0xd9 || first === 0xda || first === 0xdb) return ContentType.text;
  if (first === 0xc4 || first === 0xc5 || first === 0xc6) return ContentType.bytes;
  return ContentType.json;
}
