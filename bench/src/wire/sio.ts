/**
 * Minimal Socket.IO 4 client over the WebSocket transport (Engine.IO v4 text packets):
 * `0{..}` open → `40` connect → `40{..}`; `2` ping → `3` pong; subscribe is the event
 * `sub` with an ack (`42N["sub",topic]` → `43N[..]`); publish is `42["pub",topic,payload]`
 * and deliveries arrive as `42["m",topic,payload]`. Payloads are ASCII strings
 * without quotes or backslashes, so their bytes appear verbatim in the JSON text.
 */
import { Link, type Template } from './link.js';

const DELIVERY_PREFIX = Buffer.from('42["m","');

export class SioLink extends Link {
  protected override readonly binary = false;
  private nextAck = 1;

  protected onBytes(buf: Buffer, start: number, end: number): void {
    const c0 = buf[start];
    if (c0 === 0x34 && buf[start + 1] === 0x32 && buf.compare(DELIVERY_PREFIX, 0, DELIVERY_PREFIX.length, start, start + DELIVERY_PREFIX.length) === 0) {
      const ts = start + DELIVERY_PREFIX.length;
      const te = buf.indexOf(0x22, ts);
      this.onDelivery(buf, ts, te, te + 3, end - 2);
      return;
    }
    const text = buf.toString('utf8', start, end);
    if (text.startsWith('0{')) this.sendPacket(Buffer.from('40'));
    else if (text.startsWith('40')) this.ack();
    else if (text === '2') this.sendPacket(Buffer.from('3'));
    else if (text.startsWith('43')) this.ack();
    else if (text.startsWith('44')) this.fail(`connect error ${text}`);
  }

  protected template(topic: string, payloadBytes: number): Template {
    const head = Buffer.from(`42["pub",${JSON.stringify(topic)},"`);
    const bytes = Buffer.concat([head, Buffer.alloc(payloadBytes, 0x78), Buffer.from('"]')]);
    return { bytes, payloadAt: head.length };
  }

  protected sendSubscribe(filter: string): void {
    this.sendPacket(Buffer.from(`42${this.nextAck++}["sub",${JSON.stringify(filter)}]`));
  }
}
