/**
 * The history core (broker/src/core/history.ts) with a fake clock: offsets, the bounds
 * (count, age, bytes, topics), resume decisions and replay order; and a property test of
 * resume/replay against a reference that keeps every message and applies the bounds naively.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { createMessage, Router, type Message, type Subscriber } from '@topicast/broker';
import { topicMatches } from 'topicast/protocol'; // checked against a reference of its own in test/property/trie.test.ts
import type * as HistoryModule from '../../../../broker/src/core/history.js';

const { History, ReplayMerge, ENTRY_OVERHEAD_BYTES } = (await import(new URL('../../../../../broker/dist/core/history.js', import.meta.url).href)) as typeof HistoryModule;
type HistoryLimits = HistoryModule.HistoryLimits;

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (m: Message): string => new TextDecoder().decode(m.payload);

function make(limits: Partial<HistoryLimits> = {}, clock = { ms: 1_000_000 }) {
  const h = new History('ep0', {
    patterns: ['devices/#'], maxMessagesPerTopic: 100, maxAgeMs: 60_000, maxBytes: 1 << 30, maxTopics: 1000, ...limits,
  }, () => clock.ms);
  const pub = (topic: string, value: string): Message => {
    const m = createMessage(topic, bytes(value));
    h.append(m);
    return m;
  };
  return { h, pub, clock };
}

function replayed(slices: Message[][] | undefined): string[] | undefined {
  if (slices === undefined) return undefined;
  const out: string[] = [];
  const merge = new ReplayMerge(slices);
  for (let m = merge.next(); m !== undefined; m = merge.next()) out.push(`${m.offset}:${m.topic}=${text(m)}`);
  return out;
}

test('offsets: +1 per history message, broker-wide; other topics get none', () => {
  const { h, pub } = make();
  assert.equal(pub('devices/a/t', '1').offset, 1);
  assert.equal(pub('other/x', 'no').offset, 0);
  assert.equal(pub('devices/b/t', '2').offset, 2);
  assert.equal(pub('$SYS/x', 'no').offset, 0, "'devices/#' never matches a $ topic, and neither would '#'");
  assert.equal(h.last, 2);
  assert.equal(h.topics, 2);
  assert.equal(h.messages, 2);
  assert.equal(h.stats.appended, 2);
});

test('the router assigns the offset before delivery and drops the live encodings afterwards', () => {
  const { h } = make();
  const r = new Router(undefined, h);
  const seen: number[] = [];
  const sub: Subscriber = { routerStamp: 0, deliver: (m) => { seen.push(m.offset); m.encoded.native = bytes('frame'); } };
  r.subscribe(sub, '#', { qos: 0 });
  const m = createMessage('devices/a/t', bytes('1'));
  r.publish(m);
  r.publish(createMessage('plain', bytes('2')));
  assert.deepEqual(seen, [1, 0]);
  assert.equal(m.encoded.native, undefined, 'history holds the payload only');
});

test('resume replays exactly the messages after the position, in offset order, for exact and wildcard filters', () => {
  const { h, pub } = make();
  pub('devices/a/t', 'a1');
  pub('devices/b/t', 'b1');
  const pos = h.last;
  pub('devices/a/t', 'a2');
  pub('devices/b/t', 'b2');
  pub('devices/a/x', 'x1');
  pub('devices/a/t', 'a3');
  assert.deepEqual(replayed(h.resume(['devices/a/t'], { epoch: 'ep0', offset: pos })), ['3:devices/a/t=a2', '6:devices/a/t=a3']);
  assert.deepEqual(replayed(h.resume(['devices/+/t'], { epoch: 'ep0', offset: pos })), ['3:devices/a/t=a2', '4:devices/b/t=b2', '6:devices/a/t=a3']);
  assert.deepEqual(replayed(h.resume(['devices/#', 'devices/a/t'], { epoch: 'ep0', offset: pos })),
    ['3:devices/a/t=a2', '4:devices/b/t=b2', '5:devices/a/x=x1', '6:devices/a/t=a3'], 'a topic matched by two filters once');
  assert.deepEqual(replayed(h.resume(['devices/#'], { epoch: 'ep0', offset: h.last })), [], 'nothing missed');
  assert.deepEqual(replayed(h.resume(['devices/+/t'], { epoch: 'ep0', offset: 0 })), ['1:devices/a/t=a1', '2:devices/b/t=b1', '3:devices/a/t=a2', '4:devices/b/t=b2', '6:devices/a/t=a3']);
  assert.equal(h.stats.replays, 5);
  assert.equal(h.stats.replayedMessages, 2 + 3 + 4 + 0 + 5);
  assert.deepEqual(replayed(h.resume(['devices/#'], { epoch: 'ep0', offset: pos }, (t) => t !== 'devices/b/t')),
    ['3:devices/a/t=a2', '5:devices/a/x=x1', '6:devices/a/t=a3'], 'unreadable topics are left out');
});

test('resume is refused for another epoch, an uncovered filter, or a position from the future', () => {
  const { h, pub } = make({ patterns: ['devices/+/t', 'logs/#'] });
  pub('devices/a/t', '1');
  assert.equal(h.resume(['devices/a/t'], { epoch: 'other', offset: 0 }), undefined);
  assert.equal(h.resume(['devices/#'], { epoch: 'ep0', offset: 0 }), undefined, 'devices/# reaches topics without history');
  assert.equal(h.resume(['#'], { epoch: 'ep0', offset: 0 }), undefined);
  assert.equal(h.resume(['devices/a/t', 'other'], { epoch: 'ep0', offset: 0 }), undefined, 'every filter must be covered');
  assert.equal(h.resume(['devices/a/t'], { epoch: 'ep0', offset: 2 }), undefined, 'offset beyond the stream');
  assert.notEqual(h.resume(['devices/+/t', 'logs/x/#'], { epoch: 'ep0', offset: 0 }), undefined);
  assert.equal(h.covers(['logs']), true, "'logs/#' covers 'logs'");
  assert.equal(h.stats.resumesRefused, 5);
});

test('count bound: a topic keeps its newest messages; a resume from before the evicted one is refused', () => {
  const { h, pub } = make({ maxMessagesPerTopic: 2 });
  pub('devices/a/t', '1'); // 1
  pub('devices/b/t', 'b'); // 2
  pub('devices/a/t', '2'); // 3
  pub('devices/a/t', '3'); // 4: evicts offset 1
  assert.equal(h.messages, 3);
  assert.equal(h.stats.evicted, 1);
  assert.equal(h.resume(['devices/a/t'], { epoch: 'ep0', offset: 0 }), undefined, 'offset 1 was lost');
  assert.deepEqual(replayed(h.resume(['devices/a/t'], { epoch: 'ep0', offset: 1 })), ['3:devices/a/t=2', '4:devices/a/t=3']);
  assert.deepEqual(replayed(h.resume(['devices/b/t'], { epoch: 'ep0', offset: 0 })), ['2:devices/b/t=b'], 'other topics are unaffected');
});

test('age bound: old messages leave on append and on expire(); a topic left empty raises the floor', () => {
  const { h, pub, clock } = make({ maxAgeMs: 10_000 });
  pub('devices/a/t', 'old'); // 1 at t0
  clock.ms += 5_000;
  pub('devices/b/t', 'mid'); // 2 at t0+5s
  clock.ms += 6_000;
  h.expire(); // offset 1 is 11 s old
  assert.equal(h.messages, 1);
  assert.equal(h.topics, 1, 'devices/a/t is gone whole');
  assert.equal(h.floor, 1);
  assert.equal(h.resume(['devices/b/t'], { epoch: 'ep0', offset: 0 }), undefined, 'the floor is conservative');
  assert.deepEqual(replayed(h.resume(['devices/b/t'], { epoch: 'ep0', offset: 1 })), ['2:devices/b/t=mid']);
  clock.ms += 10_000;
  pub('devices/c/t', 'new'); // the append itself expires offset 2
  assert.equal(h.messages, 1);
  assert.equal(h.oldestOffset(), 3);
});

test('bytes bound: the oldest messages across topics go first', () => {
  const per = 1 + 'devices/a/t'.length + ENTRY_OVERHEAD_BYTES;
  const { h, pub } = make({ maxBytes: 3 * per });
  for (let i = 0; i < 5; i++) pub(i % 2 === 0 ? 'devices/a/t' : 'devices/b/t', String(i));
  assert.equal(h.messages, 3);
  assert.equal(h.bytes, 3 * per);
  assert.equal(h.oldestOffset(), 3);
  assert.deepEqual(replayed(h.resume(['devices/+/t'], { epoch: 'ep0', offset: 2 })), ['3:devices/a/t=2', '4:devices/b/t=3', '5:devices/a/t=4']);
  assert.equal(h.resume(['devices/a/t'], { epoch: 'ep0', offset: 0 }), undefined);
});

test('topics bound: a new topic evicts the one published to least recently', () => {
  const { h, pub } = make({ maxTopics: 2 });
  pub('devices/a/t', '1'); // 1
  pub('devices/b/t', '2'); // 2
  pub('devices/a/t', '3'); // 3: a is now the most recent
  pub('devices/c/t', '4'); // 4: evicts b whole
  assert.equal(h.topics, 2);
  assert.equal(h.floor, 2);
  assert.deepEqual(replayed(h.resume(['devices/+/t'], { epoch: 'ep0', offset: 2 })), ['3:devices/a/t=3', '4:devices/c/t=4']);
  assert.equal(h.resume(['devices/a/t'], { epoch: 'ep0', offset: 1 }), undefined);
});

test('evictThrough frees the oldest messages; the queue stays bounded under count evictions', () => {
  const { h, pub } = make({ maxMessagesPerTopic: 3 });
  for (let i = 0; i < 10_000; i++) pub('devices/a/t', String(i));
  assert.equal(h.messages, 3);
  assert.equal(h.oldestOffset(), 9998);
  const queueLength = (h as unknown as { qOffsets: number[] }).qOffsets.length;
  assert.ok(queueLength < 3000, `stale queue entries are compacted (${queueLength})`);
  h.evictThrough(9998);
  assert.equal(h.messages, 2);
  assert.equal(h.oldestOffset(), 9999);
});

test('restore puts back stored messages with their bounds; lost, restoreEvicted and continueAt say what is gone', () => {
  const { h } = make({ maxMessagesPerTopic: 2 });
  h.restore('devices/a/t', bytes('1'), 5, 1_000_000);
  h.restore('devices/a/t', bytes('2'), 6, 1_000_000);
  h.restore('devices/b/t', bytes('b'), 7, 1_000_000);
  h.restore('devices/a/t', bytes('3'), 9, 1_000_000); // evicts 5 by the count bound, as when it was first appended
  assert.throws(() => h.restore('devices/a/t', bytes('x'), 9, 0), /out of order/);
  assert.equal(h.resume(['devices/a/t'], { epoch: 'ep0', offset: 4 }), undefined);
  assert.deepEqual(replayed(h.resume(['devices/a/t'], { epoch: 'ep0', offset: 5 })), ['6:devices/a/t=2', '9:devices/a/t=3']);
  h.restoreEvicted('devices/b/t', 3);
  assert.equal(h.resume(['devices/b/t'], { epoch: 'ep0', offset: 2 }), undefined);
  assert.deepEqual(replayed(h.resume(['devices/b/t'], { epoch: 'ep0', offset: 3 })), ['7:devices/b/t=b']);
  h.restoreEvicted('devices/gone/t', 4); // a topic not held: counts for all
  assert.equal(h.floor, 4);
  h.lost(8);
  assert.equal(h.resume(['devices/a/t'], { epoch: 'ep0', offset: 7 }), undefined);
  h.continueAt(20);
  assert.equal(h.last, 20);
  assert.deepEqual(replayed(h.resume(['devices/a/t'], { epoch: 'ep0', offset: 8 })), ['9:devices/a/t=3']);
  const m = createMessage('devices/a/t', bytes('4'));
  h.append(m);
  assert.equal(m.offset, 21, 'the stream continues after the skipped offsets');
});

test('heldAfter walks the held messages in offset order while evictions happen in between', () => {
  const { h, pub } = make({ maxMessagesPerTopic: 2 });
  for (let i = 0; i < 6; i++) pub(i % 3 === 0 ? 'devices/a/t' : 'devices/b/t', String(i)); // 1..6; a: 1,4  b: 2,3,5,6
  const seen: number[] = [];
  let after = 0;
  for (let e = h.heldAfter(after); e !== undefined; e = h.heldAfter(after)) {
    seen.push(e.message.offset);
    after = e.message.offset;
    if (after === 4) pub('devices/a/t', 'x'); // 7: evicts 1 (already walked) — the walk goes on
  }
  assert.deepEqual(seen, [1, 4, 5, 6, 7]);
  assert.deepEqual(h.evictedByTopic().sort(), [['devices/a/t', 1, 1_000_000], ['devices/b/t', 3, 1_000_000]]);
});

// ---- property: resume/replay against a reference ------------------------------------------------

interface RefEntry { topic: string; offset: number; atMs: number; value: string }

const topicArb = fc.constantFrom('devices/a/t', 'devices/b/t', 'devices/a/x', 'devices/c', 'other/a');
const filterArb = fc.constantFrom('devices/a/t', 'devices/+/t', 'devices/#', 'devices/a/#', '+/a/t', 'other/#');
const op = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('pub' as const), topic: topicArb, dtMs: fc.integer({ min: 0, max: 3000 }) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('resume' as const), filters: fc.uniqueArray(filterArb, { minLength: 1, maxLength: 2 }), back: fc.nat(12) }) },
);

test('property: a resume is recovered only when the reference lost nothing after the position, and replays exactly the reference', () => {
  fc.assert(fc.property(fc.array(op, { maxLength: 80 }), fc.integer({ min: 1, max: 4 }), fc.integer({ min: 2, max: 4 }), (ops, maxPerTopic, maxTopics) => {
    const clock = { ms: 0 };
    const maxAgeMs = 10_000;
    const h = new History('e', { patterns: ['devices/#'], maxMessagesPerTopic: maxPerTopic, maxAgeMs, maxBytes: 1 << 30, maxTopics }, () => clock.ms);
    const all: RefEntry[] = []; // every history message ever appended
    let n = 0;
    for (const o of ops) {
      if (o.kind === 'pub') {
        clock.ms += o.dtMs;
        const m = createMessage(o.topic, bytes(String(n++)));
        h.append(m);
        if (o.topic.startsWith('devices/')) all.push({ topic: o.topic, offset: m.offset, atMs: clock.ms, value: text(m) });
        else assert.equal(m.offset, 0);
        continue;
      }
      const from = Math.max(0, h.last - o.back);
      const got = replayed(h.resume(o.filters, { epoch: 'e', offset: from }));
      const wanted = all.filter((e) => e.offset > from && o.filters.some((f) => topicMatches(f, e.topic)));
      // What the reference still holds: per topic the newest maxPerTopic, none older than maxAge.
      const holds = (e: RefEntry): boolean => {
        const newer = all.filter((x) => x.topic === e.topic && x.offset > e.offset).length;
        return newer < maxPerTopic && e.atMs >= clock.ms - maxAgeMs;
      };
      const covered = o.filters.every((f) => f.startsWith('devices/'));
      if (got !== undefined) {
        // Recovered: the replay is exactly what was published after the position, nothing lost in between.
        assert.ok(covered);
        assert.deepEqual(got, wanted.map((e) => `${e.offset}:${e.topic}=${e.value}`));
      } else if (covered) {
        // Refused: justified only if the reference no longer holds something wanted, or the bounds touched
        // a topic outside the filters after the position (the conservative floor of a removed topic).
        const lostWanted = wanted.some((e) => !holds(e));
        const lostOther = all.some((e) => e.offset > from && !holds(e));
        assert.ok(lostWanted || lostOther || h.floor > from, `refused without a loss after ${from}`);
      }
    }
  }), { numRuns: 400 });
});

// ---- history queries (PROTOCOL.md §4.8) ----------------------------------------------------------

type Query = Parameters<InstanceType<typeof History>['query']>[0];

/** Runs a query and reads its rows out as `offset:topic=value@atMs`, with `complete` read after them. */
function run(h: InstanceType<typeof History>, q: Partial<Query> & { filters: string[] }, canRead?: (topic: string) => boolean, readNow = false) {
  const answer = h.query({ limit: 1000, newestFirst: false, ...q }, canRead, readNow);
  const rows: string[] = [];
  for (let m = answer.cursor.next(); m !== undefined; m = answer.cursor.next()) rows.push(`${m.offset}:${m.topic}=${text(m)}@${answer.cursor.atMs}`);
  assert.equal(rows.length, answer.count);
  return { rows, complete: answer.complete(), more: answer.more };
}

test('query: windows by time and offset are inclusive at both ends, both orders, limit and more', () => {
  const { h, pub, clock } = make();
  for (let i = 1; i <= 6; i++) {
    clock.ms = 1_000_000 + i * 10; // published at +10, +20, ... +60
    pub(i % 2 ? 'devices/a/t' : 'devices/b/t', String(i));
  }
  pub('other/x', 'no history');
  const all = run(h, { filters: ['devices/#'] });
  assert.deepEqual(all.rows, ['1:devices/a/t=1@1000010', '2:devices/b/t=2@1000020', '3:devices/a/t=3@1000030', '4:devices/b/t=4@1000040', '5:devices/a/t=5@1000050', '6:devices/b/t=6@1000060']);
  assert.deepEqual([all.complete, all.more], [true, false]);
  assert.deepEqual(run(h, { filters: ['devices/#'], sinceMs: 1_000_020, untilMs: 1_000_040 }).rows.map((r) => r.split(':')[0]), ['2', '3', '4'], 'time bounds are inclusive');
  assert.deepEqual(run(h, { filters: ['devices/#'], sinceMs: 1_000_021, untilMs: 1_000_039 }).rows.map((r) => r.split(':')[0]), ['3']);
  assert.deepEqual(run(h, { filters: ['devices/#'], fromOffset: 2, toOffset: 4 }).rows.map((r) => r.split(':')[0]), ['2', '3', '4'], 'offset bounds are inclusive');
  assert.deepEqual(run(h, { filters: ['devices/a/t'], newestFirst: true }).rows.map((r) => r.split(':')[0]), ['5', '3', '1']);
  const newest = run(h, { filters: ['devices/#'], limit: 2, newestFirst: true });
  assert.deepEqual([newest.rows.map((r) => r.split(':')[0]), newest.complete, newest.more], [['6', '5'], true, true]);
  const oldest = run(h, { filters: ['devices/#'], limit: 2 });
  assert.deepEqual([oldest.rows.map((r) => r.split(':')[0]), oldest.complete, oldest.more], [['1', '2'], true, true]);
  assert.deepEqual(run(h, { filters: ['devices/+/t', 'devices/a/#'], limit: 3 }).rows.map((r) => r.split(':')[0]), ['1', '2', '3'], 'several filters: each topic once');
  assert.deepEqual(run(h, { filters: ['devices/#'], sinceMs: 2_000_000 }).rows, []);
  assert.equal(run(h, { filters: ['#'] }).complete, false, 'a filter beyond the history patterns reaches topics without history');
  assert.deepEqual(run(h, { filters: ['devices/#'] }, (t) => t !== 'devices/b/t').rows.map((r) => r.split(':')[0]), ['1', '3', '5'], 'an unreadable topic never appears');
  assert.deepEqual([h.stats.queries, h.stats.queriedMessages], [11, 32]);
});

test('query: complete is false exactly when history no longer reaches back into the answer', () => {
  const { h, pub, clock } = make({ maxMessagesPerTopic: 3 });
  for (let i = 1; i <= 5; i++) {
    clock.ms = 1_000_000 + i * 10;
    pub('devices/a/t', String(i)); // offsets 1..5; 1 and 2 evicted, the last of them published at +20
  }
  clock.ms = 1_000_100;
  pub('devices/b/t', 'b'); // offset 6, nothing lost on b
  assert.equal(run(h, { filters: ['devices/a/t'] }).complete, false, 'no lower bound: the evicted ones belong');
  assert.equal(run(h, { filters: ['devices/a/t'], fromOffset: 2 }).complete, false);
  assert.equal(run(h, { filters: ['devices/a/t'], fromOffset: 3 }).complete, true, 'the window starts after the loss');
  assert.equal(run(h, { filters: ['devices/a/t'], sinceMs: 1_000_020 }).complete, false, 'offset 2 was published at +20: inside');
  assert.equal(run(h, { filters: ['devices/a/t'], sinceMs: 1_000_021 }).complete, true, 'just after it');
  assert.equal(run(h, { filters: ['devices/b/t'] }).complete, true, 'another topic lost nothing');
  assert.equal(run(h, { filters: ['devices/a/t'], limit: 3, newestFirst: true }).complete, true, 'the newest three are all held');
  assert.equal(run(h, { filters: ['devices/a/t'], limit: 4, newestFirst: true }).complete, false, 'a fourth newest was evicted');
  assert.equal(run(h, { filters: ['devices/a/t'], limit: 1 }).complete, false, 'the oldest in the window is gone');
  // A topic removed whole raises the floor, with its time: it counts for every topic, conservatively.
  const t = make({ maxTopics: 1 });
  t.clock.ms = 5_000;
  t.pub('devices/x', '1');
  t.clock.ms = 6_000;
  t.pub('devices/y', '2'); // removes devices/x (offset 1, at 5 s)
  assert.deepEqual([t.h.floor, t.h.floorAtMs], [1, 5_000]);
  assert.equal(run(t.h, { filters: ['devices/y'] }).complete, false);
  assert.equal(run(t.h, { filters: ['devices/y'], sinceMs: 5_001 }).complete, true);
});

test('restore: publish times come back with the records; evictions without a time are bounded by the oldest held message', () => {
  const { h } = make({ maxMessagesPerTopic: 10 });
  h.restore('devices/a/t', bytes('1'), 5, 1_000_100);
  h.restore('devices/a/t', bytes('2'), 6, 1_000_200);
  h.restoreEvicted('devices/a/t', 4); // an old snapshot record: no time
  assert.deepEqual(run(h, { filters: ['devices/a/t'] }).rows, ['5:devices/a/t=1@1000100', '6:devices/a/t=2@1000200']);
  assert.equal(run(h, { filters: ['devices/a/t'], sinceMs: 1_000_100 }).complete, false, 'the lost offset 4 may have been published as late as the oldest held one');
  assert.equal(run(h, { filters: ['devices/a/t'], sinceMs: 1_000_101 }).complete, true);
  h.restoreEvicted('devices/b/t', 3, 999_000); // a topic not held, with its time: the floor
  assert.deepEqual([h.floor, h.floorAtMs], [3, 999_000]);
});

test('property: a query returns exactly the held messages of its window in order, and complete only when nothing of the answer was lost', () => {
  const queryOp = fc.record({
    filters: fc.uniqueArray(filterArb, { minLength: 1, maxLength: 2 }),
    limit: fc.integer({ min: 1, max: 8 }),
    newestFirst: fc.boolean(),
    sinceBack: fc.option(fc.nat(20_000), { nil: undefined }),
    untilBack: fc.option(fc.nat(20_000), { nil: undefined }),
    fromBack: fc.option(fc.nat(15), { nil: undefined }),
    toBack: fc.option(fc.nat(15), { nil: undefined }),
  });
  const ops = fc.array(fc.oneof(
    { weight: 6, arbitrary: fc.record({ kind: fc.constant('pub' as const), topic: topicArb, dtMs: fc.integer({ min: 0, max: 3000 }) }) },
    { weight: 2, arbitrary: fc.record({ kind: fc.constant('query' as const), q: queryOp }) },
  ), { maxLength: 80 });
  let completes = 0;
  let incompletes = 0;
  fc.assert(fc.property(ops, fc.integer({ min: 1, max: 4 }), fc.integer({ min: 2, max: 4 }), (list, maxPerTopic, maxTopics) => {
    const clock = { ms: 0 };
    const h = new History('e', { patterns: ['devices/#'], maxMessagesPerTopic: maxPerTopic, maxAgeMs: 10_000, maxBytes: 1 << 30, maxTopics }, () => clock.ms);
    const all: RefEntry[] = [];
    let n = 0;
    for (const o of list) {
      if (o.kind === 'pub') {
        clock.ms += o.dtMs;
        const m = createMessage(o.topic, bytes(String(n++)));
        h.append(m);
        if (m.offset > 0) all.push({ topic: o.topic, offset: m.offset, atMs: clock.ms, value: text(m) });
        continue;
      }
      const { q } = o;
      const since = q.sinceBack === undefined ? undefined : Math.max(0, clock.ms - q.sinceBack);
      const until = q.untilBack === undefined ? undefined : Math.max(0, clock.ms - q.untilBack);
      const from = q.fromBack === undefined ? undefined : Math.max(0, h.last - q.fromBack);
      const to = q.toBack === undefined ? undefined : Math.max(0, h.last - q.toBack);
      const query = { filters: q.filters, limit: q.limit, newestFirst: q.newestFirst, sinceMs: since, untilMs: until, fromOffset: from, toOffset: to };
      const got = run(h, query);
      assert.deepEqual(run(h, query, undefined, true), got, 'read in place (readNow) or from copies: the same answer');
      h.expire();
      const held = new Set<number>();
      for (let e = h.heldAfter(0); e !== undefined; e = h.heldAfter(e.message.offset)) held.add(e.message.offset);
      const inWindow = all.filter((e) => q.filters.some((f) => topicMatches(f, e.topic))
        && (since === undefined || e.atMs >= since) && (until === undefined || e.atMs <= until)
        && (from === undefined || e.offset >= from) && (to === undefined || e.offset <= to));
      if (q.newestFirst) inWindow.reverse();
      const show = (e: RefEntry): string => `${e.offset}:${e.topic}=${e.value}@${e.atMs}`;
      assert.deepEqual(got.rows, inWindow.filter((e) => held.has(e.offset)).slice(0, q.limit).map(show), 'the held part of the window, in order');
      if (got.complete) {
        completes++;
        assert.deepEqual(got.rows, inWindow.slice(0, q.limit).map(show), 'complete: nothing of the answer was lost');
      } else incompletes++;
    }
  }), { numRuns: 400 });
  assert.ok(completes > 100 && incompletes > 100, `both outcomes exercised (${completes} complete, ${incompletes} not)`);
});
