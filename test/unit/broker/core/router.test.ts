import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMessage, Router, type Message, type Subscriber } from '@topicast/broker';

class Probe implements Subscriber {
  routerStamp = 0;
  got: string[] = [];
  deliver(m: Message): void {
    this.got.push(m.topic);
  }
}

const p = (s: string): Uint8Array => new TextEncoder().encode(s);

test('a message reaches a subscriber once however many filters match', () => {
  const r = new Router();
  const a = new Probe();
  const b = new Probe();
  for (const f of ['x/#', 'x/+', 'x/y', '#']) r.subscribe(a, f, { qos: 0 });
  r.subscribe(b, 'x/y', { qos: 0 });
  const { deliveries } = r.publish(createMessage('x/y', p('1')));
  assert.equal(deliveries, 2);
  assert.deepEqual(a.got, ['x/y']);
  assert.deepEqual(b.got, ['x/y']);
  r.publish(createMessage('x/y', p('2')));
  assert.deepEqual(a.got, ['x/y', 'x/y'], 'the stamp resets per publish');
  assert.equal(r.stats.messagesIn, 2);
  assert.equal(r.stats.deliveries, 4);
});

test('retain stores, empty retained payload deletes, non-retained leaves the store alone', () => {
  const r = new Router();
  r.publish(createMessage('t', p('v1'), true));
  r.publish(createMessage('t', p('live'), false));
  assert.deepEqual(r.retained.get('t')?.payload, p('v1'));
  r.publish(createMessage('t', new Uint8Array(0), true));
  assert.equal(r.retained.get('t'), undefined);
});

test('order per publisher and topic is kept', () => {
  const r = new Router();
  const s = new Probe();
  const seen: string[] = [];
  s.deliver = (m) => void seen.push(new TextDecoder().decode(m.payload));
  r.subscribe(s, 'o/+', { qos: 0 });
  for (let i = 0; i < 100; i++) r.publish(createMessage('o/1', p(String(i))));
  assert.deepEqual(seen, Array.from({ length: 100 }, (_, i) => String(i)));
});

test('unsubscribing everything empties the index', () => {
  const r = new Router();
  const s = new Probe();
  const filters = ['a', 'a/+', 'a/#', '+/b/#', '#', '$SYS/#'];
  for (const f of filters) r.subscribe(s, f, { qos: 0 });
  for (const f of filters) assert.equal(r.unsubscribe(s, f), true);
  assert.equal(r.isEmpty(), true);
  r.publish(createMessage('a/b', p('x')));
  assert.deepEqual(s.got, []);
});

test('taps see every routed message after local delivery', () => {
  const r = new Router();
  const seen: string[] = [];
  const off = r.tap((m) => {
    seen.push(m.topic);
  });
  r.publish(createMessage('a', p('1')));
  off();
  r.publish(createMessage('b', p('2')));
  assert.deepEqual(seen, ['a']);
});
