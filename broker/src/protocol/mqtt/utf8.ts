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

/**
 * mqtt-packet decodes strings leniently, turning ill-formed UTF-8 into U+FFFD.
 * A topic, filter or client id holding U+FFFD is therefore taken as ill-formed,
 * which the spec makes a malformed packet [MQTT-1.5.4-1] (3.1.1: [MQTT-1.5.3-1]).
 * The character has no use in topic names, so nothing valid is lost.
 */
export function wasIllFormed(s: string): boolean {
  return s.includes('\uFFFD');
}
