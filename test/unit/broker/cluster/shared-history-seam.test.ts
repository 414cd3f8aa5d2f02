/**
 * The core seams a cluster uses to share history and shared subscriptions (cluster/DESIGN.md
 * "History in JetStream", "Shared subscriptions across nodes"), without an engine:
 * - History.append keeps a message at an offset a shared stream placed it at; a skipped offset
 *   counts as lost (a resume from before it is refused); History.reset starts a new epoch empty;
 * - Router.sequenceHistory hands history messages to the sequencer and routes what it hands back;
 *   a sequencer that cannot take one lets the router deliver it without a position;
 * - Router.gateShared / deliverShared: groups (Subscriber.share) take only what the gate lets
 *   through from publish, and exactly what deliverShared hands them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMessage, Router, type Message, type Subscriber } from '@topicast/broker';
import type * as HistoryModule from '../../../../broker/src/core/history.js';

const { History } = (await import(new URL('../../../../../broker/dist/core/history.js', import.meta.url).href)) as typeof HistoryModule;

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (m: Message): string => new TextDecoder().decode(m.payload);
const limits = { patterns: ['h/#'], maxMessagesPerTopic: 100, maxAgeMs: 60_000, maxBytes: 1 << 30, maxTopics: 1000 };

function placed(topic: string, value: string, offset: number): Message {
  const m = createMessage(topic, bytes(value));
  m.offset = offset;
  return m;
}

class Sink implements Subscriber {
  routerStamp = 0;
  readonly got: Message[] = [];
  constructor(readonly share?: string) {}
  deliver(m: Message): void {
    this.got.push(m);
  }
}

test('placed offsets: kept where the stream put them; a skipped offset is lost to resumes from before it', () => {
  const h = new History('js1', limits, () => 1000);
  h.append(placed('h/a', 'one', 1));
  h.append(placed('h/a', 'two', 2));
  assert.equal(h.last, 2);
  assert.deepEqual(h.resume(['h/#'], { epoch: 'js1', offset: 1 })!.flat().map(text), ['two']);
  h.append(placed('h/a', 'five', 5)); // 3 and 4 never reached this mirror
  assert.equal(h.last, 5);
  assert.equal(h.resume(['h/#'], { epoch: 'js1', offset: 2 }), undefined, 'from 2: offsets 3 and 4 are lost');
  assert.deepEqual(h.resume(['h/#'], { epoch: 'js1', offset: 4 })!.flat().map(text), ['five'], 'from 4: nothing after it was lost');
  assert.equal(h.append(placed('h/a', 'late', 3)), undefined);
  assert.equal(h.last, 5, 'an offset not above last is not kept');
});

test('reset: a new epoch, empty, numbering from the stream again; old positions no longer resume', () => {
  const h = new History('js1', limits, () => 1000);
  for (let i = 1; i <= 3; i++) h.append(placed('h/a', `v${i}`, i));
  h.reset('js2');
  assert.equal(h.epoch, 'js2');
  assert.equal(h.last, 0);
  assert.equal(h.messages, 0);
  assert.equal(h.resume(['h/#'], { epoch: 'js1', offset: 1 }), undefined);
  h.append(placed('h/b', 'first', 1));
  assert.deepEqual(h.resume(['h/#'], { epoch: 'js2', offset: 0 })!.flat().map(text), ['first']);
});

test('a sequencer takes history messages and routes them back in its order; one it cannot take is delivered without a position', async () => {
  const router = new Router(undefined, new History('js1', limits, () => 1000));
  const sub = new Sink();
  router.subscribe(sub, '#', { qos: 0 });
  const taken: Message[] = [];
  let available = true;
  router.sequenceHistory({
    sequence(m) {
      if (!available) return undefined;
      taken.push(m);
      return Promise.resolve();
    },
  });
  const first = createMessage('h/x', bytes('a'));
  const r = router.publish(first, true);
  assert.equal(r.deliveries, 0, 'not delivered before the stream placed it');
  await r.durable;
  router.publish(createMessage('other/topic', bytes('plain')));
  assert.deepEqual(sub.got.map(text), ['plain'], 'other topics route at once');
  // The stream hands it back with its place.
  first.offset = 7;
  router.publish(first);
  assert.deepEqual(sub.got.map((m) => `${text(m)}@${m.offset}`), ['plain@0', 'a@7']);
  assert.equal(router.history!.last, 7);
  available = false;
  router.publish(createMessage('h/x', bytes('unplaced')));
  assert.deepEqual(sub.got.map((m) => `${text(m)}@${m.offset}`).at(-1), 'unplaced@0', 'delivered here, without a position');
  assert.equal(taken.length, 1);
});

test('shared-subscription groups: publish gives them only what the gate lets through; deliverShared gives them exactly one message', () => {
  const router = new Router();
  const plain = new Sink();
  const group = new Sink('workers');
  const otherGroup = new Sink('others');
  router.subscribe(plain, 'jobs/#', { qos: 0 });
  router.subscribe(group, 'jobs/#', { qos: 0 });
  router.subscribe(otherGroup, 'jobs/#', { qos: 0 });
  let open = false;
  router.gateShared(() => open);
  router.publish(createMessage('jobs/1', bytes('a')));
  assert.deepEqual([plain.got.length, group.got.length, otherGroup.got.length], [1, 0, 0], 'closed gate: groups wait for the cluster');
  assert.equal(router.deliverShared(createMessage('jobs/1', bytes('b')), 'workers', 'jobs/#'), 1);
  assert.deepEqual([plain.got.length, group.got.length, otherGroup.got.length], [1, 1, 0], 'only the group the cluster picked');
  assert.equal(router.deliverShared(createMessage('jobs/1', bytes('c')), 'workers', 'jobs/+'), 0, 'another filter is another group');
  open = true;
  router.publish(createMessage('jobs/2', bytes('d')));
  assert.deepEqual([plain.got.length, group.got.length, otherGroup.got.length], [2, 2, 1], 'open gate: as on a single node');
  router.gateShared(undefined);
  router.publish(createMessage('jobs/3', bytes('e')));
  assert.deepEqual([plain.got.length, group.got.length, otherGroup.got.length], [3, 3, 2], 'no gate: as on a single node');
});

test('interest: a group is reported with its share name, a plain subscriber without', () => {
  const router = new Router();
  const calls: string[] = [];
  router.watchInterest({ added: (f, share) => calls.push(`+${f}${share === undefined ? '' : `@${share}`}`), removed: (f, share) => calls.push(`-${f}${share === undefined ? '' : `@${share}`}`) });
  const plain = new Sink();
  const group = new Sink('g');
  router.subscribe(plain, 'a/#', { qos: 0 });
  router.subscribe(group, 'a/#', { qos: 0 });
  router.unsubscribe(group, 'a/#');
  router.unsubscribe(plain, 'a/#');
  assert.deepEqual(calls, ['+a/#', '+a/#@g', '-a/#@g', '-a/#']);
});
