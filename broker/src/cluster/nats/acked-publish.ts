/**
 * JetStream publishes that wait for their PubAck, for the rooms that store (history, sessions).
 * Not `js.publish`: that makes an error object (with its stack) and a timer per request, and
 * hands each message to the socket alone, which under uWebSockets.js is one write per message.
 * Here publishes queue until setImmediate and go out together, PubAcks come back on one inbox
 * subscription (`<inbox>.<n>`), and one timer sweeps the overdue ones.
 *
 * A failure rejects with an Error whose `code` says what happened: '503' (no responders, the
 * stream unavailable, the connection closed under the publish), 'TIMEOUT' (no PubAck within
 * `requestTimeoutMs`), or `api_error` set (JetStream refused it) — what `isJetStreamUnavailable`
 * (options.js) reads to retry.
 */
import { createInbox, type Msg, type MsgHdrs, type NatsConnection, type NatsError, type Subscription } from 'nats';
import { BusUnavailableError } from '../../core/bus.js';
import type { NatsLink } from './link.js';

const SWEEP_MS = 250;

interface Pending {
  resolve(seq: number): void;
  reject(err: Error): void;
  deadlineMs: number;
}

export class AckedPublisher {
  private readonly inflight = new Map<number, Pending>();
  private readonly inbox = createInbox();
  private ackSub: Subscription | undefined;
  private ackConnection: NatsConnection | undefined;
  private requestSeq = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private out: { subject: string; data: Uint8Array; options: { reply: string; headers?: MsgHdrs } }[] = [];

  constructor(private readonly link: NatsLink) {}

  /** Publishes `data` on `subject` and resolves with the stream sequence JetStream stored it at. */
  publish(subject: string, data: Uint8Array, headers?: MsgHdrs): Promise<number> {
    const nc = this.link.nc;
    if (!nc || nc.isClosed()) return Promise.reject(new BusUnavailableError('NATS unreachable'));
    if (this.ackSub === undefined || this.ackConnection !== nc) {
      this.ackConnection = nc;
      this.ackSub = nc.subscribe(`${this.inbox}.*`, { callback: this.onPubAck });
    }
    return new Promise<number>((resolve, reject) => {
      const id = ++this.requestSeq;
      this.inflight.set(id, { resolve, reject, deadlineMs: Date.now() + this.link.o.requestTimeoutMs });
      this.out.push({ subject, data, options: headers ? { reply: `${this.inbox}.${id}`, headers } : { reply: `${this.inbox}.${id}` } });
      if (this.out.length === 1) setImmediate(this.sendOut);
      if (this.sweeper === undefined) {
        this.sweeper = setInterval(this.sweep, SWEEP_MS);
        this.sweeper.unref();
      }
    });
  }

  close(): void {
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
    this.ackSub?.unsubscribe();
    this.ackSub = undefined;
  }

  private idOf(reply: string): number {
    return Number(reply.slice(this.inbox.length + 1));
  }

  private readonly sendOut = (): void => {
    const out = this.out;
    this.out = [];
    const nc = this.link.nc;
    for (const o of out) {
      try {
        if (!nc || nc.isClosed()) throw new Error('connection closed');
        nc.publish(o.subject, o.data, o.options);
      } catch (err) {
        this.settle(this.idOf(o.options.reply), Object.assign(new Error(`publish failed: ${(err as Error).message}`), { code: '503' }));
      }
    }
  };

  /** A PubAck (`{stream, seq}` or `{error}`), or a "no responders" status, for request `<inbox>.<n>`. */
  private readonly onPubAck = (err: NatsError | null, msg: Msg): void => {
    if (err) return;
    const id = this.idOf(msg.subject);
    const code = msg.headers?.code ?? 0;
    if (code >= 400 || msg.data.length === 0) return this.settle(id, Object.assign(new Error(`JetStream ${code || 'empty'} ${msg.headers?.description ?? ''}`), { code: String(code || 503) }));
    let ack: { seq?: number; error?: { code?: number; err_code?: number; description?: string } };
    try {
      ack = JSON.parse(new TextDecoder().decode(msg.data)) as typeof ack;
    } catch (e) {
      return this.settle(id, e as Error);
    }
    if (ack.error) return this.settle(id, Object.assign(new Error(ack.error.description ?? 'JetStream error'), { api_error: ack.error }));
    if (typeof ack.seq !== 'number') return this.settle(id, new Error('no sequence in the PubAck'));
    this.settle(id, undefined, ack.seq);
  };

  private settle(id: number, err: Error | undefined, seq = 0): void {
    const entry = this.inflight.get(id);
    if (entry === undefined) return;
    this.inflight.delete(id);
    if (err) entry.reject(err);
    else entry.resolve(seq);
  }

  /** Fails the requests past their deadline as timeouts. */
  private readonly sweep = (): void => {
    const now = Date.now();
    for (const [id, entry] of this.inflight) if (entry.deadlineMs <= now) this.settle(id, Object.assign(new Error('TIMEOUT'), { code: 'TIMEOUT' }));
    if (this.inflight.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  };
}
