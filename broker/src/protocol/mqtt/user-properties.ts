/**
 * User Property order: the Server keeps the order of User Properties when it forwards a
 * message [MQTT-3.3.2-18]. They are held in an object keyed by name (mqtt-packet's shape), which
 * loses the order when a name repeats around another (a=1, b=2, a=3 would go out as a=1, a=3, b=2).
 * The property reader (wire-properties.ts) records the wire order on that object under a symbol
 * (invisible to every other reader); the encoder appends the pairs in that order.
 *
 * Only objects where the order is ambiguous (a repeated name and more than one name) get the
 * record, so the common case costs nothing. A retained message restored from disk has lost the
 * record and is forwarded grouped by name.
 */
const WIRE_ORDER = Symbol('userPropertyWireOrder');

export type Pairs = [string, string][];
type UserProperties = Record<string, string | string[]>;

function ambiguous(up: UserProperties): boolean {
  let names = 0;
  let repeats = false;
  for (const k in up) {
    names++;
    if (Array.isArray(up[k])) repeats = true;
  }
  return repeats && names > 1;
}

/** Records the wire order of these User Properties on them, where the object alone would lose it. */
export function recordWireOrder(up: UserProperties, pairs: Pairs): void {
  if (ambiguous(up)) Object.defineProperty(up, WIRE_ORDER, { value: pairs });
}

/** The recorded wire order of these User Properties, when it differs from what the object can express. */
export function userPropertyOrder(up: unknown): Pairs | undefined {
  return up !== null && typeof up === 'object' ? (up as { [WIRE_ORDER]?: Pairs })[WIRE_ORDER] : undefined;
}

function vbi(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

/** Reads a Variable Byte Integer at `at`: [value, next offset]. */
function readVbi(bytes: Uint8Array, at: number): [number, number] {
  let value = 0;
  let mul = 1;
  for (;;) {
    const b = bytes[at++]!;
    value += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) return [value, at];
    mul *= 128;
  }
}

/**
 * Appends User Property pairs, in order, to the properties of an encoded MQTT 5 PUBLISH
 * (one generated without them) and fixes both lengths.
 */
export function appendUserProperties(publish: Buffer, hasPacketId: boolean, pairs: Pairs): Buffer {
  const [remaining, headerEnd] = readVbi(publish, 1);
  const topicLength = (publish[headerEnd]! << 8) | publish[headerEnd + 1]!;
  const propsLengthAt = headerEnd + 2 + topicLength + (hasPacketId ? 2 : 0);
  const [propsLength, propsStart] = readVbi(publish, propsLengthAt);
  const propsEnd = propsStart + propsLength;
  const extra: Buffer[] = [];
  for (const [name, value] of pairs) {
    const k = Buffer.from(name);
    const v = Buffer.from(value);
    extra.push(Buffer.from([0x26, k.length >> 8, k.length & 0xff]), k, Buffer.from([v.length >> 8, v.length & 0xff]), v);
  }
  const added = Buffer.concat(extra);
  const newPropsLength = vbi(propsLength + added.length);
  const newRemaining = remaining - (propsStart - propsLengthAt) + newPropsLength.length + added.length;
  return Buffer.concat([
    publish.subarray(0, 1), Buffer.from(vbi(newRemaining)), publish.subarray(headerEnd, propsLengthAt),
    Buffer.from(newPropsLength), publish.subarray(propsStart, propsEnd), added, publish.subarray(propsEnd),
  ]);
}
