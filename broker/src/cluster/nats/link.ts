/**
 * The NATS bus's connection and health room (design note: cluster/nats.ts): one NATS connection
 * per node, the JetStream handles, and the bus state every other room reads.
 *
 * State: `down` while the connection is lost; `degraded` while connected but JetStream is not
 * usable (retained and will operations fail, set-up retried every `jetStreamRetryMs`); `up` once
 * every room's JetStream set-up step went through, then the pending subscriptions were confirmed
 * by one round trip, then every after-ready step (re-writing wills) succeeded. A room that meets an
 * unavailable JetStream later calls `markDegraded`, which schedules the same set-up again.
 *
 * `flush` is the round trip that proves the server processed what was sent: coalesced, one PING in
 * flight plus one shared by every caller that arrives meanwhile.
 */
import { connect, DebugEvents, Events, type JetStreamClient, type JetStreamManager, type NatsConnection } from 'nats';
import { BusUnavailableError, type BusEvents, type BusState } from '../../core/bus.js';
import { checkSpace } from '../subject.js';
import { connectionOptions, isJetStreamUnavailable, natsNames, resolveNatsOptions, type BusLog, type NatsBusCounters, type NatsBusOptions, type NatsNames, type ResolvedNatsOptions } from './options.js';

/** A room's part of the JetStream set-up; runs again after every reconnect and failed attempt. */
export type JetStreamStep = () => Promise<void>;

export class NatsLink {
  readonly nodeId: string;
  readonly o: ResolvedNatsOptions;
  readonly names: NatsNames;
  readonly log: BusLog | undefined;
  readonly counters: NatsBusCounters = {
    published: 0,
    received: 0,
    duplicates: 0,
    malformed: 0,
    retainedStored: 0,
    retainedFailed: 0,
    snapshotsFailed: 0,
    willsClaimed: 0,
    willClaimsLost: 0,
    willWritesFailed: 0,
    reconnects: 0,
    heartbeatsFailed: 0,
    interestSyncTimeouts: 0,
    historyStored: 0,
    historyRefused: 0,
    historyUnplaced: 0,
    historyRouted: 0,
    historyPurgesSeen: 0,
    historyResets: 0,
    historyConsumerRestarts: 0,
    sharedReceived: 0,
    sessionTakes: 0,
    sessionTakesLost: 0,
    sessionOrphansFound: 0,
  };
  /** This run: random, so a restarted node's sequence never looks like its past one. */
  readonly run = Math.floor(Math.random() * 2 ** 52) + 1;
  /** This run's name among owners (heartbeat key, will keys, interest-sync answers). */
  readonly owner: string;

  nc: NatsConnection | undefined;
  js: JetStreamClient | undefined;
  jsm: JetStreamManager | undefined;
  jetStreamReady = false;
  closing = false;
  /** Replicas of the retained stream, used for the buckets too (set by the retained room's step). */
  replicas = 1;
  private _state: BusState = 'down';
  private events: BusEvents | undefined;
  private readonly steps: JetStreamStep[] = [];
  private readonly afterReady: JetStreamStep[] = [];
  private readonly reconnectListeners: (() => void)[] = [];
  private jetStreamTimer: NodeJS.Timeout | undefined;
  private jetStreamSettingUp: Promise<void> | undefined;
  private flushing: Promise<void> | undefined;
  private flushNext: Promise<void> | undefined;

  constructor(options: NatsBusOptions) {
    if (!options.nodeId) throw new Error('bus: nodeId must not be empty');
    this.nodeId = options.nodeId;
    this.o = resolveNatsOptions(options);
    this.log = options.log;
    this.names = natsNames(checkSpace(this.o.prefix));
    this.owner = `${this.nodeId.replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64)}-${this.run.toString(36)}`;
  }

  get state(): BusState {
    return this._state;
  }

  /** Adds a room's set-up step (in order), and optionally one run once JetStream is ready, before `up`. */
  onJetStream(step: JetStreamStep, afterReady?: JetStreamStep): void {
    this.steps.push(step);
    if (afterReady) this.afterReady.push(afterReady);
  }

  /** Called after every reconnect, before JetStream is checked again. */
  onReconnect(listener: () => void): void {
    this.reconnectListeners.push(listener);
  }

  /** Connects; the bus is `degraded` until JetStream answered (tried for a while before resolving). */
  async connect(events: BusEvents): Promise<void> {
    this.events = events;
    const o = this.o;
    const nc = await connect({ ...connectionOptions(o, `topicast ${this.nodeId}`), noEcho: true }).catch((err: Error) => {
      throw new Error(`bus: cannot reach NATS at ${o.servers.join(',')}: ${err.message}`);
    });
    this.nc = nc;
    void this.watchStatus(nc);
    void nc.closed().then((err) => {
      if (!this.closing) {
        this.log?.error({ err: err?.message }, 'bus: NATS connection closed for good');
        this.setState('down', `connection closed${err ? `: ${err.message}` : ''}`);
      }
    });
  }

  /**
   * Sets JetStream up, retrying for a while before resolving: a stream just created answers 503
   * until its replicas elect a leader, and a node starting with a fresh NATS cluster should come up `up`.
   */
  async settle(): Promise<void> {
    this.setState('degraded', 'connected, JetStream not checked yet');
    const deadline = Date.now() + 2 * this.o.requestTimeoutMs; // one request may time out on a busy cluster; give the retry its turn
    await this.setUpJetStream();
    while (!this.jetStreamReady && Date.now() < deadline && !this.closing) {
      await new Promise((r) => setTimeout(r, this.o.jetStreamRetryMs));
      await this.setUpJetStream();
    }
  }

  setState(state: BusState, reason: string): void {
    if (state === this._state) return;
    this._state = state;
    this.log?.info({ state, reason }, 'bus state');
    this.events?.state(state, reason);
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === Events.Disconnect) {
        this.jetStreamReady = false; // checked again after the reconnect: the server may be another one, or restarted
        this.setState('down', `disconnected from ${String(s.data)}`);
      } else if (s.type === Events.Reconnect) {
        this.counters.reconnects++;
        for (const listener of this.reconnectListeners) listener();
        this.setState('degraded', `reconnected to ${String(s.data)}, checking JetStream`);
        void this.setUpJetStream();
      } else if (s.type === Events.Error) {
        this.log?.warn({ err: String(s.data) }, 'bus: NATS async error');
      } else if (s.type === Events.LDM) {
        this.log?.info({ server: String(s.data) }, 'bus: NATS server entering lame duck mode');
      } else if (s.type === DebugEvents.StaleConnection) {
        this.log?.warn({}, 'bus: NATS connection stale (pings unanswered), reconnecting');
      }
    }
  }

  /** Logs a failed JetStream operation; when JetStream is unavailable, the bus is degraded until set-up succeeds again. */
  markDegraded(reason: string, err: unknown): void {
    this.log?.warn({ err: (err as Error)?.message }, `bus: ${reason}`);
    if (!isJetStreamUnavailable(err)) return;
    this.jetStreamReady = false;
    if (this._state === 'up') this.setState('degraded', `${reason}: ${(err as Error).message}`);
    this.scheduleJetStreamRetry();
  }

  private scheduleJetStreamRetry(): void {
    if (this.jetStreamTimer || this.closing) return;
    this.jetStreamTimer = setTimeout(() => {
      this.jetStreamTimer = undefined;
      void this.setUpJetStream();
    }, this.o.jetStreamRetryMs);
    this.jetStreamTimer.unref();
  }

  /** Runs every room's set-up step; on success the bus is up. Idempotent, one at a time. */
  setUpJetStream(): Promise<void> {
    this.jetStreamSettingUp ??= this.doSetUpJetStream().finally(() => (this.jetStreamSettingUp = undefined));
    return this.jetStreamSettingUp;
  }

  private async doSetUpJetStream(): Promise<void> {
    const nc = this.nc;
    if (!nc || nc.isClosed() || this.closing) return;
    try {
      this.jsm ??= await nc.jetstreamManager({ timeout: this.o.requestTimeoutMs });
      this.js ??= nc.jetstream({ timeout: this.o.requestTimeoutMs });
      for (const step of this.steps) await step();
      // Subscriptions made while down were sent by nats.js on reconnect: one round trip proves they are in place.
      await nc.flush();
      this.jetStreamReady = true;
      for (const step of this.afterReady) await step();
      // A step that met an unavailable JetStream marked the bus degraded and scheduled the retry:
      // reporting `up` now would be a lie the outage buffer trusts (a retained write refused as
      // unavailable under `up` waits for an `up` event that, already up, never comes).
      if (!this.jetStreamReady) return;
      if (nc.isClosed() || this.closing || this._state === 'down') return;
      this.setState('up', 'connected, JetStream ready');
    } catch (err) {
      this.jetStreamReady = false;
      this.log?.warn({ err: (err as Error).message }, 'bus: JetStream not ready (retained values and wills unavailable), retrying');
      if (this._state === 'up') this.setState('degraded', `JetStream: ${(err as Error).message}`);
      this.scheduleJetStreamRetry();
    }
  }

  /** NATS servers in the cluster the connection sits in (1 without a cluster). */
  clusterSize(): number {
    const info = this.nc?.info;
    if (!info?.cluster) return 1;
    return Math.max(1, new Set(info.connect_urls ?? []).size);
  }

  requireConnection(): NatsConnection {
    const nc = this.nc;
    if (!nc || nc.isClosed()) throw new BusUnavailableError('bus: not connected to NATS');
    return nc;
  }

  /** Whether the connection can carry a request now (not down, not closed). */
  get connected(): boolean {
    return this._state !== 'down' && this.nc !== undefined && !this.nc.isClosed();
  }

  /**
   * Resolves once the server has processed everything sent before the call (one PING/PONG).
   * Coalesced: at most one PING in flight, and one more shared by every caller that arrives
   * meanwhile (the PING in flight was sent before their lines, so it proves nothing for them).
   * Under load that is one round trip per batch of publishes, not one per publish.
   */
  flush(): Promise<void> {
    if (this.flushing === undefined) {
      this.flushing = this.nc!.flush().finally(() => (this.flushing = undefined));
      return this.flushing;
    }
    this.flushNext ??= this.flushing
      .catch(() => undefined)
      .then(() => {
        this.flushNext = undefined;
        return this.flush();
      });
    return this.flushNext;
  }

  /** Stops retrying JetStream (close or crash). */
  stopTimers(): void {
    this.closing = true;
    clearTimeout(this.jetStreamTimer);
  }

  /** Drops the connection as a crash would. */
  async closeAbruptly(): Promise<void> {
    this.stopTimers();
    this._state = 'down';
    await this.nc?.close();
  }

  /** Drains the connection (everything queued is sent first); the bus is down after. */
  async drain(): Promise<void> {
    const nc = this.nc;
    if (nc && !nc.isClosed()) {
      try {
        await nc.drain();
      } catch (err) {
        this.log?.warn({ err: (err as Error).message }, 'bus: draining the NATS connection failed');
        await nc.close();
      }
    }
    this._state = 'down';
  }
}
