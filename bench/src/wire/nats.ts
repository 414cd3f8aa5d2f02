/**
 * Minimal NATS client (text protocol, TCP or the server's WebSocket listener):
 * `CONNECT {...}` + `PING` → `PONG` is the handshake; `SUB subject sid` + `PING`
 * → `PONG` acknowledges a subscription; `PUB subject n\r\n<payload>\r\n`;
 * deliveries `MSG subject sid [reply] n\r\n<payload>\r\n` are parsed in place.
 * Topics map to subjects: `/` → `.`, `+` → `*`, `#` → `>`.
 */
import { Carry, Link, type Template } from './link.js';

const CR = 0x0d;
const PING = Buffer.from('PING\r\n');
const PONG = Buffer.from('PONG\r\n');

export function subject(topic: string): string {
  return topic.replace(/\//g, '.').replace(/\+/g, '*').replace(/#/g, '>');
}

export class NatsLink extends Link {
  private readonly carry = new Carry();
  private sid = 1;

  protected override afterOpen(): void {
    this.sendPacket(Buffer.from('CONNECT {"verbose":false,"pedantic":false,"headers":false,"protocol":1}\r\nPING\r\n'));
  }

  protected onBytes(chunk: Buffer, s: number, e: number): void {
    const [buf, start, end] = this.carry.join(chunk, s, e);
    let i = start;
    while (i < end) {
      const eol = buf.indexOf(CR, i);
      if (eol < 0 || eol + 1 >= end) break;
      const c = buf[i];
      if (c === 0x4d /* M */) {
        // MSG <subject> <sid> [reply] <bytes>: the size is the last token of the line.
        let k = eol - 1;
        let size = 0;
        let mult = 1;
        while (buf[k] !== 0x20) {
          size += (buf[k]! - 0x30) * mult;
          mult *= 10;
          k--;
        }
        const ps = eol + 2;
        if (end - ps < size + 2) break;
        const ts = i + 4;
        this.onDelivery(buf, ts, buf.indexOf(0x20, ts), ps, ps + size);
        i = ps + size + 2;
        continue;
      }
      if (c === 0x50 /* P */) {
        if (buf[i + 1] === 0x49) this.sendPacket(PONG);
        else this.ack(); // PONG answers our PING after CONNECT or SUB
      } else if (c === 0x2d /* - */) this.fail(buf.toString('utf8', i, eol));
      i = eol + 2;
    }
    this.carry.keep(buf, i, end);
  }

  protected template(topic: string, payloadBytes: number): Template {
    const head = Buffer.from(`PUB ${subject(topic)} ${payloadBytes}\r\n`);
    const bytes = Buffer.concat([head, Buffer.alloc(payloadBytes), Buffer.from('\r\n')]);
    return { bytes, payloadAt: head.length };
  }

  protected sendSubscribe(filter: string): void {
    this.sendPacket(Buffer.concat([Buffer.from(`SUB ${subject(filter)} ${this.sid++}\r\n`), PING]));
  }
}
