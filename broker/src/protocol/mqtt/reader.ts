/**
 * Frames an MQTT byte stream into whole packets (MQTT 5 §2.1: a first byte, a Remaining Length
 * of one to four bytes, then that many bytes). Packets may span reads or share one.
 *
 * - A read's packets are handed on in place; only a packet cut by the end of a read is kept, in
 *   a buffer of its announced size allocated when the cut happens and released once the packet
 *   is complete (an idle connection holds nothing here). The sink keeps it (`partial`): the
 *   reader is a function, not an object per connection (issue 20, bytes per connection).
 * - A packet announced larger than `maxPacketBytes` is refused as soon as its length is known,
 *   before any of it is buffered; a Remaining Length longer than four bytes is malformed.
 * - The caller passes bytes it owns (they back the decoded payloads).
 */

/** Where framed packets go: `buf[start..end)` is one packet, `body` the first byte after its fixed header. */
export interface PacketSink {
  onFramed(buf: Buffer, start: number, body: number, end: number): void;
  /** The stream cannot go on: 'malformed' (a bad Remaining Length) or 'tooLarge' (announced `size` bytes). */
  onFrameError(problem: 'malformed' | 'tooLarge', size: number): void;
  /** False once the connection stopped reading (closing): the rest of the read is ignored. */
  readonly isOpen: boolean;
  /** The packet cut by the end of the last read; undefined between packets. Only `readPackets` writes it. */
  partial: PartialPacket | undefined;
}

/** A packet cut by the end of a read. */
export interface PartialPacket {
  bytes: Buffer;
  /** Bytes of it received so far. */
  filled: number;
  /** Its total size, or 0 while the fixed header itself is incomplete. */
  size: number;
  body: number;
}

/** Frames `buf` (owned by the caller from now on) and hands each whole packet to `sink`. */
export function readPackets(buf: Buffer, sink: PacketSink, maxPacketBytes: number): void {
  let at = 0;
  const held = sink.partial;
  if (held !== undefined) {
    if (held.size > 0) {
      const take = Math.min(held.size - held.filled, buf.length);
      buf.copy(held.bytes, held.filled, 0, take);
      held.filled += take;
      if (held.filled < held.size) return;
      sink.partial = undefined;
      sink.onFramed(held.bytes, 0, held.body, held.size);
      at = take;
    } else {
      // Only part of a fixed header (at most four bytes) was held: start again from it.
      buf = Buffer.concat([held.bytes.subarray(0, held.filled), buf]);
      sink.partial = undefined;
    }
  }
  const n = buf.length;
  while (at < n && sink.isOpen) {
    // Remaining Length: a Variable Byte Integer of at most four bytes (MQTT 5 §1.5.5).
    let remaining = 0;
    let mul = 1;
    let body = -1;
    for (let i = at + 1; i < n && i < at + 5; i++) {
      const b = buf[i]!;
      remaining += (b & 0x7f) * mul;
      if ((b & 0x80) === 0) {
        body = i + 1;
        break;
      }
      mul *= 128;
    }
    if (body === -1) {
      if (n - at >= 5) return sink.onFrameError('malformed', 0);
      const bytes = Buffer.allocUnsafe(5);
      buf.copy(bytes, 0, at, n);
      sink.partial = { bytes, filled: n - at, size: 0, body: 0 };
      return;
    }
    const size = body - at + remaining;
    if (size > maxPacketBytes) return sink.onFrameError('tooLarge', size);
    if (at + size > n) {
      const bytes = Buffer.allocUnsafe(size);
      buf.copy(bytes, 0, at, n);
      sink.partial = { bytes, filled: n - at, size, body: body - at };
      return;
    }
    sink.onFramed(buf, at, body, at + size);
    at += size;
  }
}
