/**
 * Minimal Topicast native-protocol client (PROTOCOL.md §3): frames encoded with the
 * SDK's `encodeFrame`; deliveries `[18, topic, payload, flags, offset?]` parsed in place
 * (fixarray, positive fixint, str8/16/fixstr, bin8/16/32; the history offset is skipped); every
 * other server frame goes through the SDK's `decodeServerFrame`.
 */
import { encodeFrame, decodeServerFrame, Op, SUBPROTOCOL, type SubscribeOptions, type SubscribeResult } from 'topicast/protocol';
import { Link, type Template } from './link.js';

export class NativeLink extends Link {
  private nextId = 1;
  /** The result of the last SUBSCRIBE ACK (history position, replay counts). */
  lastSubscribe: SubscribeResult | null = null;

  protected override subprotocol(): string {
    return SUBPROTOCOL;
  }

  protected onBytes(buf: Buffer, start: number, end: number): void {
    if ((buf[start] === 0x94 || buf[start] === 0x95) && buf[start + 1] === Op.delivery) {
      let i = start + 2;
      const s = buf[i]!;
      let tl: number;
      if ((s & 0xe0) === 0xa0) {
        tl = s & 0x1f;
        i += 1;
      } else if (s === 0xd9) {
        tl = buf[i + 1]!;
        i += 2;
      } else if (s === 0xda) {
        tl = buf.readUInt16BE(i + 1);
        i += 3;
      } else return this.other(buf, start, end);
      const ts = i;
      const te = i + tl;
      const b = buf[te]!;
      let pl: number;
      let ps: number;
      if (b === 0xc4) {
        pl = buf[te + 1]!;
        ps = te + 2;
      } else if (b === 0xc5) {
        pl = buf.readUInt16BE(te + 1);
        ps = te + 3;
      } else if (b === 0xc6) {
        pl = buf.readUInt32BE(te + 1);
        ps = te + 5;
      } else return this.other(buf, start, end);
      this.onDelivery(buf, ts, te, ps, ps + pl);
      return;
    }
    this.other(buf, start, end);
  }

  private other(buf: Buffer, start: number, end: number): void {
    const f = decodeServerFrame(buf.subarray(start, end));
    switch (f.op) {
      case Op.welcome:
        this.ack();
        break;
      case Op.ack:
        if (f.result) this.lastSubscribe = f.result;
        this.ack();
        break;
      case Op.error:
        this.fail(`error ${f.code}: ${f.message}`);
        break;
      case Op.delivery: {
        // Not reached with the broker's encoder; kept correct for any valid encoding.
        const topic = Buffer.from(f.topic);
        const joined = Buffer.concat([topic, f.payload]);
        this.onDelivery(joined, 0, topic.length, topic.length, joined.length);
        break;
      }
      default:
        break; // snapshot end, pong
    }
  }

  protected template(topic: string, payloadBytes: number, retain: boolean): Template {
    const bytes = Buffer.from(encodeFrame({ op: Op.publish, id: 0, topic, payload: new Uint8Array(payloadBytes), flags: retain ? 1 : 0 }));
    // The payload is the last field but one; flags (0 or 1) is a one-byte fixint.
    return { bytes, payloadAt: bytes.length - 1 - payloadBytes };
  }

  protected sendSubscribe(filter: string, options: SubscribeOptions = {}): void {
    this.sendPacket(Buffer.from(encodeFrame({ op: Op.subscribe, id: this.nextId++, filters: [filter], options })));
  }

  /** SUBSCRIBE with options (e.g. `resume`); resolves on its ACK, whose result is then `lastSubscribe`. */
  subscribeWith(filter: string, options: SubscribeOptions, timeoutMs = 10_000): Promise<void> {
    const acked = this.expectAck(timeoutMs, `subscribe ${filter}`);
    this.sendSubscribe(filter, options);
    return acked;
  }
}
