
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
