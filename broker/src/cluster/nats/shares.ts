/**
 * The NATS bus's shared-subscription room: an MQTT `$share/<share>/<filter>` group with members
 * on several nodes gets each message once in the whole cluster (cluster/DESIGN.md "Shared
 * subscriptions"), by a NATS queue group per (share, filter) over the filter's live subjects.
 *
 * NATS gives each message on a subject to one member of a queue group. The main connection is
 * `noEcho` (a node never hears its own publishes), which would keep a node's own messages from
 * its own members; so queue subscriptions live on a second connection of this node, with echo,
 * and the publishing node is a candidate like any other. The queue name is a hash of (share,
 * filter), so it stays a short token whatever the filter. A new group waits for the same interest
 * sync as `subscribe` (its SUB is flushed first, so the sync request follows it on every route).
 * Cost: one more connection per node once a group exists; per message, one extra delivery to the
 * node NATS picks, decoded there.
 */
import { createHash } from 'node:crypto';
import { connect, type Msg, type NatsConnection, type NatsError, type Subscription } from 'nats';
import type { BusEvents } from '../../core/bus.js';
import { decodeEnvelope } from '../nats-envelope.js';
import { filterToSubjects, subjectToTopic } from '../subject.js';
import type { NatsLink } from './link.js';
import { connectionOptions } from './options.js';

export class NatsShares {
  private nc: Promise<NatsConnection> | undefined;
  private readonly held = new Map<string, Subscription[]>();
  private events: BusEvents | undefined;
  private closed = false;
  /** Joining the groups that have no queue subscription yet again, after a failed connection. */
  private retry: NodeJS.Timeout | undefined;

  /** @param sync the interest room's sync (resolves once other nodes' servers hold what was sent) */
  constructor(
    private readonly link: NatsLink,
    private readonly sync: () => Promise<void>,
  ) {}

  start(events: BusEvents): void {
    this.events = events;
  }

  /**
   * The second connection, made on first use. It tries the configured servers and every server the
   * link's connection has learnt of (a configured server may be the one that is down). A failed
   * connect is forgotten: the groups waiting for it are joined again after `reconnectWaitMs`.
   */
  private connection(): Promise<NatsConnection> {
    if (this.nc) return this.nc;
    const options = connectionOptions(this.link.o, `topicast ${this.link.nodeId} shared subscriptions`);
    const learnt = (this.link.nc?.info?.connect_urls ?? []).map((hostPort) => `nats://${hostPort}`);
    const nc = connect({ ...options, servers: [...new Set([...this.link.o.servers, ...learnt])] });
    nc.catch((err: unknown) => {
      if (this.nc === nc) this.nc = undefined;
      if (!this.closed) this.link.log?.warn({ err: (err as Error).message }, 'bus: the shared subscriptions connection failed; trying again');
    });
    this.nc = nc;
    return nc;
  }

  async subscribe(share: string, filter: string): Promise<void> {
    const key = `${share}\u0000${filter}`;
    if (this.held.has(key) || this.closed) return;
    this.held.set(key, []);
    await this.join(key, share, filter);
  }

  /** Subscribes the queue group of a held key that has none yet; on a failed connection, tried again later. */
  private async join(key: string, share: string, filter: string): Promise<void> {
    let nc: NatsConnection;
    try {
      nc = await this.connection();
    } catch (err) {
      this.retryLater();
      throw err;
    }
    if (this.held.get(key)?.length !== 0 || this.closed) return; // left, joined, or closed meanwhile
    const queue = createHash('sha256').update(key).digest('base64url');
    const onShared = (err: NatsError | null, msg: Msg): void => this.onShared(err, msg, share, filter);
    this.held.set(key, filterToSubjects(filter, this.link.names.live).map((s) => nc.subscribe(s, { queue, callback: onShared })));
    await nc.flush();
    if (this.link.state !== 'down') await this.sync();
  }

  private retryLater(): void {
    if (this.retry !== undefined || this.closed) return;
    this.retry = setTimeout(() => {
      this.retry = undefined;
      for (const [key, subs] of this.held) {
        if (subs.length > 0) continue;
        const [share, filter] = key.split('\u0000') as [string, string];
        this.join(key, share, filter).catch(() => undefined); // logged by `connection`, retried by `join`
      }
    }, Math.max(this.link.o.reconnectWaitMs, 1000));
    this.retry.unref();
  }

  async unsubscribe(share: string, filter: string): Promise<void> {
    const key = `${share}\u0000${filter}`;
    const subs = this.held.get(key);
    if (subs === undefined) return;
    this.held.delete(key);
    for (const s of subs) s.unsubscribe();
  }

  private onShared(err: NatsError | null, msg: Msg, share: string, filter: string): void {
    const link = this.link;
    if (err) {
      link.log?.warn({ err: err.message }, 'bus: shared subscription error');
      return;
    }
    let env;
    let topic;
    try {
      env = decodeEnvelope(msg.data);
      topic = subjectToTopic(msg.subject, link.names.live);
    } catch (e) {
      link.counters.malformed++;
      link.log?.warn({ subject: msg.subject.slice(0, 128), err: (e as Error).message }, 'bus: malformed message for a shared subscription dropped');
      return;
    }
    link.counters.sharedReceived++;
    this.events?.shared?.({ topic, payload: env.payload, retain: env.retain, qos: env.qos, properties: env.properties, origin: env.origin, seq: 0 }, share, filter);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retry);
    this.held.clear();
    const nc = await this.nc?.catch(() => undefined);
    await nc?.close();
  }
}
