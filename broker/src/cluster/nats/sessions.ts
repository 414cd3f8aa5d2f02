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
 * - Owner records (KV bucket `<prefix>-session-owners`): `o.<hex>` names the node (run) holding a
 *   persistent session; `take` sets it by compare-and-set on its revision (JetStream's expected
 *   last subject sequence, plus the revision as msg id, so two takes of one state cannot both be
 *   stored), after subscribing to the claim subject and flushing, so whoever reads the new record
 *   finds the subscription. `i.<owner>.<hex>` lists what each node took: when a node is gone, the
 *   survivor the will-claim rule designates lists its keys (`adoptFrom`) and hands them to the
 *   session store (`onOrphans`), which takes each whose record still names the gone node.
 * - Drain: `handOver` waits, after the node's heartbeat key went (wills.ts `clear`), until the
 *   survivors have claimed what it holds (bounded), so adopters take the sessions from a node
 *   still queueing for them.
 *
 * - Appends are not `js.publish` (an error object and a timer per request, one socket write each):
 *   through the same batched publisher as the history room (acked-publish.ts): they go out together
 *   once per event-loop turn, PubAcks on one inbox.
 *
 * Cost: one JetStream publish round trip per record (queued delivery, in flight, done), one SUB per
 * held key, one request per claim (every MQTT CONNECT with a bus).
 */
import { DiscardPolicy, RetentionPolicy, StorageType, type KV, type Subscription } from 'nats';
import type { SessionLog } from '../../core/bus.js';
import { AckedPublisher } from './acked-publish.js';
import type { NatsLink } from './link.js';
import { isNotFound, isWrongSequence } from './options.js';

type OrphanListener = (from: string, keys: string[], lastSeenMs: number) => Promise<string[]>;

/** A take in progress: claims from elsewhere are answered at once until it won (`owned`), then wait for `done`. */
interface Taking {
  owned: boolean;
  done: Promise<void>;
  finish(): void;
}

export class NatsSessions implements SessionLog {
  /** Claim subscriptions of the keys this node holds (or is taking). */
  private readonly held = new Map<string, Subscription>();
  private readonly releases = new Map<string, () => Promise<void>>();
  private readonly taking = new Map<string, Taking>();
  /** Keys this node took → the revision of the owner record naming it. */
  private readonly revisions = new Map<string, number>();
  private ownersKv: KV | undefined;
  private ownersMaking: Promise<KV> | undefined;
  private orphanListener: OrphanListener | undefined;
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

  get self(): string {
    return this.link.owner;
  }

  private owners(): Promise<KV> {
    if (this.ownersKv) return Promise.resolve(this.ownersKv);
    const link = this.link;
    return (this.ownersMaking ??= link.js!.views.kv(link.names.sessionOwnersBucket, { history: 1, replicas: link.replicas, timeout: link.o.requestTimeoutMs }).then(
      (kv) => (this.ownersKv = kv),
      (err: unknown) => {
        this.ownersMaking = undefined;
        throw err;
      },
    ));
  }

  private static hex(key: string): string {
    return Buffer.from(key).toString('hex') || '_';
  }

  async owner(key: string): Promise<{ owner: string | undefined; revision: number }> {
    if (!this.link.js) throw new Error('bus: JetStream is not available');
    const e = await (await this.owners()).get(`o.${NatsSessions.hex(key)}`);
    if (!e) return { owner: undefined, revision: 0 };
    return { owner: e.operation === 'PUT' ? e.string() : undefined, revision: e.revision };
  }

  async take(key: string, revision: number): Promise<boolean> {
    const link = this.link;
    const js = link.js;
    if (!js) throw new Error('bus: JetStream is not available');
    const kv = await this.owners();
    let finish!: () => void;
    const taking: Taking = { owned: false, done: new Promise<void>((r) => (finish = r)), finish: () => finish() };
    this.taking.get(key)?.finish();
    this.taking.set(key, taking);
    const hex = NatsSessions.hex(key);
    const abandon = (): void => {
      if (this.taking.get(key) === taking) this.taking.delete(key);
      taking.finish();
      if (!this.releases.has(key)) this.dropClaims(key);
    };
    try {
      // Listening first: a claim made by whoever reads the record written below finds this node.
      this.listenClaims(key);
      await link.flush();
      const ack = await js.publish(`$KV.${link.names.sessionOwnersBucket}.o.${hex}`, new TextEncoder().encode(this.self), {
        // The expected revision decides; the msg id makes a second take of the same state a duplicate (never stored twice).
        expect: { lastSubjectSequence: revision },
        ...(revision > 0 ? { msgID: `take.${hex}.${revision}` } : {}),
        timeout: link.o.requestTimeoutMs,
      });
      if (ack.duplicate) {
        link.counters.sessionTakesLost++;
        abandon();
        return false;
      }
      taking.owned = true;
      this.revisions.set(key, ack.seq);
      link.counters.sessionTakes++;
      await kv.put(`i.${this.self}.${hex}`, new Uint8Array(0));
      return true;
    } catch (err) {
      abandon();
      if (isWrongSequence(err)) {
        link.counters.sessionTakesLost++;
        return false;
      }
      this.revisions.delete(key);
      throw err;
    }
  }

  disown(key: string, ended: boolean): void {
    const revision = this.revisions.get(key);
    if (revision === undefined) return;
    this.revisions.delete(key);
    const kv = this.ownersKv;
    const link = this.link;
    if (!kv || !link.jsm || !link.connected) return;
    const hex = NatsSessions.hex(key);
    this.purge(`i.${this.self}.${hex}`);
    // Another node may have taken it since: then the compare-and-set fails, as it should.
    if (ended) kv.delete(`o.${hex}`, { previousSeq: revision }).catch((err: unknown) => {
      if (!isWrongSequence(err)) link.log?.warn({ err: (err as Error).message }, 'bus: removing a session owner record failed');
    });
  }

  /** Removes a key with no delete marker left behind. */
  private purge(key: string): void {
    const bucket = this.link.names.sessionOwnersBucket;
    this.link.jsm!.streams.purge(`KV_${bucket}`, { filter: `$KV.${bucket}.${key}` }).catch((err: Error) => this.link.log?.warn({ err: err.message }, 'bus: purging a session owner list entry failed'));
  }

  onOrphans(listener: OrphanListener): void {
    this.orphanListener = listener;
  }

  /**
   * `owner` is gone and this node is designated for it (wills.ts): hands its listed keys to the
   * session store, then drops the entries the store settled. A listing that fails is tried again
   * (every `jetStreamRetryMs`, a few times); past that, the other survivors' later turn remains.
   */
  adoptFrom(owner: string, lastSeenMs: number, attempt = 1): void {
    this.listOrphans(owner, lastSeenMs).catch((err: unknown) => {
      this.link.log?.warn({ err: (err as Error).message, owner, attempt }, 'bus: listing the sessions of a gone node failed');
      if (attempt >= 5 || this.link.closing) return;
      setTimeout(() => this.adoptFrom(owner, lastSeenMs, attempt + 1), this.link.o.jetStreamRetryMs).unref();
    });
  }

  private async listOrphans(owner: string, lastSeenMs: number): Promise<void> {
    const listener = this.orphanListener;
    if (!listener || !this.link.js || this.link.closing) return;
    // Bound, not made: a cluster where no node ever took a persistent session has no bucket and nothing to adopt.
    let kv: KV;
    try {
      kv = this.ownersKv ?? (await this.link.js.views.kv(this.link.names.sessionOwnersBucket, { bindOnly: true, timeout: this.link.o.requestTimeoutMs }));
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    const hexes: string[] = [];
    try {
      for await (const k of await kv.keys(`i.${owner}.>`)) hexes.push(k.slice(owner.length + 3));
    } catch (err) {
      if (isNotFound(err)) return; // a binding does not look: the bucket is found missing here
      throw err;
    }
    if (hexes.length === 0) return;
    this.link.counters.sessionOrphansFound += hexes.length;
    this.link.log?.info({ owner, sessions: hexes.length }, 'bus: adopting the persistent sessions of a gone node');
    const keys = hexes.map((h) => (h === '_' ? '' : Buffer.from(h, 'hex').toString()));
    void listener(owner, keys, lastSeenMs).then(
      (settled) => {
        for (const key of settled) this.purge(`i.${owner}.${NatsSessions.hex(key)}`);
      },
      (err: unknown) => this.link.log?.warn({ err: (err as Error).message, owner }, 'bus: adopting sessions failed'),
    );
  }

  /**
   * This node was taken for dead (its heartbeat key expired: a partition, a long pause) and may
   * have had its sessions adopted meanwhile: each held key whose owner record names another node
   * now is released here (its connection, if any, closed as taken over), so the key has one holder.
   */
  async recheck(): Promise<void> {
    for (const key of [...this.revisions.keys()]) {
      try {
        const { owner } = await this.owner(key);
        if (owner === this.self || !this.revisions.has(key)) continue;
        this.link.log?.warn({ owner }, 'bus: a persistent session held here was adopted by another node while this one was taken for dead; letting it go');
        this.revisions.delete(key); // not ours: no owner record or list entry of ours to remove
        await this.releases.get(key)?.();
      } catch (err) {
        this.link.log?.warn({ err: (err as Error).message }, 'bus: checking the owner of a held session failed');
      }
    }
  }

  /**
   * Drain: this node's heartbeat key is gone, so a survivor adopts what it holds, claiming each
   * key here. Resolves once nothing is held any more, or after `timeoutMs` (what is left is
   * adopted after the node has left, the same way).
   */
  async handOver(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    if (this.revisions.size > 0) this.link.log?.info({ sessions: this.revisions.size }, 'bus: waiting for survivors to adopt the persistent sessions held here');
    while (this.revisions.size > 0 && Date.now() < deadline && this.link.connected) await new Promise((r) => setTimeout(r, 20));
  }

  private listenClaims(key: string): void {
    const nc = this.link.nc;
    if (!nc || nc.isClosed() || this.held.has(key)) return;
    const sub = nc.subscribe(this.claimSubject(key), {
      callback: (_err, m) => {
        this.onClaim(key).then(
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

  /** Another node claims `key`: a take in progress here answers at once until it won, then after it settled; a held key is released. */
  private async onClaim(key: string): Promise<void> {
    const taking = this.taking.get(key);
    if (taking) {
      if (!taking.owned) return;
      await taking.done;
    }
    await this.releases.get(key)?.();
  }

  private dropClaims(key: string): void {
    const sub = this.held.get(key);
    if (!sub) return;
    this.held.delete(key);
    sub.unsubscribe();
  }

  hold(key: string, release: () => Promise<void>): void {
    this.releases.set(key, release);
    this.listenClaims(key);
    const taking = this.taking.get(key);
    this.taking.delete(key);
    taking?.finish();
  }

  unhold(key: string): void {
    this.releases.delete(key);
    this.dropClaims(key);
    const taking = this.taking.get(key);
    this.taking.delete(key);
    taking?.finish();
  }

  close(): void {
    for (const sub of this.held.values()) sub.unsubscribe();
    this.held.clear();
    this.releases.clear();
    for (const t of this.taking.values()) t.finish();
    this.taking.clear();
    this.publisher.close();
  }
}
