/**
 * The cluster's MQTT session store (broker/src/cluster/mqtt-sessions.ts) over an in-memory
 * SessionLog: what a claim reads back is what the session was (subscriptions, queued and in-flight
 * deliveries with their state, incoming QoS 2 ids), a log stays bounded by its snapshots, an
 * ended session reads as none, and a failed write is counted without holding anything back.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMessage } from '@topicast/broker';
import type * as SessionsModule from '../../../../broker/src/cluster/mqtt-sessions.js';
import type { SessionLog } from '../../../../broker/src/core/bus.js';

const dist = new URL('../../../../../broker/dist/cluster/', import.meta.url);
const { ClusterSessionStore } = (await import(new URL('mqtt-sessions.js', dist).href)) as typeof SessionsModule;
// The store's own signatures name what it takes (this folder's tests reach only into cluster/ and core/).
type Store = InstanceType<typeof ClusterSessionStore>;
type Logger = ConstructorParameters<typeof ClusterSessionStore>[1];
type PersistedSession = Parameters<Store['saveMeta']>[0];
type Delivery = Parameters<Store['saveDelivery']>[1];
type InflightEntry = PersistedSession['inflight'] extends ReadonlyMap<number, infer E> ? E : never;
type MqttSubscription = PersistedSession['subscriptions'] extends ReadonlyMap<string, infer S> ? S : never;
type MqttSubscriptionOptions = PersistedSession['sharedSubscriptions'] extends ReadonlyMap<string, infer O> ? O : never;

class MemoryLog implements SessionLog {
  readonly logs = new Map<string, { position: number; record: Uint8Array }[]>();
  private position = 0;
  failNext = 0;
  append(key: string, record: Uint8Array): Promise<number> {
    if (this.failNext > 0) {
      this.failNext--;
      return Promise.reject(new Error('engine unavailable'));
    }
    const position = ++this.position;
    let log = this.logs.get(key);
    if (!log) this.logs.set(key, (log = []));
    log.push({ position, record: Uint8Array.from(record) });
    return Promise.resolve(position);
  }
  read(key: string): Promise<Uint8Array[]> {
    return Promise.resolve((this.logs.get(key) ?? []).map((r) => r.record));
  }
  truncate(key: string, position: number): Promise<void> {
    this.logs.set(key, (this.logs.get(key) ?? []).filter((r) => r.position >= position));
    return Promise.resolve();
  }
  claim(_key: string): Promise<void> {
    return Promise.resolve();
  }
  hold(): void {}
  unhold(): void {}
}

class FakeSession implements PersistedSession {
  version = 5 as const;
  expirySec = 600;
  disconnectedAtMs = 1234;
  link = undefined;
  store: unknown = undefined;
  ended = false;
  subscriptions = new Map<string, MqttSubscription>();
  sharedSubscriptions = new Map<string, MqttSubscriptionOptions>();
  inflight = new Map<number, InflightEntry>();
  awaitingRelease = new Set<number>();
  queue: Delivery[] = [];
  constructor(readonly clientId: string) {}
  forEachQueued(fn: (d: Delivery) => void): void {
    for (const d of this.queue) fn(d);
  }
  durableWill(): undefined {
    return undefined;
  }
}

const errors: unknown[] = [];
const quiet = { error: (o: unknown) => errors.push(o), warn: () => undefined, info: () => undefined } as unknown as Logger;
const delivery = (seq: number, payload: string, qos: 1 | 2 = 1): Delivery => ({ message: createMessage('plant/t', Buffer.from(payload), false, undefined, qos), qos, retain: false, subscriptionIds: undefined, seq });
const flush = (): Promise<void> => new Promise((r) => setImmediate(r));

test('a claim reads back subscriptions, queued and in-flight deliveries with their state, and incoming QoS 2 ids', async () => {
  const log = new MemoryLog();
  const store = new ClusterSessionStore(log, quiet);
  const s = new FakeSession('dev');
  s.subscriptions.set('plant/#', { filter: 'plant/#', options: { qos: 2, noLocal: false, retainAsPublished: true, retainHandling: 0 } });
  await store.saveAll(s);
  const d1 = delivery(1, 'one', 2);
  const d2 = delivery(2, 'two');
  const d3 = delivery(3, 'three');
  store.saveDelivery(s, d1, 0, 'queued');
  store.saveDelivery(s, d2, 0, 'queued');
  store.saveDelivery(s, d3, 0, 'queued');
  store.saveDelivery(s, { ...d1, state: 'publish' } as InflightEntry, 7, 'publish');
  store.saveDelivery(s, { ...d1, state: 'pubrel' } as InflightEntry, 7, 'pubrel');
  store.saveDelivery(s, { ...d2, state: 'publish' } as InflightEntry, 8, 'publish');
  store.dropDelivery(s, d3);
  await store.saveIncoming(s, 42, true);
  await store.saveIncoming(s, 43, true);
  await store.saveIncoming(s, 43, false);
  await store.synced();
  const loaded = await store.claim('dev');
  assert.ok(loaded);
  assert.equal(loaded.expirySec, 600);
  assert.equal(loaded.disconnectedAtMs, 1234);
  assert.deepEqual(loaded.subscriptions, [['plant/#', { qos: 2, noLocal: false, retainAsPublished: true, retainHandling: 0, subscriptionId: undefined }]]);
  assert.deepEqual(loaded.deliveries.map((d) => [d.seq, d.delivery.message.payload.toString(), d.delivery.qos, d.packetId, d.state]), [
    [1, 'one', 2, 7, 'pubrel'],
    [2, 'two', 1, 8, 'publish'],
  ]);
  assert.deepEqual(loaded.awaitingRelease, [42]);
});

test('the log stays bounded: snapshots truncate what came before, and what they hold reads back', async () => {
  const log = new MemoryLog();
  const store = new ClusterSessionStore(log, quiet);
  const s = new FakeSession('busy');
  await store.saveAll(s);
  for (let seq = 1; seq <= 1000; seq++) {
    const d = delivery(seq, `m${seq}`);
    s.queue.push(d);
    store.saveDelivery(s, d, 0, 'queued');
    if (seq % 10 !== 0) {
      s.queue.splice(s.queue.indexOf(d), 1);
      store.dropDelivery(s, d);
    }
    if (seq % 100 === 0) await flush();
  }
  await store.synced();
  await flush();
  const records = log.logs.get('busy')!.length;
  assert.ok(records < 64 + 2 * 100 + 120, `log bounded (${records} records for 100 live deliveries)`);
  const loaded = await store.claim('busy');
  assert.deepEqual(loaded!.deliveries.map((d) => d.seq), Array.from({ length: 100 }, (_, i) => (i + 1) * 10));
});

test('an ended session reads as none and leaves one record; a new one after it starts clean', async () => {
  const log = new MemoryLog();
  const store = new ClusterSessionStore(log, quiet);
  const s = new FakeSession('gone');
  await store.saveAll(s);
  store.saveDelivery(s, delivery(1, 'x'), 0, 'queued');
  store.end('gone');
  await store.synced();
  await flush();
  assert.equal(await store.claim('gone'), undefined);
  assert.equal(log.logs.get('gone')!.length, 1);
  const again = new FakeSession('gone');
  await store.saveAll(again);
  const loaded = await store.claim('gone');
  assert.ok(loaded);
  assert.deepEqual(loaded.deliveries, []);
});

test('a write the engine refuses is counted and does not hold synced() back', async () => {
  const log = new MemoryLog();
  const store = new ClusterSessionStore(log, quiet);
  const s = new FakeSession('flaky');
  log.failNext = 1;
  await store.saveMeta(s);
  await store.synced();
  assert.equal(store.failed, 1);
  assert.equal(errors.length, 1, 'and logged');
  assert.equal(store.writes, 1);
});

/**
 * An in-memory log with owner records, as the NATS one keeps them: `take` is a compare-and-set on
 * the record's revision; `interfere` lets another node take the record right before this one's
 * next compare-and-set (the race of two simultaneous claims).
 */
class OwnedLog extends MemoryLog {
  readonly owners = new Map<string, { owner: string | undefined; revision: number }>();
  private revision = 0;
  claims: string[] = [];
  disowned: [string, boolean][] = [];
  interfere: string | undefined;
  constructor(readonly self: string) {
    super();
  }
  override claim(key: string): Promise<void> {
    this.claims.push(key);
    return Promise.resolve();
  }
  owner(key: string): Promise<{ owner: string | undefined; revision: number }> {
    return Promise.resolve(this.owners.get(key) ?? { owner: undefined, revision: 0 });
  }
  setOwner(key: string, owner: string | undefined): void {
    this.owners.set(key, { owner, revision: ++this.revision });
  }
  take(key: string, revision: number): Promise<boolean> {
    if (this.interfere !== undefined) {
      this.setOwner(key, this.interfere);
      this.interfere = undefined;
    }
    if ((this.owners.get(key)?.revision ?? 0) !== revision) return Promise.resolve(false);
    this.setOwner(key, this.self);
    return Promise.resolve(true);
  }
  disown(key: string, ended: boolean): void {
    this.disowned.push([key, ended]);
    if (ended && this.owners.get(key)?.owner === this.self) this.setOwner(key, undefined);
  }
}

test('a persistent claim records this node as the holder; one that loses the record to another node claims again, from it', async () => {
  const log = new OwnedLog('node-b');
  const store = new ClusterSessionStore(log, quiet);
  await store.saveAll(new FakeSession('dev'));
  log.setOwner('dev', 'node-a');
  log.interfere = 'node-c'; // C takes it between B's claim and B's compare-and-set
  const loaded = await store.claim('dev', true);
  assert.ok(loaded, 'the stored session');
  assert.deepEqual(log.claims, ['dev', 'dev'], 'claimed from A, then again from C');
  assert.equal(store.takesLost, 1);
  assert.equal(log.owners.get('dev')!.owner, 'node-b');
  // A session that ends with its connection records nothing.
  assert.equal(await store.claim('clean-dev', false), undefined);
  assert.equal(log.owners.has('clean-dev'), false);
});

test('adoption takes a gone node\'s session only while its record still names that node; an ended one loses its record', async () => {
  const log = new OwnedLog('node-b');
  const store = new ClusterSessionStore(log, quiet);
  await store.saveAll(new FakeSession('moved'));
  log.setOwner('moved', 'node-c'); // its device came back on C before the adoption
  assert.equal(await store.adopt('moved', 'node-a'), undefined);
  assert.deepEqual(log.claims, [], 'nothing claimed from C');
  assert.equal(log.owners.get('moved')!.owner, 'node-c');

  await store.saveAll(new FakeSession('orphan'));
  log.setOwner('orphan', 'node-a');
  const loaded = await store.adopt('orphan', 'node-a');
  assert.ok(loaded);
  assert.equal(log.owners.get('orphan')!.owner, 'node-b');
  assert.equal(store.adopted, 1);

  const s = new FakeSession('ended');
  await store.saveAll(s);
  store.end('ended');
  await store.synced();
  await flush();
  log.setOwner('ended', 'node-a');
  assert.equal(await store.adopt('ended', 'node-a'), undefined);
  assert.equal(log.owners.get('ended')!.owner, undefined, 'the record of an ended session goes');
  assert.equal(store.adopted, 1);
});

test('letting a client id go after its session ended removes its owner record; a release to another node does not', async () => {
  const log = new OwnedLog('node-b');
  const store = new ClusterSessionStore(log, quiet);
  store.hold('released', () => Promise.resolve());
  store.unhold('released');
  store.hold('ended', () => Promise.resolve());
  store.end('ended');
  store.unhold('ended');
  assert.deepEqual(log.disowned, [['released', false], ['ended', true]]);
});

test('a clean start that keeps nothing waits for no read: the stored session is ended after, and the next claim waits for that', async () => {
  class SlowLog extends MemoryLog {
    reads = 0;
    private gate: (() => void) | undefined;
    readonly opened = new Promise<void>((resolve) => (this.gate = resolve));
    open(): void {
      this.gate!();
    }
    override async read(key: string): Promise<Uint8Array[]> {
      this.reads++;
      await this.opened; // the engine answers reads only once opened (a JetStream leader election)
      return super.read(key);
    }
  }
  const log = new SlowLog();
  const store = new ClusterSessionStore(log, quiet);
  const s = new FakeSession('dev');
  await store.saveAll(s);
  store.saveDelivery(s, delivery(1, 'x'), 0, 'queued');
  await store.synced();
  const claimed = store.claim('dev', false, true);
  let answered = false;
  void claimed.then(() => (answered = true));
  await flush();
  assert.equal(answered, true, 'answered before the engine reads anything');
  assert.equal(await claimed, undefined);
  let synced = false;
  void store.synced().then(() => (synced = true));
  await flush();
  assert.equal(synced, false, 'the discard is still pending');
  const next = store.claim('dev', false, false); // e.g. the same device again with Clean Start 0
  log.open();
  await store.synced();
  await flush();
  assert.equal(log.logs.get('dev')!.length, 1, 'ended: only the end record is left');
  assert.equal(await next, undefined, 'the next claim reads it after the end: nothing');
});
