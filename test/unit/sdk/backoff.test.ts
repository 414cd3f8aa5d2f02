import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay, DEFAULT_MAX_DELAY_MS, DEFAULT_MIN_DELAY_MS } from 'topicast';

test('full jitter: delay is random * min(max, min * 2^attempt)', () => {
  const opts = { minDelayMs: 100, maxDelayMs: 1000 };
  assert.equal(backoffDelay(0, opts, () => 0.5), 50);
  assert.equal(backoffDelay(1, opts, () => 0.5), 100);
  assert.equal(backoffDelay(2, opts, () => 0.5), 200);
  assert.equal(backoffDelay(3, opts, () => 0.5), 400);
  assert.equal(backoffDelay(4, opts, () => 0.5), 500); // capped at max 1000
  assert.equal(backoffDelay(10, opts, () => 0.999), 999);
  assert.equal(backoffDelay(3, opts, () => 0), 0); // full jitter reaches zero
});

test('delays stay within [0, ceiling] for random draws and huge attempt numbers', () => {
  for (let attempt = 0; attempt < 2000; attempt += 7) {
    const d = backoffDelay(attempt, { minDelayMs: 10, maxDelayMs: 5000 });
    assert.ok(d >= 0 && d <= Math.min(5000, 10 * 2 ** attempt), `attempt ${attempt}: ${d}`);
    assert.ok(Number.isFinite(d));
  }
});

test('defaults and a max below min', () => {
  assert.equal(backoffDelay(0, {}, () => 0.999999), Math.floor(0.999999 * DEFAULT_MIN_DELAY_MS));
  assert.equal(backoffDelay(50, {}, () => 0.5), DEFAULT_MAX_DELAY_MS / 2);
  assert.equal(backoffDelay(5, { minDelayMs: 200, maxDelayMs: 50 }, () => 0.5), 100); // max is raised to min
});

test('spread: many clients do not retry in lockstep', () => {
  const delays = new Set<number>();
  for (let i = 0; i < 200; i++) delays.add(backoffDelay(5, { minDelayMs: 100, maxDelayMs: 10_000 }));
  assert.ok(delays.size > 150, `only ${delays.size} distinct delays`);
});
