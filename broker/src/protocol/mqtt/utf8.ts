import { isUtf8 } from 'node:buffer';
import type mqtt from 'mqtt-packet';

/** Strict UTF-8 validation for the Payload Format Indicator (MQTT 5 §3.3.2.3.2). */
const strict = new TextDecoder('utf-8', { fatal: true });

export function isValidUtf8(bytes: Uint8Array): boolean {
  try {
    strict.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

interface ParserInternals {
  _pos: number;
  _list: { length: number; readUInt16BE(at: number): number; slice(start: number, end: number): Buffer };
  packet: { length: number };
  _parseString(): string | null;
}

/**
 * mqtt-packet decodes strings leniently (ill-formed UTF-8 becomes U+FFFD). This hook checks
 * the bytes of every UTF-8 string field (topics, filters, client id, user name, will topic,
 * string properties, user properties) first and makes an ill-formed one unparseable, so the
 * parser reports the packet as malformed [MQTT-1.5.4-1] (3.1.1: [MQTT-1.5.3-1]). A well-formed
 * U+FFFD is an ordinary character.
 */
export function strictUtf8Strings(parser: mqtt.Parser): void {
  const p = parser as unknown as ParserInternals;
  const parseString = p._parseString;
  p._parseString = function (this: ParserInternals) {
    const list = this._list;
    const at = this._pos;
    if (at + 2 <= list.length) {
      const end = at + 2 + list.readUInt16BE(at);
      if (end > at + 2 && end <= list.length && end <= this.packet.length && !isUtf8(list.slice(at + 2, end))) return null;
    }
    return parseString.call(this);
  };
}
