/**
 * The NATS bus's retained room (design note: cluster/nats.ts): the retained stream
 * `<PREFIX>_RETAINED` over `<prefix>.r.>`, one message per subject (max_msgs_per_subject 1, so
 * storing replaces), and snapshots of it.
 *
 * A retained publish is first stored with a JetStream publish (an empty payload is stored as a
 * tombstone, then purged up to its own seq so deletes leave nothing behind); its PubAck's seq then
 * rides in the live message's envelope (live room). The stream orders every write to a subject,
 * so for one topic a larger seq is newer whichever node wrote it.
 *
 * Snapshot: per subject of the filter, an exact subject is one "last message for subject" request;
 * a wildcard subject is an ephemeral, memory, unacknowledged consumer with DeliverLastPerSubject
 * (2.9 takes one filter subject per consumer, hence two for `a/#`), pulled with no_wait until the
 * consumer reports nothing pending, then deleted. Every entry has its seq.
 */
import { AckPolicy, createInbox, DeliverPolicy, DiscardPolicy, nanos, RetentionPolicy, StorageType } from 'nats';
import { BusUnavailableError, type BusMessage, type RetainedEntry } from '../../core/bus.js';
import { decodeEnvelope, encodeEnvelope } from '../nats-envelope.js';
import { filterToSubjects, subjectToTopic, topicToSubject } from '../subject.js';
import type { NatsLink } from './link.js';
import { isNotFound, SNAPSHOT_BATCH } from './options.js';

export class NatsRetained {
  constructor(private readonly link: NatsLink) {
    link.onJetStream(() => this.ensureStream());
  }

  /** Creates the retained stream if missing; sets the replicas the buckets use too. */
  private async ensureStream(): Promise<void> {
    const link = this.link;
    const jsm = link.jsm!;
    const name = link.names.retainedStream;
    try {
      link.replicas = (await jsm.streams.info(name)).config.num_replicas;
      return;
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
    let replicas = link.o.replicas ?? Math.min(3, link.clusterSize());
    for (;;) {
      try {
        await jsm.streams.add({
          name,
          subjects: [`${link.names.retained}.>`],
          retention: RetentionPolicy.Limits,
          storage: StorageType.File,
          max_msgs_per_subject: 1, // a retained value is the last message of its subject
          discard: DiscardPolicy.Old,
          num_replicas: replicas,
          allow_direct: true,
        });
        link.log?.info({ stream: name, replicas }, 'bus: retained stream created');
        link.replicas = replicas;
        return;
      } catch (err) {
        // Another node created it meanwhile, with its own view of the cluster size: use theirs.
        if (/already in use/i.test((err as Error).message)) {
          link.replicas = (await jsm.streams.info(name)).config.num_replicas;
          return;
        }
        if (replicas > 1 && link.o.replicas === undefined && /insufficient resources|replicas/i.test((err as Error).message)) {
          link.log?.warn({ err: (err as Error).message, replicas }, 'bus: fewer JetStream servers than replicas, trying fewer');
          replicas--;
          continue;
        }
        throw err;
      }
    }
  }

  /** Stores a retained value (or deletes it); resolves with its stream seq. */
  readonly store = async (m: BusMessage): Promise<number> => {
    const link = this.link;
    if (!link.jetStreamReady || !link.js) {
      link.counters.retainedFailed++;
      throw new BusUnavailableError('bus: retained store (JetStream) unavailable');
    }
    const subject = topicToSubject(m.topic, link.names.retained);
    const data = encodeEnvelope({ retain: true, qos: m.qos, origin: link.nodeId, run: link.run, nodeSeq: 0, streamSeq: 0, properties: m.properties, payload: m.payload });
    let seq: number;
    try {
      seq = (await link.js.publish(subject, data, { timeout: link.o.requestTimeoutMs })).seq;
    } catch (err) {
      link.counters.retainedFailed++;
      link.markDegraded('retained store failed', err);
      throw new BusUnavailableError(`bus: retained store failed: ${(err as Error).message}`);
    }
    link.counters.retainedStored++;
    if (m.payload.length === 0) {
      // The tombstone did its job (it replaced the value, and its seq orders the delete); purge it
      // and nothing newer (seq is exclusive), so deleted topics leave nothing in the stream.
      link.jsm!.streams.purge(link.names.retainedStream, { filter: subject, seq: seq + 1 }).catch((err: Error) => link.log?.warn({ err: err.message, topic: m.topic.slice(0, 128) }, 'bus: purging a retained tombstone failed (it stays as an empty value)'));
    }
    return seq;
  };

  async snapshot(filter: string): Promise<RetainedEntry[]> {
    const link = this.link;
    if (!link.jetStreamReady || !link.jsm) throw new BusUnavailableError('bus: retained store (JetStream) unavailable');
    const subjects = filterToSubjects(filter, link.names.retained);
    try {
      const parts = await Promise.all(subjects.map((s) => (s.endsWith('.>') || s.split('.').includes('*') ? this.snapshotWildcard(s) : this.snapshotExact(s))));
      return parts.flat();
    } catch (err) {
      link.counters.snapshotsFailed++;
      link.markDegraded('retained snapshot failed', err);
      throw err instanceof BusUnavailableError ? err : new BusUnavailableError(`bus: retained snapshot failed: ${(err as Error).message}`);
    }
  }

  private entry(subject: string, seq: number, data: Uint8Array): RetainedEntry | undefined {
    let env;
    let topic;
    try {
      env = decodeEnvelope(data);
      topic = subjectToTopic(subject, this.link.names.retained);
    } catch (err) {
      this.link.counters.malformed++;
      this.link.log?.warn({ subject: subject.slice(0, 128), err: (err as Error).message }, 'bus: malformed retained value skipped');
      return undefined;
    }
    if (env.payload.length === 0) return undefined; // a tombstone not purged yet
    return { topic, payload: env.payload, properties: env.properties, seq };
  }

  private async snapshotExact(subject: string): Promise<RetainedEntry[]> {
    try {
      const m = await this.link.jsm!.streams.getMessage(this.link.names.retainedStream, { last_by_subj: subject });
      const e = this.entry(m.subject, m.seq, m.data);
      return e ? [e] : [];
    } catch (err) {
      if (isNotFound(err)) return [];
      throw err;
    }
  }

  private async snapshotWildcard(subject: string): Promise<RetainedEntry[]> {
    const link = this.link;
    const jsm = link.jsm!;
    const stream = link.names.retainedStream;
    const nc = link.requireConnection();
    const ci = await jsm.consumers.add(stream, {
      filter_subject: subject,
      deliver_policy: DeliverPolicy.LastPerSubject,
      ack_policy: AckPolicy.None,
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(Math.max(10_000, link.o.requestTimeoutMs * 2)), // cleans up if our delete is lost
    });
    const out: RetainedEntry[] = [];
    try {
      if (ci.num_pending === 0) return out;
      await new Promise<void>((resolve, reject) => {
        const inbox = createInbox();
        let inBatch = 0;
        const next = (): void => {
          inBatch = 0;
          nc.publish(`$JS.API.CONSUMER.MSG.NEXT.${stream}.${ci.name}`, JSON.stringify({ batch: SNAPSHOT_BATCH, no_wait: true }), { reply: inbox });
        };
        const finish = (err?: Error): void => {
          clearTimeout(timer);
          sub.unsubscribe();
          if (err) reject(err);
          else resolve();
        };
        const timer = setTimeout(() => finish(new Error(`snapshot of ${subject} timed out`)), link.o.requestTimeoutMs);
        const sub = nc.subscribe(inbox, {
          callback: (err, msg) => {
            if (err) return finish(err);
            const code = msg.headers?.code ?? 0;
            if (code === 404 || code === 408) return finish(); // nothing more to deliver
            if (code >= 400) return finish(new Error(`snapshot of ${subject}: ${code} ${msg.headers?.description ?? ''}`));
            if (!msg.reply?.startsWith('$JS.ACK.')) return; // a status without data (e.g. heartbeat)
            // $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ms>.<pending> (v1), or with domain and account hash (v2).
            const t = msg.reply.split('.');
            const base = t.length >= 12 ? 4 : 2;
            const seq = Number(t[base + 3]);
            const pending = Number(t[base + 6]);
            const e = this.entry(msg.subject, seq, msg.data);
            if (e) out.push(e);
            if (pending === 0) return finish();
            if (++inBatch === SNAPSHOT_BATCH) next();
          },
        });
        next();
      });
      return out;
    } finally {
      jsm.consumers.delete(stream, ci.name).catch((err: Error) => {
        if (!isNotFound(err)) link.log?.warn({ err: err.message }, 'bus: deleting a snapshot consumer failed (it expires by itself)');
      });
    }
  }
}
