/**
 * History and resume over the real broker process (PROTOCOL.md §4.6, issue 10), with raw native
 * frames: live deliveries of history topics carry offsets, SUBSCRIBE ACKs carry the stream position,
 * a resume after a short disconnect replays exactly the missed messages in order (exact and wildcard
 * filters) and then goes live without a gap or duplicate, a resume beyond the window or into another
 * epoch gets recovered:false and a fresh subscription, the epoch changes when history is lost, and
 * a replay withholds topics the client may not read, like snapshots and live deliveries do.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Flag, Op, SUBPROTOCOL } from 'topicast/protocol';
import { startBroker } from '../helpers/broker.js';
import { bytes, NativeClient, scrapeMetrics, text, type Ack, type Delivery } from '../helpers/native-client.js';

const HISTORY_ARGS = ['--history-filters', 'devices/#,logs/+', '--sys-interval-sec', '0'];

function ackResult(a: Awaited<ReturnType<NativeClient['subscribeRaw']>>): NonNullable<Ack['result']> {
  assert.equal(a.op, Op.ack, `expected ACK, got ${JSON.stringify(a)}`);
  assert.ok(a.result);
  return a.result;
}

/** Subscribes (optionally resuming) and collects everything up to SNAPSHOT_END. */
async function subscribe(c: NativeClient, filters: string[], options: Parameters<NativeClient['subscribeRaw']>[1] = {}) {
  const from = c.frames.length;
  const ack = ackResult(await c.subscribeRaw(filters, options));
  const idx = c.frames.findIndex((f, i) => i >= from && f.op === Op.ack && f.result === ack);
  const end = await c.expect((f) => f.op === Op.snapshotEnd);
  const between = c.frames.slice(idx + 1, c.frames.indexOf(end)).filter((f): f is Delivery => f.op === Op.delivery);
  return { ack, between };
}

const show = (d: Delivery): string => `${d.offset}:${d.topic}=${text(d.payload)}${d.flags & Flag.replayed ? ' (replayed)' : ''}`;

test('live deliveries carry offsets, ACKs carry epoch and offset; resume replays exactly what was missed, then live', async () => {
  const broker = await startBroker({ args: HISTORY_ARGS, mqttOff: true });
  const pub = await NativeClient.connect(broker.url);
  const sub = await NativeClient.connect(broker.url);
  const first = await subscribe(sub, ['devices/+/temp']);
  assert.equal(typeof first.ack.epoch, 'string');
  assert.equal(first.ack.offset, 0);
  assert.equal(first.ack.recovered, undefined, 'no resume asked');

  await pub.publish('devices/a/temp', bytes('a1'));
  await pub.publish('plain/topic', bytes('no history'));
  await pub.publish('devices/b/temp', bytes('b1'));
  const live = [await sub.expect((f) => f.op === Op.delivery && text(f.payload) === 'a1'), await sub.expect((f) => f.op === Op.delivery && text(f.payload) === 'b1')] as Delivery[];
  assert.deepEqual(live.map(show), ['1:devices/a/temp=a1', '2:devices/b/temp=b1']);
  const epoch = first.ack.epoch!;
  const position = live.at(-1)!.offset!;
  sub.terminate(); // a short disconnect

  // Missed: three on matching topics, others on non-matching or non-history topics.
  await pub.publish('devices/a/temp', bytes('a2'));
  await pub.publish('devices/a/hum', bytes('h1'));
  await pub.publish('devices/b/temp', bytes('b2'));
  await pub.publish('plain/topic', bytes('x'));
  await pub.publish('devices/a/temp', bytes('a3'));

  const back = await NativeClient.connect(broker.url);
  const wild = await subscribe(back, ['devices/+/temp'], { resume: { epoch, offset: position } });
  assert.deepEqual({ ...wild.ack }, { retained: 0, replayed: 3, epoch, offset: 6, recovered: true });
  assert.deepEqual(wild.between.map(show), ['3:devices/a/temp=a2 (replayed)', '5:devices/b/temp=b2 (replayed)', '6:devices/a/temp=a3 (replayed)']);
  assert.ok(wild.between.every((d) => d.flags === Flag.replayed));

  const exact = await subscribe(back, ['devices/a/hum'], { resume: { epoch, offset: position } });
  assert.equal(exact.ack.recovered, true);
  assert.deepEqual(exact.between.map(show), ['4:devices/a/hum=h1 (replayed)']);

  // Then live, without a gap or a duplicate.
  await pub.publish('devices/b/temp', bytes('b3'));
  const next = await back.expect((f) => f.op === Op.delivery && text(f.payload) === 'b3') as Delivery;
  assert.deepEqual(show(next), '7:devices/b/temp=b3');
  await back.ping();
  const all = back.deliveries().map(show);
  assert.equal(new Set(all).size, all.length, 'no duplicate');

  const m = await scrapeMetrics(broker.httpUrl);
  assert.equal(m.get('topicast_history_replays_total'), 2);
  assert.equal(m.get('topicast_history_replayed_messages_total'), 4);
  assert.equal(m.get('topicast_history_topics'), 3);
  assert.equal(m.get('topicast_history_offset'), 7);
  assert.equal(m.get('topicast_history_write_errors_total'), 0, 'counted in memory too, so dashboards see one set of figures');
});

test('resume beyond the window, into another epoch, or with an uncovered filter: recovered false and a fresh subscription', async () => {
  const broker = await startBroker({ args: [...HISTORY_ARGS, '--history-max-messages', '3'], mqttOff: true });
  const pub = await NativeClient.connect(broker.url);
  await pub.publish('devices/a/temp', bytes('r'), { retain: true }); // offset 1, also retained
  for (let i = 0; i < 5; i++) await pub.publish('devices/a/temp', bytes(`m${i}`)); // offsets 2..6; only 4..6 are kept
  const c = await NativeClient.connect(broker.url);
  const { epoch } = ackResult(await c.subscribeRaw(['logs/x']));
  await c.expect((f) => f.op === Op.snapshotEnd);

  const beyond = await subscribe(c, ['devices/a/temp'], { resume: { epoch: epoch!, offset: 2 } });
  assert.deepEqual({ ...beyond.ack }, { retained: 1, replayed: 0, epoch, offset: 6, recovered: false });
  assert.deepEqual(beyond.between.map((d) => [d.topic, text(d.payload), d.flags, d.offset]), [['devices/a/temp', 'r', Flag.retain, undefined]], 'the retained snapshot, without an offset');

  const inside = await subscribe(c, ['devices/a/temp'], { resume: { epoch: epoch!, offset: 3 } });
  assert.equal(inside.ack.recovered, true);
  assert.deepEqual(inside.between.map(show), ['4:devices/a/temp=m2 (replayed)', '5:devices/a/temp=m3 (replayed)', '6:devices/a/temp=m4 (replayed)']);

  const otherEpoch = await subscribe(c, ['devices/a/temp'], { resume: { epoch: 'not-this-one', offset: 5 } });
  assert.equal(otherEpoch.ack.recovered, false);
  assert.equal(otherEpoch.ack.retained, 1);

  const uncovered = await subscribe(c, ['#'], { resume: { epoch: epoch!, offset: 5 }, retained: false });
  assert.deepEqual({ ...uncovered.ack }, { retained: 0, replayed: 0, epoch, offset: 6, recovered: false });
  assert.deepEqual(uncovered.between, []);
  assert.equal((await scrapeMetrics(broker.httpUrl)).get('topicast_history_resumes_refused_total'), 3);
});

test('the epoch changes when history is lost (a restart without --data); without historyFilters ACKs carry no position', async () => {
  const one = await startBroker({ args: HISTORY_ARGS, mqttOff: true });
  const c1 = await NativeClient.connect(one.url);
  const e1 = ackResult(await c1.subscribeRaw(['devices/#'])).epoch!;
  await c1.publish('devices/a/temp', bytes('1'));
  await c1.expect((f) => f.op === Op.delivery);
  await one.stop();
  const two = await startBroker({ args: HISTORY_ARGS, mqttOff: true });
  const c2 = await NativeClient.connect(two.url);
  const resumed = ackResult(await c2.subscribeRaw(['devices/#'], { resume: { epoch: e1, offset: 1 } }));
  assert.notEqual(resumed.epoch, e1);
  assert.match(resumed.epoch!, /^[0-9a-z]{12}$/);
  assert.equal(resumed.recovered, false);
  assert.equal(resumed.offset, 0);

  const plain = await startBroker({ args: ['--sys-interval-sec', '0'], mqttOff: true });
  const c3 = await NativeClient.connect(plain.url);
  const r3 = ackResult(await c3.subscribeRaw(['devices/#'], { resume: { epoch: e1, offset: 1 } }));
  assert.deepEqual({ ...r3 }, { retained: 0, replayed: 0, recovered: false });
  await c3.publish('devices/a/temp', bytes('1'));
  const d = await c3.expect((f) => f.op === Op.delivery) as Delivery;
  assert.equal(d.offset, undefined);
});

test('a replay withholds topics the client may not read (a subscription that only overlaps a deny rule)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'topicast-history-auth-'));
  after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({
    tokens: [
      { token: 'writer-token-value', sub: 'writer', publish: ['devices/#'], subscribe: [] },
      { token: 'reader-token-value', sub: 'reader', subscribe: ['devices/#'], denySubscribe: ['devices/+/secret'] },
    ],
  }));
  const broker = await startBroker({ args: [...HISTORY_ARGS, '--auth-token-file', join(dir, 'tokens.json')], mqttOff: true });
  const as = (token: string) => NativeClient.connect(broker.url, { protocols: [SUBPROTOCOL, `topicast.token.${Buffer.from(token).toString('base64url')}`] });
  const writer = await as('writer-token-value');
  const reader = await as('reader-token-value');
  const { epoch } = ackResult(await reader.subscribeRaw(['devices/#']));
  reader.terminate();
  await writer.publish('devices/a/temp', bytes('t1'));
  await writer.publish('devices/a/secret', bytes('s1'));
  await writer.publish('devices/b/temp', bytes('t2'));
  const back = await as('reader-token-value');
  const r = await subscribe(back, ['devices/#'], { resume: { epoch: epoch!, offset: 0 } });
  assert.equal(r.ack.recovered, true);
  assert.equal(r.ack.replayed, 2);
  assert.deepEqual(r.between.map(show), ['1:devices/a/temp=t1 (replayed)', '3:devices/b/temp=t2 (replayed)']);
  assert.equal((await scrapeMetrics(broker.httpUrl)).get('topicast_auth_withheld_total'), 1);
});
