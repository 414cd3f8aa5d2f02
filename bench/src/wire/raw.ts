/**
 * The bench's own tiny protocol for the raw uWebSockets.js peer (peer/uws.ts):
 * binary messages `'s' topic` (subscribe; echoed back as the ack) and
 * `'p' topicLength topic payload` (publish; delivered to subscribers verbatim).
 */
import { Link, type Template } from './link.js';

export const RAW_SUBSCRIBE = 0x73;
export const RAW_PUBLISH = 0x70;

export class RawLink extends Link {
  protected override afterOpen(): void {
    this.ack(); // no handshake beyond the WebSocket upgrade
  }

  protected onBytes(buf: Buffer, start: number, end: number): void {
    const kind = buf[start];
    if (kind === RAW_PUBLISH) {
      const ts = start + 2;
      const te = ts + buf[start + 1]!;
      this.onDelivery(buf, ts, te, te, end);
    } else if (kind === RAW_SUBSCRIBE) this.ack();
  }

  protected template(topic: string, payloadBytes: number): Template {
    const t = Buffer.from(topic);
    if (t.length > 255) throw new Error('raw protocol topics are at most 255 bytes');
    const bytes = Buffer.alloc(2 + t.length + payloadBytes);
    bytes[0] = RAW_PUBLISH;
    bytes[1] = t.length;
    t.copy(bytes, 2);
    return { bytes, payloadAt: 2 + t.length };
  }

  protected sendSubscribe(filter: string): void {
    this.sendPacket(Buffer.concat([Buffer.of(RAW_SUBSCRIBE), Buffer.from(filter)]));
  }
}
