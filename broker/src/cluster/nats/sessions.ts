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
 *   through the same batched publisher as the history room (acked-publish.ts): they go out together
 *   once per event-loop turn, PubAcks on one inbox.
 *
 * Cost: one JetStream publish round trip per record (queued delivery, in flight, done), one SUB per
 * held key, one request per claim (every MQTT CONNECT with a bus).
 */
import { DiscardPolicy, RetentionPolicy, StorageType, type Subscription } from 'nats';
import type { SessionLog } from '../../core/bus.js';
import { AckedPublisher } from './acked-publish.js';
import type { NatsLink } from './link.js';
import { isNotFound } from './options.js';

export class NatsSessions implements SessionLog {
  private readonly held = new Map<string, Subscription>();
  private readonly stream: string;
  private readonly subjects: string;
  private readonly claims: string;
  /** Appends waiting for their PubAck (acked-publish.ts). */
  private readonly publisher: AckedPublisher;
  /** Appends waiting for the stream to be made (`ensure`). */
  private waiting = 0;
  private making: Promise<void> | undefined;
  private streamReady = false;

  constructor(private readonly link: NatsLink) {
    const stem = link.o.prefix.replaceAll('.', '_').toUpperCase();
    this.stream = `${stem}_SESSIONS`;
    this.subjects = `${link.o.prefix}.s`;
    this.claims = `${link.o.prefix}.sc`;
    this.publisher = new AckedPublisher(link);
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
    const subject = this.subject(key);
    if (this.streamReady && this.waiting === 0) return this.publisher.publish(subject, record);
    // Appends made while the stream is being made wait for it, and go out in the order they came.
    this.waiting++;
    return this.ensure().then(
      () => {
        this.waiting--;
        return this.publisher.publish(subject, record);
      },
      (err: unknown) => {
        this.waiting--;
        throw new Error(`bus: session stream unavailable: ${(err as Error).message}`);
      },
    );
  }

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
    this.publisher.close();
  }
}
