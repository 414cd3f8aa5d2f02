/**
 * Property: local dispatch delivers each message exactly once to every open
 * subscription with at least one matching filter, and to no other — checked
 * against a reference matcher written straight from MQTT 3.1.1 §4.7, over random
 * filters, topics, overlapping subscriptions and unsubscribes between deliveries;
 * and, for resumed subscriptions, each history message once, in offset order, across
 * overlapping replays.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { connect } from 'topicast';
import { Flag, Op } from 'topicast/protocol';
import { FakeNet } from './fake-transport.js';

/** Reference: MQTT 3.1.1 §4.7.1–4.7.2, level by level. */
function reference(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  if (topic.startsWith('$') && (f[0] === '+' || f[0] === '#')) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length || (f[i] !== '+' && f[i] !== t[i])) return false;
  }
  return f.length === t.length;
}

const level = fc.constantFrom('a', 'b', 'c', '$x');
const topicArb = fc.array(level, { minLength: 1, maxLength: 3 }).map((l) => l.join('/'));
const filterArb = fc
  .tuple(fc.array(fc.constantFrom('a', 'b', '+', '$x'), { minLength: 1, maxLength: 3 }), fc.boolean())
  .map(([levels, hash]) => (hash ? [...levels.slice(0, -1), '#'] : levels).join('/'));

test('each open subscription with a matching filter gets each delivery exactly once', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.array(filterArb, { minLength: 1, maxLength: 2 }), { minLength: 1, maxLength: 6 }),
      fc.array(topicArb, { minLength: 1, maxLength: 12 }),
      fc.array(fc.nat(5), { maxLength: 3 }),
      async (subFilters, topics, toUnsubscribe) => {
        const net = new FakeNet();
        net.autoOpen = true;
        const client = await connect('ws://fake/ws', { transport: net.transport, codec: 'raw' });
        try {
          const counts = subFilters.map(() => 0);
          const subs = [];
          for (const [i, filters] of subFilters.entries()) subs.push(await client.subscribe(filters, () => counts[i]!++));
          const expected = subFilters.map(() => 0);
          const closed = new Set<number>();
          for (const [n, topic] of topics.entries()) {
            if (n === Math.floor(topics.length / 2)) {
              for (const i of toUnsubscribe) {
                if (i < subs.length) {
                  await subs[i]!.unsubscribe();
                  closed.add(i);
                }
              }
            }
            net.last.push({ op: Op.delivery, topic, payload: new Uint8Array([n]), flags: 0 });
            subFilters.forEach((filters, i) => {
              if (!closed.has(i) && filters.some((f) => reference(f, topic))) expected[i]!++;
            });
          }
          assert.deepEqual(counts, expected);
        } finally {
          await client.close();
        }
      },
    ),
    { numRuns: 200 },
  );
});

test('resumed subscriptions (PROTOCOL.md §4.6): each gets every matching message after its position exactly once, in offset order, however the replays overlap', async () => {
  const history = fc.array(topicArb, { minLength: 1, maxLength: 12 });
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.array(filterArb, { minLength: 1, maxLength: 2 }), fc.nat(12)), { minLength: 1, maxLength: 5 }),
      history,
      fc.array(topicArb, { maxLength: 6 }),
      async (subs, missed, live) => {
        const net = new FakeNet();
        const p = connect('ws://fake/ws', { transport: net.transport, codec: 'raw' });
        await Promise.resolve();
        net.last.accept();
        const client = await p;
        try {
          // The stream: offsets 1..n missed (replayable), then live ones.
          const stream = [...missed, ...live].map((topic, i) => ({ topic, offset: i + 1 }));
          const last = missed.length;
          const got: number[][] = subs.map(() => []);
          const pending = subs.map(([filters, start], i) => client.subscribe(filters, (_v, m) => got[i]!.push(m.offset!), { resume: { epoch: 'E', offset: Math.min(start, last) } }));
          for (const frame of net.last.framesOf(Op.subscribe)) {
            const from = frame.options.resume!.offset;
            const replay = stream.slice(0, last).filter((m) => m.offset > from && frame.filters.some((f) => reference(f, m.topic)));
            net.last.push({ op: Op.ack, id: frame.id, result: { retained: 0, replayed: replay.length, epoch: 'E', offset: last, recovered: true } });
            for (const m of replay) net.last.push({ op: Op.delivery, topic: m.topic, payload: new Uint8Array(), flags: Flag.replayed, offset: m.offset });
            net.last.push({ op: Op.snapshotEnd, id: frame.id });
          }
          await Promise.all(pending);
          for (const m of stream.slice(last)) net.last.push({ op: Op.delivery, topic: m.topic, payload: new Uint8Array(), flags: 0, offset: m.offset });
          const expected = subs.map(([filters, start]) => stream.filter((m) => m.offset > Math.min(start, last) && filters.some((f) => reference(f, m.topic))).map((m) => m.offset));
          assert.deepEqual(got, expected);
        } finally {
          await client.close();
        }
      },
    ),
    { numRuns: 200 },
  );
});
