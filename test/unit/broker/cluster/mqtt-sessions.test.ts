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
  claim(): Promise<void> {
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
