/**
 * The RetainedStore contract (broker/src/core/retained.ts), run against every
 * implementation: call `retainedContract(name, factory)` from a test file.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMessage, type RetainedStore } from '@topicast/broker';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

export function retainedContract(name: string, create: () => RetainedStore | Promise<RetainedStore>): void {
  test(`${name}: set, replace, delete by empty payload`, async () => {
    const s = await create();
    await s.set(createMessage('a/b', bytes('1'), true));
    assert.equal(s.size, 1);
    await s.set(createMessage('a/b', bytes('22'), true));
    assert.equal(s.size, 1);
    assert.deepEqual(s.get('a/b')?.payload, bytes('22'));
    assert.equal(s.bytes, 2);
    await s.set(createMessage('a/b', new Uint8Array(0), true));
    assert.equal(s.size, 0);
    assert.equal(s.get('a/b'), undefined);
    assert.equal(s.bytes, 0);
    await s.set(createMessage('never/set', new Uint8Array(0), true));
    assert.equal(s.size, 0, 'deleting an absent topic is a no-op');
  });

  test(`${name}: match honours wildcards and the $ rule`, async () => {
    const s = await create();
    for (const t of ['a', 'a/b', 'a/b/c', 'a/x/c', 'b', '$SYS/up', '/lead', 'a//c']) await s.set(createMessage(t, bytes(t), true));
    const m = (f: string): string[] => s.match(f).sort();
    assert.deepEqual(m('#'), ['/lead', 'a', 'a//c', 'a/b', 'a/b/c', 'a/x/c', 'b']);
    assert.deepEqual(m('a/#'), ['a', 'a//c', 'a/b', 'a/b/c', 'a/x/c']);
    assert.deepEqual(m('a/+/c'), ['a//c', 'a/b/c', 'a/x/c']);
    assert.deepEqual(m('+'), ['a', 'b']);
    assert.deepEqual(m('+/+'), ['/lead', 'a/b']);
    assert.deepEqual(m('$SYS/#'), ['$SYS/up']);
    assert.deepEqual(m('+/up'), []);
    assert.deepEqual(m('a/b'), ['a/b']);
    assert.deepEqual(m('nope'), []);
  });

  test(`${name}: deleting prunes so later matches stay exact`, async () => {
    const s = await create();
    await s.set(createMessage('x/y/z', bytes('1'), true));
    await s.set(createMessage('x/y/z', new Uint8Array(0), true));
    await s.set(createMessage('x', bytes('2'), true));
    assert.deepEqual(s.match('x/#'), ['x']);
  });
}
