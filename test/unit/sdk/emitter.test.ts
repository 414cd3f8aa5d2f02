import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createEmitter } from 'topicast';

test('listeners run in order with their arguments; on() returns the removal', () => {
  const e = createEmitter<{ tick: (n: number, s: string) => void }>();
  const seen: string[] = [];
  const off1 = e.on('tick', (n, s) => seen.push(`a${n}${s}`));
  e.on('tick', (n, s) => seen.push(`b${n}${s}`));
  e.emit('tick', 1, 'x');
  off1();
  off1(); // idempotent
  e.emit('tick', 2, 'y');
  assert.deepEqual(seen, ['a1x', 'b1x', 'b2y']);
  assert.equal(e.count('tick'), 1);
});

test('a listener removed during an emit does not run; one added does not run until the next emit', () => {
  const e = createEmitter<{ ev: () => void }>();
  const seen: string[] = [];
  let offB = (): void => {};
  e.on('ev', () => {
    seen.push('a');
    offB();
    e.on('ev', () => seen.push('c'));
  });
  offB = e.on('ev', () => seen.push('b'));
  e.emit('ev');
  assert.deepEqual(seen, ['a']);
  e.emit('ev');
  assert.deepEqual(seen, ['a', 'a', 'c']);
});

test('emit without listeners is a no-op', () => {
  const e = createEmitter<{ ev: (x: number) => void }>();
  e.emit('ev', 1);
  assert.equal(e.count('ev'), 0);
});
