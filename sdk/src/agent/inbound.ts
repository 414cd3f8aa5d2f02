/**
 * What an actuator receives: a delivered payload as a value, by the content type it arrived with
 * (PROTOCOL.md §8, the SDK's one `decodePayload` rule), on every transport (native, MQTT, in-process).
 * A command must never be lost to a malformed tag: a payload that is not what its type says is
 * handed over as its text, or as bytes when it is not UTF-8, and the actuator's own checks refuse it.
 */
// topicast/codecs, not the SDK's entry: that one brings the client and its WebSocket library, which
// the broker's in-process agent never uses (about 2 MiB resident, docs/EMBEDDED.md).
import { decodePayload, msgpack } from 'topicast/codecs';
import { utf8Text } from 'topicast/protocol';

/**
 * @example
 * inboundValue(new TextEncoder().encode('7'), undefined) // 7 (what `mosquitto_pub -m 7` sends)
 */
export function inboundValue(payload: Uint8Array, contentType: string | undefined): unknown {
  try {
    return decodePayload(payload, contentType, msgpack.decode);
  } catch {
    return utf8Text(payload) ?? payload;
  }
}
