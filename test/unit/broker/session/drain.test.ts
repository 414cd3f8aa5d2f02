/** The drain schedule (broker/src/session/drain.ts): stratified spread and the one-timer walk. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as Drain from '../../../../broker/src/session/drain.js';

const { spreadDelaysMs, runSpread } = (await import(new URL('../../../../../broker/dist/session/drain.js', import.meta.url).href)) as typeof Drain;

test('spreadDelaysMs: one delay per slot of the window, ascending, inside [0, window)', () => {
  for (const [count, windowMs] of [[1, 1000], [7, 1000], [1000, 5000], [3, 2]] as const) {
    for (const r of [() => 0, () => 0.999999, Math.random]) {
      const d = spreadDelaysMs(count, windowMs, r);
      assert.equal(d.length, count);
      const slot = windowMs / count;
      d.forEach((ms, i) => {
        assert.ok(Number.isInteger(ms) && ms >= 0 && ms < windowMs, `${ms} in [0, ${windowMs})`);
        assert.ok(ms >= Math.floor(i * slot) && ms <= Math.floor((i + 1) * slot), `delay ${i} = ${ms} in its slot of ${slot} ms`);
        if (i > 0) assert.ok(ms >= d[i - 1]!, 'ascending');
      });
    }
  }
  assert.deepEqual(spreadDelaysMs(0, 1000), []);
});

test('spreadDelaysMs: a quarter of the window holds a quarter of the connections (no clumping)', () => {
  const d = spreadDelaysMs(1000, 4000);
  for (let q = 0; q < 4; q++) assert.equal(d.filter((ms) => ms >= q * 1000 && ms < (q + 1) * 1000).length, 250);
});

test('runSpread acts on each item once, in order, none before its delay; cancel stops the rest (fake clock)', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  const start = Date.now();
  const seen: [string, number][] = [];
  runSpread(['a', 'b', 'c', 'd'], [0, 30, 30, 60], (x) => seen.push([x, Date.now() - start]));
  assert.deepEqual(seen, [['a', 0]], 'a zero delay acts at once');
  t.mock.timers.tick(29);
  assert.equal(seen.length, 1, 'nothing before its delay');
  t.mock.timers.tick(1);
  assert.deepEqual(seen, [['a', 0], ['b', 30], ['c', 30]], 'items due together act in one tick');
  t.mock.timers.tick(29);
  assert.equal(seen.length, 3);
  t.mock.timers.tick(1);
  assert.deepEqual(seen.map(([x]) => x), ['a', 'b', 'c', 'd']);

  const later: string[] = [];
  const cancel = runSpread(['x', 'y'], [20, 40], (x) => later.push(x));
  t.mock.timers.tick(20);
  cancel();
  t.mock.timers.tick(100);
  assert.deepEqual(later, ['x'], 'nothing after cancel');
});
