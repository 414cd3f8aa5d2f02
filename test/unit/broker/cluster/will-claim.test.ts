/** The one rule every bus adapter uses to pick who publishes a dead node's wills (cluster/will-claim.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as WillClaimModule from '../../../../broker/src/cluster/will-claim.js';

const { willClaimer } = (await import(new URL('../../../../../broker/dist/cluster/will-claim.js', import.meta.url).href)) as typeof WillClaimModule;

test('every survivor designates the same live node, whatever order or duplicates it sees the live set in', () => {
  const live = ['node-c', 'node-a', 'node-b'];
  for (const dead of ['node-d', 'node-x-1', 'kx9-2f', '']) {
    const answers = new Set([willClaimer(dead, live), willClaimer(dead, [...live].reverse()), willClaimer(dead, [...live, ...live, dead])]);
    assert.equal(answers.size, 1, `one claimer for ${dead}`);
    assert.ok(live.includes([...answers][0]!), 'the claimer is a live node');
  }
});

test('the dead node is never its own claimer, and a lone survivor claims everything', () => {
  assert.equal(willClaimer('a', ['a', 'b']), 'b');
  assert.equal(willClaimer('z', ['a']), 'a');
  assert.throws(() => willClaimer('a', ['a']), /no live node/);
});

test('the work of many dead nodes spreads over the survivors', () => {
  const live = ['n1', 'n2', 'n3'];
  const counts = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const c = willClaimer(`dead-${i}`, live);
    counts.set(c, (counts.get(c) ?? 0) + 1);
  }
  assert.equal(counts.size, 3, 'every survivor claims some');
  for (const n of counts.values()) assert.ok(n >= 50, `no survivor gets almost nothing: ${[...counts.values()].join(', ')}`);
});
