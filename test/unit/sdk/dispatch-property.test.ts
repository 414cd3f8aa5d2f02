/**
 * Property: local dispatch delivers each message exactly once to every open
 * subscription with at least one matching filter, and to no other — checked
 * against a reference matcher written straight from MQTT 3.1.1 §4.7, over random
 * filters, topics, overlapping subscriptions and unsubscribes between deliveries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { connect } from 'topicast';
import { Op } from 'topicast/protocol';
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
