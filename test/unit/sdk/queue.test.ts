import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OfflineQueue } from 'topicast';

test('drop-oldest (default) evicts the oldest and reports it', () => {
  const q = new OfflineQueue<number>({ maxMessages: 3 });
  assert.equal(q.overflow, 'drop-oldest');
  for (const n of [1, 2, 3]) assert.deepEqual(q.push(n), { kind: 'queued' });
  assert.deepEqual(q.push(4), { kind: 'queued-dropped', dropped: 1 });
  assert.deepEqual(q.drain(), [2, 3, 4]);
  assert.equal(q.length, 0);
});

test('drop-newest and error refuse the new item and keep the backlog', () => {
  for (const overflow of ['drop-newest', 'error'] as const) {
    const q = new OfflineQueue<number>({ maxMessages: 2, overflow });
    q.push(1);
    q.push(2);
    assert.deepEqual(q.push(3), { kind: 'refused' });
    assert.deepEqual(q.drain(), [1, 2]);
  }
});

test('maxMessages 0 refuses everything; shift keeps FIFO order across compaction', () => {
  assert.deepEqual(new OfflineQueue<number>({ maxMessages: 0 }).push(1), { kind: 'refused' });
  const q = new OfflineQueue<number>({ maxMessages: 5000 });
  for (let i = 0; i < 5000; i++) q.push(i);
  for (let i = 0; i < 3000; i++) assert.equal(q.shift(), i);
  assert.equal(q.length, 2000);
  for (let i = 5000; i < 8000; i++) q.push(i);
  const rest = q.drain();
  assert.equal(rest.length, 5000);
  assert.equal(rest[0], 3000);
  assert.equal(rest[4999], 7999);
  assert.equal(q.shift(), undefined);
});
