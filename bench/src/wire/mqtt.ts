/**
 * Minimal MQTT 3.1.1 client: CONNECT (clean session, keepalive 0), SUBSCRIBE QoS 0,
 * PUBLISH QoS 0; a stream parser that carries partial packets between reads and
 * reports PUBLISH packets in place. Over WebSocket it uses subprotocol `mqtt`.
 */
import { randomBytes } from 'node:crypto';
import { Carry, Link, type Template } from './link.js';

function remainingLength(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function str(s: string): Buffer {
  const b = Buffer.from(s);
  const out = Buffer.alloc(2 + b.length);
  out.writeUInt16BE(b.length, 0);
  b.copy(out, 2);
  return out;
}

function packet(first: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([first, ...remainingLength(body.length)]), body]);
}

export class MqttLink extends Link {
  private readonly carry = new Carry();
  private nextId = 1;

  protected override subprotocol(): string {
    return 'mqtt';
  }

  protected override afterOpen(): void {
    const clientId = `b${randomBytes(8).toString('hex')}`;
    // [MQTT-3.1.2] protocol name, level 4, flags: clean session; keepalive 0 (no pings).
    const vh = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 0]);
    this.sendPacket(packet(0x10, Buffer.concat([vh, str(clientId)])));
  }

  protected onBytes(chunk: Buffer, s: number, e: number): void {
    const [buf, start, end] = this.carry.join(chunk, s, e);
    let i = start;
    while (end - i >= 2) {
      const b0 = buf[i]!;
      let len = 0;
      let mult = 1;
      let j = i + 1;
      let complete = false;
      for (let k = 0; k < 4 && j < end; k++) {
        const b = buf[j++]!;
        len += (b & 0x7f) * mult;
        mult *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || end - j < len) break;
      const type = b0 >> 4;
      if (type === 3) {
        const ts = j + 2;
        const te = ts + buf.readUInt16BE(j);
        this.onDelivery(buf, ts, te, (b0 & 0x06) !== 0 ? te + 2 : te, j + len);
      } else if (type === 2) {
        if (buf[j + 1] === 0) this.ack();
        else this.fail(`CONNACK return code ${buf[j + 1]}`);
      } else if (type === 9) {
        if (buf[j + 2] === 0x80) this.fail('SUBACK failure');
        else this.ack();
      }
      i = j + len;
    }
    this.carry.keep(buf, i, end);
  }

  protected template(topic: string, payloadBytes: number, retain: boolean): Template {
    const t = str(topic);
    const body = Buffer.alloc(t.length + payloadBytes);
    t.copy(body, 0);
    const bytes = packet(retain ? 0x31 : 0x30, body);
    return { bytes, payloadAt: bytes.length - payloadBytes };
  }

  protected sendSubscribe(filter: string): void {
    const id = this.nextId++ & 0xffff || 1;
    this.sendPacket(packet(0x82, Buffer.concat([Buffer.from([id >> 8, id & 0xff]), str(filter), Buffer.from([0])])));
  }
}
