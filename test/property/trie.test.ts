/**
 * Property tests (STYLE.md #12): the trie and the retained store agree with a
 * reference matcher written straight from MQTT 3.1.1 §4.7; removing every
 * subscription leaves an empty trie.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { createMessage, MemoryRetainedStore, SubscriptionTrie } from '@topicast/broker';
import { topicMatches } from 'topicast/protocol';
import { referenceMatches } from '../helpers/mqtt-reference.js';

/** Reference: §4.7.1–4.7.2, level by level, nothing clever. */
const reference = referenceMatches;

const level = fc.constantFrom('a', 'b', 'c', '', '$x', 'é');
const topic = fc.array(level, { minLength: 1, maxLength: 5 }).map((ls) => ls.join('/')).filter((t) => t.length > 0);
const filter = fc
  .tuple(fc.array(fc.oneof(level, fc.constant('+')), { minLength: 1, maxLength: 5 }), fc.boolean())
  .map(([ls, hash]) => (hash ? [...ls, '#'] : ls).join('/'))
  .chain((f) => fc.constantFrom(f, '#'))
  .filter((f) => f.length > 0);

test('topicMatches agrees with the reference', () => {
  fc.assert(fc.property(filter, topic, (f, t) => topicMatches(f, t) === reference(f, t)), { numRuns: 20000 });
});

test('trie.match returns exactly the filters the reference matches', () => {
  fc.assert(
    fc.property(fc.uniqueArray(filter, { maxLength: 30 }), fc.array(topic, { maxLength: 20 }), (filters, topics) => {
      const trie = new SubscriptionTrie<string, string>();
      filters.forEach((f) => trie.add(f, f, f));
      for (const t of topics) {
        const got: string[] = [];
        trie.match(t, (s) => got.push(s));
        assert.deepEqual(got.sort(), filters.filter((f) => reference(f, t)).sort(), `topic ${t}`);
      }
    }),
    { numRuns: 2000 },
  );
});

test('retained store match returns exactly the stored topics the reference matches', () => {
  fc.assert(
    fc.property(fc.uniqueArray(topic, { maxLength: 30 }), fc.array(filter, { maxLength: 10 }), (topics, filters) => {
      const store = new MemoryRetainedStore();
      for (const t of topics) store.set(createMessage(t, new Uint8Array([1]), true));
      for (const f of filters) assert.deepEqual(store.match(f).sort(), topics.filter((t) => reference(f, t)).sort(), `filter ${f}`);
    }),
    { numRuns: 2000 },
  );
});

test('adding then removing every subscription leaves an empty trie', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(filter, fc.integer({ min: 0, max: 5 })), { maxLength: 50 }), (pairs) => {
      const trie = new SubscriptionTrie<number, true>();
      for (const [f, s] of pairs) trie.add(f, s, true);
      for (const [f, s] of [...pairs].reverse()) trie.remove(f, s);
      assert.equal(trie.isEmpty(), true);
      assert.equal(trie.size, 0);
    }),
    { numRuns: 2000 },
  );
});
