import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SubscriptionTrie } from '@topicast/broker';

function matches(trie: SubscriptionTrie<string, string>, topic: string): string[] {
  const out: string[] = [];
  trie.match(topic, (s, v) => out.push(`${s}:${v}`));
  return out.sort();
}

test('exact, +, # and the $ rule', () => {
  const t = new SubscriptionTrie<string, string>();
  t.add('a/b', 's1', 'a/b');
  t.add('a/+', 's1', 'a/+');
  t.add('a/#', 's2', 'a/#');
  t.add('#', 's3', '#');
  t.add('+/b', 's4', '+/b');
  t.add('$SYS/#', 's5', '$SYS/#');
  assert.deepEqual(matches(t, 'a/b'), ['s1:a/+', 's1:a/b', 's2:a/#', 's3:#', 's4:+/b']);
  assert.deepEqual(matches(t, 'a'), ['s2:a/#', 's3:#'], "'a/#' matches 'a'");
  assert.deepEqual(matches(t, 'a/b/c'), ['s2:a/#', 's3:#']);
  assert.deepEqual(matches(t, '$SYS/broker'), ['s5:$SYS/#'], 'leading wildcards do not match $ topics');
  assert.deepEqual(matches(t, 'x'), ['s3:#']);
});

test('add replaces, remove prunes to an empty trie', () => {
  const t = new SubscriptionTrie<string, number>();
  assert.equal(t.add('a/+/c', 's', 1), true);
  assert.equal(t.add('a/+/c', 's', 2), false);
  assert.equal(t.get('a/+/c', 's'), 2);
  assert.equal(t.size, 1);
  t.add('a/b', 's', 3);
  t.add('a/b', 'u', 4);
  assert.equal(t.remove('a/x', 's'), false);
  assert.equal(t.remove('a/b', 's'), true);
  assert.equal(t.remove('a/b', 's'), false);
  assert.equal(t.remove('a/b', 'u'), true);
  assert.equal(t.remove('a/+/c', 's'), true);
  assert.equal(t.isEmpty(), true);
});

test('matching visits only matching branches (cost grows with depth, not size)', () => {
  const t = new SubscriptionTrie<number, number>();
  for (let i = 0; i < 50_000; i++) t.add(`devices/${i}/temp`, i, i);
  t.add('devices/+/temp', -1, -1);
  let visited = 0;
  t.match('devices/123/temp', () => visited++);
  assert.equal(visited, 2);
});

test('many subscribers on one filter: removing from the middle keeps every other one, values follow their subscriber', () => {
  const t = new SubscriptionTrie<string, string>();
  const names = Array.from({ length: 6 }, (_, i) => `s${i}`);
  for (const s of names) t.add('fan/out', s, `v-${s}`);
  assert.equal(t.remove('fan/out', 's2'), true); // an array entry from the middle: the last one moves into its slot
  assert.equal(t.remove('fan/out', 's0'), true); // the inline first entry
  assert.equal(t.add('fan/out', 's5', 'v-s5-again'), false, 'replacing a moved entry finds it at its new slot');
  assert.deepEqual(matches(t, 'fan/out'), ['s1:v-s1', 's3:v-s3', 's4:v-s4', 's5:v-s5-again']);
  assert.equal(t.get('fan/out', 's5'), 'v-s5-again');
  assert.equal(t.add('fan/out', 's0', 'v-s0-back'), true, 'a removed subscriber comes back as new');
  assert.equal(t.size, 5);
  for (const s of ['s1', 's3', 's4', 's5', 's0']) assert.equal(t.remove('fan/out', s), true);
  assert.equal(t.remove('fan/out', 's5'), false);
  assert.equal(t.isEmpty(), true);
});

test('a subscriber removed while a publish visits the filter (closed from its delivery): every other subscriber visited once', () => {
  const t = new SubscriptionTrie<string, number>();
  const all = Array.from({ length: 10 }, (_, i) => `s${i}`);
  for (const [i, s] of all.entries()) t.add('fan/out', s, i);
  const visited: string[] = [];
  // s2's delivery closes its own connection, s5's closes s8's (not reached yet): both leave the filter mid-visit.
  t.match('fan/out', (s) => {
    visited.push(s);
    if (s === 's2') t.remove('fan/out', 's2');
    if (s === 's5') t.remove('fan/out', 's8');
  });
  assert.deepEqual(visited.sort(), all.filter((s) => s !== 's8').sort(), 'each remaining subscriber once; the one removed before its turn not at all');
  const after: string[] = [];
  t.match('fan/out', (s, v) => after.push(`${s}:${v}`));
  assert.deepEqual(after.sort(), all.filter((s) => s !== 's2' && s !== 's8').map((s) => `${s}:${s.slice(1)}`).sort(), 'the holes are closed, values follow their subscriber');
  t.add('fan/out', 's2', 2);
  assert.equal(t.get('fan/out', 's2'), 2);
  assert.equal(t.size, 9);
});
