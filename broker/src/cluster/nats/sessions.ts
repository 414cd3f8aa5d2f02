/**
 * The NATS bus's session room (design note: cluster/DESIGN.md "Persistent MQTT sessions in
 * JetStream"): the `SessionLog` of core/bus.ts over JetStream.
 *
 * - Records of a key live in the stream `<PREFIX>_SESSIONS` on `<prefix>.s.<hex of key>` (hex: a
 *   client id may hold any character, a subject token may not). Append is a JetStream publish;
 *   its PubAck's seq is the record's position. JetStream stores one connection's publishes to one
 *   stream in the order sent, so a key's records are in write order.
 * - Read: the last seq of the subject (one direct get), then an ordered consumer over the subject
 *   until it delivered that seq. Truncate: a purge of the subject below a position.
 * - Claim: the node holding a key subscribes to `<prefix>.sc.<hex of key>`; a claim is a request
 *   there. "No responders" (nobody holds it) answers at once; the holder answers once its release
 *   (takeover: close the connection, leave the router, store its last writes) is done.
 *
 * - Appends are not `js.publish` (an error object and a timer per request, one socket write each):
 *   as in the history room, they queue until setImmediate and go out together, PubAcks come back
 *   on one inbox subscription (`<inbox>.<n>`), and one timer fails the overdue ones.
 *
 * Cost: one JetStream publish round trip per record (queued delivery, in flight, done), one SUB per
 * held key, one request per claim (every MQTT CONNECT with a bus).
 */
import { createInbox, DiscardPolicy, RetentionPolicy, StorageType, type Msg, type NatsConnection, type NatsError, type Subscription } from 'nats';
import type { SessionLog } from '../../core/bus.js';
import type { NatsLink } from './link.js';
import { isNotFound } from './options.js';

export class NatsSessions implements SessionLog {
  private readonly held = new Map<string, Subscription>();
  private readonly stream: string;
  private readonly subjects: string;
  private readonly claims: string;
  private readonly inflight = new Map<number, { resolve(seq: number): void; reject(err: Error): void; deadlineMs: number }>();
  private readonly ackInbox = createInbox();
  private ackSub: Subscription | undefined;
  private ackConnection: NatsConnection | undefined;
  private requestSeq = 0;
  private sweeper: NodeJS.Timeout | undefined;
  private out: { subject: string; data: Uint8Array; reply: string }[] = [];
  private making: Promise<void> | undefined;
  private streamReady = false;

  constructor(private readonly link: NatsLink) {
    const stem = link.o.prefix.replaceAll('.', '_').toUpperCase();
    this.stream = `${stem}_SESSIONS`;
    this.subjects = `${link.o.prefix}.s`;
    this.claims = `${link.o.prefix}.sc`;
  }

  /**
   * The stream is made on first use, not as a JetStream set-up step of the link: a node without
   * persistent MQTT sessions never touches it, and its readiness never waits for it.
   */
  private ensure(): Promise<void> {
    return (this.making ??= this.ensureStream().then(
      () => {
        this.streamReady = true;
      },
      (err: unknown) => {
        this.making = undefined;
        throw err;
      },
    ));
  }

  private async ensureStream(): Promise<void> {
    const jsm = this.link.jsm!;
    try {
      await jsm.streams.info(this.stream);
      return;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    try {
      await jsm.streams.add({
        name: this.stream,
        subjects: [`${this.subjects}.>`],
        retention: RetentionPolicy.Limits,
        storage: StorageType.File,
        discard: DiscardPolicy.Old,
        num_replicas: this.link.replicas, // set by the retained room's step, which runs first
        allow_direct: true,
      });
      this.link.log?.info({ stream: this.stream, replicas: this.link.replicas }, 'bus: session stream created');
    } catch (err) {
      if (!/already in use/i.test((err as Error).message)) throw err;
    }
  }

  private subject(key: string): string {
    return `${this.subjects}.${Buffer.from(key).toString('hex') || '_'}`;
  }

  private claimSubject(key: string): string {
    return `${this.claims}.${Buffer.from(key).toString('hex') || '_'}`;
  }

  append(key: string, record: Uint8Array): Promise<number> {
    const link = this.link;
    const nc = link.nc;
    if (!nc || nc.isClosed() || !link.jsm) return Promise.reject(new Error('bus: JetStream is not available'));
    if (this.ackSub === undefined || this.ackConnection !== nc) {
      this.ackConnection = nc;
      this.ackSub = nc.subscribe(`${this.ackInbox}.*`, { callback: this.onPubAck });
    }
    return new Promise<number>((resolve, reject) => {
      const id = ++this.requestSeq;
      this.inflight.set(id, { resolve, reject, deadlineMs: Date.now() + link.o.requestTimeoutMs });
      this.out.push({ subject: this.subject(key), data: record, reply: `${this.ackInbox}.${id}` });
      if (this.out.length === 1) {
        if (this.streamReady) setImmediate(this.sendOut);
        else this.ensure().then(this.sendOut, this.failOut); // what is appended meanwhile waits in `out`, in order
      }
      if (this.sweeper === undefined) {
        this.sweeper = setInterval(this.sweep, 250);
        this.sweeper.unref();
      }
    });
  }

  private readonly sendOut = (): void => {
    const out = this.out;
    this.out = [];
    const nc = this.link.nc;
    for (const o of out) {
      try {
        if (!nc || nc.isClosed()) throw new Error('connection closed');
        nc.publish(o.subject, o.data, { reply: o.reply });
      } catch (err) {
        this.settle(Number(o.reply.slice(this.ackInbox.length + 1)), new Error(`bus: session write failed: ${(err as Error).message}`), 0);
      }
    }
  };

  private readonly failOut = (err: unknown): void => {
    const out = this.out;
    this.out = [];
    for (const o of out) this.settle(Number(o.reply.slice(this.ackInbox.length + 1)), new Error(`bus: session stream unavailable: ${(err as Error).message}`), 0);
  };

  /** A PubAck (`{stream, seq}` or `{error}`), or a status such as "no responders", for request `<inbox>.<n>`. */
  private readonly onPubAck = (err: NatsError | null, msg: Msg): void => {
    if (err) return;
    const id = Number(msg.subject.slice(this.ackInbox.length + 1));
    const code = msg.headers?.code ?? 0;
    if (code >= 400 || msg.data.length === 0) return this.settle(id, new Error(`bus: session write: JetStream ${code || 'empty'} ${msg.headers?.description ?? ''}`), 0);
    let ack: { seq?: number; error?: { description?: string } };
    try {
      ack = JSON.parse(new TextDecoder().decode(msg.data)) as typeof ack;
    } catch (e) {
      return this.settle(id, e as Error, 0);
    }
    if (ack.error || typeof ack.seq !== 'number') return this.settle(id, new Error(`bus: session write: ${ack.error?.description ?? 'no sequence in the PubAck'}`), 0);
    this.settle(id, undefined, ack.seq);
  };

  private settle(id: number, err: Error | undefined, seq: number): void {
    const entry = this.inflight.get(id);
    if (entry === undefined) return;
    this.inflight.delete(id);
    if (err) entry.reject(err);
    else entry.resolve(seq);
  }

  private readonly sweep = (): void => {
    const now = Date.now();
    for (const [id, entry] of this.inflight) if (entry.deadlineMs <= now) this.settle(id, new Error('bus: session write timed out'), 0);
    if (this.inflight.size === 0 && this.sweeper !== undefined) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
    }
  };

  async read(key: string): Promise<Uint8Array[]> {
    const { jsm, js } = this.link;
    if (!jsm || !js) throw new Error('bus: JetStream is not available');
    const subject = this.subject(key);
    let last: number;
    try {
      last = (await jsm.streams.getMessage(this.stream, { last_by_subj: subject })).seq;
    } catch (err) {
      if (isNotFound(err) || /no message found/i.test((err as Error).message)) return [];
      throw err;
    }
    const consumer = await js.consumers.get(this.stream, { filterSubjects: subject });
    const out: Uint8Array[] = [];
    const messages = await consumer.consume();
    const timer = setTimeout(() => void messages.close(), this.link.o.requestTimeoutMs);
    try {
      for await (const m of messages) {
        out.push(m.data);
        if (m.seq >= last) break;
      }
    } finally {
      clearTimeout(timer);
      await messages.close();
    }
    if (out.length === 0) throw new Error('bus: reading a session timed out');
    return out;
  }

  async truncate(key: string, position: number): Promise<void> {
    await this.link.jsm!.streams.purge(this.stream, { filter: this.subject(key), seq: position });
  }

  async claim(key: string): Promise<void> {
    const nc = this.link.requireConnection();
    try {
      await nc.request(this.claimSubject(key), undefined, { timeout: this.link.o.requestTimeoutMs });
    } catch (err) {
      if ((err as { code?: string }).code === '503') return; // no responders: nobody holds it
      throw err;
    }
  }

  hold(key: string, release: () => Promise<void>): void {
    const nc = this.link.nc;
    if (!nc || nc.isClosed() || this.held.has(key)) return;
    const sub = nc.subscribe(this.claimSubject(key), {
      callback: (_err, m) => {
        release().then(
          () => m.respond(),
          (err: unknown) => {
            this.link.log?.warn({ err: (err as Error).message }, 'bus: releasing a claimed session failed');
            m.respond();
          },
        );
      },
    });
    this.held.set(key, sub);
  }

  unhold(key: string): void {
    const sub = this.held.get(key);
    if (!sub) return;
    this.held.delete(key);
    sub.unsubscribe();
  }

  close(): void {
    for (const sub of this.held.values()) sub.unsubscribe();
    this.held.clear();
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.sweeper = undefined;
  }
}
