/**
 * Property test of the MQTT session store (protocol/mqtt/persist.ts): random sequences of
 * session changes — sessions created and ended, subscriptions, deliveries queued, sent, moved to
 * PUBREL, completed and dropped, incoming QoS 2 ids held and released — written with compactions
 * running all the time (a tiny threshold), then reopened: the loaded sessions equal the model.
 * This is what replay after any restart relies on: every record is last-write-wins per key, and a
 * snapshot taken while writes continue never loses or resurrects anything.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import fc from 'fast-check';
import { createMessage, type Message } from '@topicast/broker';
import type * as PersistModule from '../../../../../broker/src/protocol/mqtt/persist.js';
import type { Delivery, InflightEntry, MqttSession } from '../../../../../broker/src/protocol/mqtt/session.js';

const dist = new URL('../../../../../../broker/dist/', import.meta.url);
const persist = (await import(new URL('protocol/mqtt/persist.js', dist).href)) as typeof PersistModule;

const work = mkdtempSync(join(tmpdir(), 'topicast-session-prop-'));
after(() => rmSync(work, { recursive: true, force: true }));
let dirs = 0;

/** The part of an MqttSession the store reads, kept by the test as the model. */
class FakeSession {
  readonly subscriptions = new Map<string, { filter: string; options: { qos: 0 | 1 | 2; retainHandling: 0 } }>();
  readonly sharedSubscriptions = new Map();
  readonly awaitingRelease = new Set<number>();
  readonly inflight = new Map<number, InflightEntry>();
  readonly queue: Delivery[] = [];
  readonly version = 4;
  readonly expirySec = 3600;
  readonly link = undefined;
  readonly disconnectedAtMs = 1_000;
  ended = false;
  nextSeq = 1;
  constructor(readonly clientId: string, readonly store: PersistModule.MqttSessionStore) {}
  forEachQueued(fn: (d: Delivery) => void): void {
    for (const d of this.queue) fn(d);
  }
  durableWill(): undefined {
    return undefined;
  }
  get asSession(): MqttSession {
    return this as unknown as MqttSession;
  }
}

type Op =
  | { k: 'open'; s: number }
  | { k: 'end'; s: number }
  | { k: 'subscribe'; s: number; f: number }
  | { k: 'enqueue'; s: number; m: number }
  | { k: 'send'; s: number }
  | { k: 'pubrec'; s: number }
  | { k: 'complete'; s: number }
  | { k: 'drop'; s: number }
  | { k: 'hold'; s: number; id: number }
  | { k: 'release'; s: number; id: number }
  | { k: 'tick' };

const s = fc.integer({ min: 0, max: 3 });
const op: fc.Arbitrary<Op> = fc.oneof(
  s.map((x) => ({ k: 'open' as const, s: x })),
  s.map((x) => ({ k: 'end' as const, s: x })),
  fc.record({ k: fc.constant('subscribe' as const), s, f: fc.integer({ min: 0, max: 3 }) }),
  { arbitrary: fc.record({ k: fc.constant('enqueue' as const), s, m: fc.integer({ min: 0, max: 2 }) }), weight: 4 }, // few messages: the same one is often queued again
  { arbitrary: s.map((x) => ({ k: 'send' as const, s: x })), weight: 3 },
  s.map((x) => ({ k: 'pubrec' as const, s: x })),
  { arbitrary: s.map((x) => ({ k: 'complete' as const, s: x })), weight: 2 },
  s.map((x) => ({ k: 'drop' as const, s: x })),
  fc.record({ k: fc.constant('hold' as const), s, id: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ k: fc.constant('release' as const), s, id: fc.integer({ min: 1, max: 4 }) }),
  { arbitrary: fc.constant({ k: 'tick' as const }), weight: 2 },
);

const messages: Message[] = Array.from({ length: 6 }, (_, i) => createMessage(`t/${i}`, Buffer.from(`payload ${i} `.repeat(4)), false, undefined, 1));

function apply(store: PersistModule.MqttSessionStore, sessions: Map<string, FakeSession>, o: Exclude<Op, { k: 'tick' }>): void {
  const id = `c${o.s}`;
  let x = sessions.get(id);
  if (o.k === 'open') {
    if (x) return;
    x = new FakeSession(id, store);
    sessions.set(id, x);
    void store.saveAll(x.asSession);
    return;
  }
  if (!x) return;
  switch (o.k) {
    case 'end':
      x.ended = true;
      sessions.delete(id);
      store.end(id);
      return;
    case 'subscribe':
      x.subscriptions.set(`f/${o.f}`, { filter: `f/${o.f}`, options: { qos: 1, retainHandling: 0 } });
      void store.saveMeta(x.asSession);
      return;
    case 'enqueue': {
      const d: Delivery = { message: messages[o.m]!, qos: 1, retain: false, subscriptionIds: undefined, seq: x.nextSeq++ };
      x.queue.push(d);
      store.saveDelivery(x.asSession, d, 0, 'queued');
      return;
    }
    case 'send': {
      const d = x.queue.shift();
      if (!d) return;
      let packetId = 1;
      while (x.inflight.has(packetId)) packetId++;
      const entry: InflightEntry = { ...d, state: 'publish' };
      x.inflight.set(packetId, entry);
      store.saveDelivery(x.asSession, entry, packetId, 'publish');
      return;
    }
    case 'pubrec':
      for (const [packetId, entry] of x.inflight) {
        if (entry.state !== 'publish') continue;
        entry.state = 'pubrel';
        store.saveDelivery(x.asSession, entry, packetId, 'pubrel');
        return;
      }
      return;
    case 'complete': {
      const first = x.inflight.entries().next();
      if (first.done) return;
      x.inflight.delete(first.value[0]);
      store.dropDelivery(x.asSession, first.value[1]);
      return;
    }
    case 'drop': {
      const d = x.queue.shift();
      if (d) store.dropDelivery(x.asSession, d);
      return;
    }
    case 'hold':
      x.awaitingRelease.add(o.id);
      void store.saveIncoming(x.asSession, o.id, true);
      return;
    case 'release':
      if (x.awaitingRelease.delete(o.id)) void store.saveIncoming(x.asSession, o.id, false);
      return;
  }
}

/** What the model says the store must load. */
function expected(sessions: Map<string, FakeSession>): unknown[] {
  return [...sessions.values()].map((x) => ({
    clientId: x.clientId,
    subscriptions: [...x.subscriptions.keys()].sort(),
    deliveries: [
      ...[...x.inflight].map(([packetId, e]) => ({ seq: e.seq, topic: e.message.topic, packetId, state: e.state })),
      ...x.queue.map((d) => ({ seq: d.seq, topic: d.message.topic, packetId: 0, state: 'publish' })),
    ].sort((a, b) => a.seq! - b.seq!),
    awaitingRelease: [...x.awaitingRelease].sort(),
  })).sort((a, b) => a.clientId.localeCompare(b.clientId));
}

function loaded(list: PersistModule.LoadedSession[]): unknown[] {
  return list.map((l) => ({
    clientId: l.clientId,
    subscriptions: l.subscriptions.map(([f]) => f).sort(),
    deliveries: l.deliveries.map((d) => ({ seq: d.seq, topic: d.delivery.message.topic, packetId: d.packetId, state: d.state })),
    awaitingRelease: [...l.awaitingRelease].sort(),
  })).sort((a, b) => a.clientId.localeCompare(b.clientId));
}

test('session store: any sequence of changes, with compactions running, reopens to exactly the model', async () => {
  let compactions = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(op, { minLength: 40, maxLength: 160 }), fc.boolean(), async (ops, settle) => {
      const dir = join(work, `d${++dirs}`);
      const store = await persist.openSessionStore(dir, { compactMinBytes: 512 });
      const sessions = new Map<string, FakeSession>();
      store.takeLoaded({ [Symbol.iterator]: () => [...sessions.values()].map((x) => x.asSession)[Symbol.iterator]() });
      for (let i = 0; i < 4; i++) apply(store, sessions, { k: 'open', s: i }); // start with every session open: fewer no-ops
      for (const o of ops) {
        if (o.k === 'tick') await new Promise((r) => setTimeout(r, 2)); // lets batches and compaction steps (fsyncs) run in between
        else apply(store, sessions, o);
      }
      await store.synced();
      if (settle) await new Promise((r) => setTimeout(r, 30)); // else close() stops a running compaction
      compactions += store.stats.compactions;
      assert.equal(store.stats.writeErrors + store.stats.compactionErrors, 0);
      await store.close();
      const again = await persist.openSessionStore(dir, { compactMinBytes: 512 });
      try {
        assert.deepEqual(loaded(again.takeLoaded([])), expected(sessions));
        assert.equal(again.stats.lostOnLoad, 0);
      } finally {
        await again.close();
        rmSync(dir, { recursive: true, force: true });
      }
    }),
    {
      numRuns: 100,
      examples: [[[
        // Grow the log past the threshold, then: m0 queued and dropped, a compaction (its snapshot holds no
        // delivery of m0, so not m0's record), then m0 queued again: it must get its record written again.
        ...Array.from({ length: 8 }, (_, i): Op => ({ k: 'enqueue', s: 0, m: 1 + (i % 2) })),
        { k: 'enqueue', s: 1, m: 0 }, { k: 'drop', s: 1 },
        ...Array.from({ length: 12 }, (): Op => ({ k: 'tick' })),
        { k: 'enqueue', s: 1, m: 0 },
      ], true]],
    },
  );
  assert.ok(compactions > 0, 'compactions ran during the runs');
});
