/**
 * Minimal HTTP streaming subscriber (broker PROTOCOL.md §10): one `GET /api/subscribe` per link
 * over TCP, the chunked response parsed in place. The broker writes whole events into a chunk (all
 * of one flush in one chunk), so each chunk is split on blank lines: a `data:` event is a delivery
 * (topic and value bounds reported as the delivery's, the value being its JSON text), `event:
 * retained` one from the snapshot, and `event: snapshot-end` acknowledges the subscribe.
 * Subscribe only: publishers use another wire.
 */
import { Carry, Link, type Template } from './link.js';

const DATA = Buffer.from('data: {"topic":"');
const RETAINED = Buffer.from('event: retained\ndata: {"topic":"');
const SNAPSHOT_END = Buffer.from('event: snapshot-end');
const VALUE = Buffer.from('","value":');
const BLANK = Buffer.from('\n\n');

export class SseLink extends Link {
  private readonly carry = new Carry();
  private headersDone = false;

  protected override afterOpen(): void {
    this.ack(); // no handshake before the request
  }

  protected sendSubscribe(filter: string): void {
    this.sendPacket(Buffer.from(`GET /api/subscribe?filter=${encodeURIComponent(filter)} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n`));
  }

  protected template(): Template {
    throw new Error('sse: subscribe only (publish over the native wire)');
  }

  protected onBytes(chunk: Buffer, s: number, e: number): void {
    const [buf, start, end] = this.carry.join(chunk, s, e);
    let i = start;
    if (!this.headersDone) {
      const h = buf.indexOf('\r\n\r\n', i);
      if (h < 0 || h >= end) return this.carry.keep(buf, i, end);
      if (buf.toString('latin1', i, i + 12) !== 'HTTP/1.1 200') return this.fail(`refused: ${buf.toString('utf8', i, Math.min(end, h))}`);
      this.headersDone = true;
      i = h + 4;
    }
    while (i < end) {
      const nl = buf.indexOf('\r\n', i);
      if (nl < 0 || nl >= end) break;
      const size = parseInt(buf.toString('latin1', i, nl), 16);
      if (nl === i) {
        i = nl + 2; // the CRLF ending the previous chunk
        continue;
      }
      if (Number.isNaN(size)) return this.fail(`bad chunk size ${buf.toString('latin1', i, Math.min(nl, i + 16))}`);
      const at = nl + 2;
      if (at + size > end) break;
      for (let e = at; e < at + size;) {
        const blank = buf.indexOf(BLANK, e);
        const stop = blank < 0 || blank >= at + size ? at + size : blank + 2;
        this.event(buf, e, stop);
        e = stop;
      }
      i = at + size; // uWS writes a chunk's closing CRLF with the next chunk: skipped above as an empty size line
    }
    this.carry.keep(buf, i, end);
  }

  private event(buf: Buffer, start: number, end: number): void {
    const prefix = buf.compare(DATA, 0, DATA.length, start, start + DATA.length) === 0 ? DATA.length
      : buf.compare(RETAINED, 0, RETAINED.length, start, start + RETAINED.length) === 0 ? RETAINED.length : 0;
    if (prefix > 0) {
      const ts = start + prefix;
      const te = buf.indexOf(VALUE, ts);
      if (te < 0 || te >= end) return this.onDelivery(buf, ts, ts, ts, ts); // no value (empty payload)
      this.onDelivery(buf, ts, te, te + VALUE.length, end - 3); // up to the closing brace
      return;
    }
    if (buf.compare(SNAPSHOT_END, 0, SNAPSHOT_END.length, start, start + SNAPSHOT_END.length) === 0) this.ack();
  }
}
