/**
 * The native protocol against the real broker process with raw `ws` frames:
 * subscribe / publish / unsubscribe, every wildcard case, the `$` rule, retained
 * values (set, replace, delete, snapshot order and count), at-most-once per
 * connection, wills, $SYS topics and the subprotocol check at the upgrade.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { ErrorCode, Flag, Op, SUBPROTOCOL } from 'topicast/protocol';
import { startBroker } from '../helpers/broker.js';
import { bytes, isDelivery, NativeClient, sleep, text, type Delivery } from '../helpers/native-client.js';

const broker = await startBroker({ args: ['--sys-interval-sec', '1'], mqttOff: true });
const connect = (): Promise<NativeClient> => NativeClient.connect(broker.url);

/** Topics delivered to `c` after the frames already seen, once `marker` arrived (publisher's order is kept). */
async function topicsUntilMarker(c: NativeClient, marker: string): Promise<string[]> {
  await c.expect(isDelivery(marker), 5000, `marker ${marker}`);
  const i = c.frames.findIndex((f) => f.op === Op.delivery && f.topic === marker);
  return c.frames.slice(0, i).filter((f): f is Delivery => f.op === Op.delivery && !f.topic.startsWith('$')).map((f) => f.topic);
}

test('WELCOME announces the protocol version and limits', async () => {
  const c = await connect();
  assert.equal(c.ws.protocol, SUBPROTOCOL);
  assert.equal(c.welcome?.version, 1);
  assert.match(c.welcome?.server ?? '', /^topicast\//);
  assert.equal(c.welcome?.maxPayloadBytes, 256 * 1024);
  assert.equal(c.welcome?.idleTimeoutSec, 120);
  await c.close();
});

test('subscribe, publish, unsubscribe: bytes unchanged, nothing after the unsubscribe ACK', async () => {
  const sub = await connect();
  const pub = await connect();
  const s = await sub.subscribe(['ps/basic']);
  assert.equal(s.count, 0);
  const payload = new Uint8Array([0, 1, 2, 255, 254, 0x92, 0xc1]);
  const ack = await pub.publish('ps/basic', payload);
  assert.equal(ack?.op, Op.ack);
  const d = await sub.expect(isDelivery('ps/basic'));
  assert.deepEqual([...d.payload], [...payload]);
  assert.equal(d.flags, 0);

  // Order per publisher and topic.
  for (let i = 0; i < 50; i++) await pub.publish('ps/basic', bytes(String(i)), { ack: false });
  await pub.ping();
  for (let i = 0; i < 50; i++) assert.equal(text((await sub.expect(isDelivery('ps/basic'))).payload), String(i));

  // An empty payload is a message like any other when not retained.
  await pub.publish('ps/basic', new Uint8Array(0));
  assert.equal((await sub.expect(isDelivery('ps/basic'))).payload.length, 0);

  await sub.unsubscribe(['ps/basic']);
  await pub.publish('ps/basic', bytes('after'));
  // A second subscriber that still holds the filter proves the message was routed.
  const witness = await connect();
  await witness.subscribe(['ps/basic']);
  await pub.publish('ps/basic', bytes('after2'));
  await witness.expect(isDelivery('ps/basic'));
  await sub.ping();
  assert.equal(sub.deliveries('ps/basic').length, 52, 'no delivery after UNSUBSCRIBE was acknowledged');
  // Unknown filters are ignored but acknowledged.
  await sub.unsubscribe(['never/subscribed']);
  await Promise.all([sub.close(), pub.close(), witness.close()]);
});

test('subscribing again to a held filter is not an error and does not duplicate deliveries', async () => {
  const sub = await connect();
  await sub.subscribe(['ps/again']);
  await sub.subscribe(['ps/again']);
  await sub.publish('ps/again', bytes('x'));
  await sub.publish('ps/again/end', bytes('end'));
  await sub.ping();
  await sleep(50);
  assert.equal(sub.deliveries('ps/again').length, 1);
  await sub.close();
});

test('filters taken and left one at a time (one held, a second, the first left and taken again, all left): each delivers once while held, never after', async () => {
  // The session keeps a lone filter apart from a set of several (memory per idle connection):
  // every transition between the two must keep the router and the session in step.
  const c = await connect();
  const p = await connect();
  const round = async (marker: string): Promise<string[]> => {
    for (const t of ['one/a', 'one/b', 'one/c']) await p.publish(t, bytes(marker), { ack: false });
    await p.publish(`one/end/${marker}`, bytes(marker)); // acknowledged: everything before it was routed
    await c.ping();
    return c.frames.filter((f): f is Delivery => f.op === Op.delivery && text(f.payload) === marker && !f.topic.startsWith('one/end')).map((f) => f.topic).sort();
  };
  await c.subscribe(['one/a']);
  assert.deepEqual(await round('1'), ['one/a'], 'the lone filter');
  await c.subscribe(['one/b']);
  assert.deepEqual(await round('2'), ['one/a', 'one/b'], 'a second filter');
  await c.unsubscribe(['one/c']); // never held: nothing changes
  await c.unsubscribe(['one/a']);
  assert.deepEqual(await round('3'), ['one/b'], 'the first left');
  await c.subscribe(['one/a', 'one/b']);
  assert.deepEqual(await round('4'), ['one/a', 'one/b'], 'the first taken again, the second again (held: once)');
  await c.unsubscribe(['one/a', 'one/b']);
  assert.deepEqual(await round('5'), [], 'all left');
  await c.subscribe(['one/c']);
  assert.deepEqual(await round('6'), ['one/c'], 'a filter after all were left');
  await Promise.all([c.close(), p.close()]);
});

test('every wildcard case matches exactly as MQTT says', async () => {
  const cases: { filter: string; match: string[]; miss: string[] }[] = [
    { filter: 'wc/+', match: ['wc/a', 'wc/'], miss: ['wc', 'wc/a/b', 'wcx/a'] },
    { filter: 'wc/#', match: ['wc', 'wc/a', 'wc/a/b/c', 'wc/'], miss: ['wcx', 'x/wc'] },
    { filter: 'wc/+/z', match: ['wc/a/z', 'wc//z'], miss: ['wc/a/b/z', 'wc/z', 'wc/a/zz'] },
    { filter: 'wc/+/+', match: ['wc/a/b', 'wc//'], miss: ['wc/a', 'wc/a/b/c'] },
    { filter: 'wc/+/#', match: ['wc/a', 'wc/a/b', 'wc//'], miss: ['wc'] },
    { filter: '+/+', match: ['/x', 'wc/a', '/'], miss: ['wc', 'wc/a/b'] },
    { filter: '/+', match: ['/x', '/'], miss: ['x/x', '//x'] },
    { filter: 'wc/exact', match: ['wc/exact'], miss: ['wc/exac', 'wc/exact/', 'wc/exactly', 'WC/exact'] },
  ];
  const all = [...new Set(cases.flatMap((c) => [...c.match, ...c.miss]))];
  const pub = await connect();
  for (const c of cases) {
    const sub = await connect();
    await sub.subscribe([c.filter, 'wc-marker']);
    for (const t of all) await pub.publish(t, bytes(t), { ack: false });
    // One publisher, one connection: everything above is routed before the marker.
    await pub.publish('wc-marker', bytes('m'), { ack: false });
    const got = await topicsUntilMarker(sub, 'wc-marker');
    for (const t of c.match) assert.ok(got.includes(t), `${c.filter} must match ${JSON.stringify(t)}; got ${JSON.stringify(got)}`);
    for (const t of c.miss) assert.ok(!got.includes(t), `${c.filter} must not match ${JSON.stringify(t)}`);
    assert.equal(got.length, new Set(got).size, 'each message once');
    await sub.close();
  }
  await pub.close();
});

test('a lone # receives every non-$ topic', async () => {
  const sub = await connect();
  await sub.subscribe(['#'], { retained: false });
  const pub = await connect();
  for (const t of ['hash/a', '/lead', 'hash/a/b/c/d/e']) await pub.publish(t, bytes('x'), { ack: false });
  await pub.publish('hash/end', bytes('end'));
  const got = await topicsUntilMarker(sub, 'hash/end');
  for (const t of ['hash/a', '/lead', 'hash/a/b/c/d/e']) assert.ok(got.includes(t), t);
  await Promise.all([sub.close(), pub.close()]);
});

test('$ topics: not matched by # or +/..., matched by $SYS/# and explicit $ filters', async () => {
  const hash = await connect();
  const plus = await connect();
  const sys = await connect();
  const dollar = await connect();
  await hash.subscribe(['#'], { retained: false });
  await plus.subscribe(['+/broker/#', '+/x', '+'], { retained: false });
  const s = await sys.subscribe(['$SYS/#']);
  await dollar.subscribe(['$app/+']);
  // The broker's own $SYS values are retained and already there.
  assert.ok(s.count > 0 && s.retained.some((d) => d.topic === '$SYS/broker/version'), 'retained $SYS/broker/version');
  const pub = await connect();
  await pub.publish('$app/x', bytes('1'));
  await dollar.expect(isDelivery('$app/x'));
  // $SYS figures are refreshed every second: wait for a live (non-retained) one to be routed.
  await sys.expect(isDelivery('$SYS/broker/uptime', undefined, 0), 4000, 'a live $SYS/broker/uptime');
  await pub.publish('dollar/end', bytes('end'));
  await hash.expect(isDelivery('dollar/end'));
  await Promise.all([hash.ping(), plus.ping()]);
  assert.deepEqual(hash.deliveries().filter((d) => d.topic.startsWith('$')).map((d) => d.topic), []);
  assert.deepEqual(plus.deliveries().filter((d) => d.topic.startsWith('$')).map((d) => d.topic), []);
  await Promise.all([hash, plus, sys, dollar, pub].map((c) => c.close()));
});

test('$SYS/broker/... figures appear and move', async () => {
  const c = await connect();
  const s = await c.subscribe(['$SYS/broker/#']);
  const topics = new Set(s.retained.map((d) => d.topic));
  for (const t of ['$SYS/broker/version', '$SYS/broker/uptime', '$SYS/broker/clients/connected', '$SYS/broker/messages/received', '$SYS/broker/bytes/sent', '$SYS/broker/retained/count']) {
    assert.ok(topics.has(t), `${t} in ${[...topics].join(', ')}`);
  }
  const uptime0 = Number(text(s.retained.find((d) => d.topic === '$SYS/broker/uptime')!.payload));
  const live = await c.expect(isDelivery('$SYS/broker/uptime', undefined, 0), 4000, 'live uptime');
  assert.ok(Number(text(live.payload)) > uptime0 || uptime0 === 0, 'uptime moves');
  const connected = Number(text(s.retained.find((d) => d.topic === '$SYS/broker/clients/connected')!.payload));
  assert.ok(Number.isInteger(connected) && connected >= 0);
  await c.close();
});

test('retained: set, replace, delete with an empty payload; ACK count equals deliveries; SNAPSHOT_END after them', async () => {
  const pub = await connect();
  await pub.publish('ret/a', bytes('a1'), { retain: true });
  await pub.publish('ret/b', bytes('b1'), { retain: true });
  await pub.publish('ret/c', bytes('c1'), { retain: true });
  await pub.publish('ret/a', bytes('a2'), { retain: true }); // replace
  await pub.publish('ret/c', new Uint8Array(0), { retain: true }); // delete
  await pub.publish('ret/d', bytes('not retained')); // never stored

  const sub = await connect();
  const id = sub.id();
  sub.send({ op: Op.subscribe, id, filters: ['ret/+'], options: {} });
  const ack = await sub.answer(id);
  assert.equal(ack.op, Op.ack);
  await sub.expect((f) => f.op === Op.snapshotEnd && f.id === id);
  // Exact frame sequence after WELCOME: ACK{retained:2}, two retained deliveries, SNAPSHOT_END.
  const seq = sub.frames.slice(1);
  assert.equal(seq.length, 4, JSON.stringify(seq.map((f) => f.op)));
  assert.deepEqual(seq[0], { op: Op.ack, id, result: { retained: 2 } });
  assert.deepEqual(seq[3], { op: Op.snapshotEnd, id });
  const ds = seq.slice(1, 3) as Delivery[];
  assert.deepEqual(ds.map((d) => [d.topic, text(d.payload), d.flags]).sort(), [['ret/a', 'a2', Flag.retain], ['ret/b', 'b1', Flag.retain]]);

  // {retained: false}: no snapshot, count 0, SNAPSHOT_END still sent.
  const quiet = await connect();
  const q = await quiet.subscribe(['ret/+'], { retained: false });
  assert.equal(q.count, 0);
  assert.equal(q.retained.length, 0);

  // A live publish on a retained topic is flagged live; a later subscriber sees the new value retained.
  await pub.publish('ret/b', bytes('b2'), { retain: true });
  const live = await sub.expect(isDelivery('ret/b', 'b2'));
  assert.equal(live.flags, 0, 'live delivery is not flagged retained');
  const late = await connect();
  const l = await late.subscribe(['ret/#']);
  assert.deepEqual(l.retained.map((d) => [d.topic, text(d.payload)]).sort(), [['ret/a', 'a2'], ['ret/b', 'b2']]);
  assert.equal(l.count, 2);
  // Deleting a topic that does not exist is harmless; deleting twice too.
  await pub.publish('ret/zzz', new Uint8Array(0), { retain: true });
  await pub.publish('ret/a', new Uint8Array(0), { retain: true });
  await pub.publish('ret/a', new Uint8Array(0), { retain: true });
  const last = await connect();
  const z = await last.subscribe(['ret/#']);
  assert.deepEqual(z.retained.map((d) => d.topic), ['ret/b']);
  await Promise.all([pub, sub, quiet, late, last].map((c) => c.close()));
});

test('retained values arrive before live messages published right after the SUBSCRIBE', async () => {
  const pub = await connect();
  for (let i = 0; i < 200; i++) await pub.publish(`order/${i}`, bytes(`r${i}`), { retain: true, ack: false });
  await pub.ping();
  const sub = await connect();
  const id = sub.id();
  sub.send({ op: Op.subscribe, id, filters: ['order/#'], options: {} });
  // Published on the same connection right behind the SUBSCRIBE, so surely after it and while
  // the snapshot is still queued: these must come after SNAPSHOT_END.
  for (let i = 0; i < 20; i++) await sub.publish(`order/${i}`, bytes(`live${i}`), { ack: false });
  await sub.expect((f) => f.op === Op.snapshotEnd && f.id === id);
  for (let i = 0; i < 20; i++) await sub.expect(isDelivery(`order/${i}`, `live${i}`));
  const end = sub.frames.findIndex((f) => f.op === Op.snapshotEnd);
  const ack = sub.frames.find((f) => f.op === Op.ack && f.id === id);
  assert.deepEqual(ack, { op: Op.ack, id, result: { retained: 200 } });
  const before = sub.frames.slice(0, end).filter((f): f is Delivery => f.op === Op.delivery);
  const after = sub.frames.slice(end + 1).filter((f): f is Delivery => f.op === Op.delivery);
  assert.equal(before.length, 200);
  assert.ok(before.every((d) => d.flags === Flag.retain && text(d.payload).startsWith('r')));
  assert.equal(after.length, 20);
  assert.ok(after.every((d) => d.flags === 0 && text(d.payload).startsWith('live')));
  await Promise.all([pub.close(), sub.close()]);
});

test('overlapping filters deliver once, live and retained; one SUBSCRIBE with overlapping filters counts each topic once', async () => {
  const pub = await connect();
  await pub.publish('ov/a/b', bytes('r'), { retain: true });
  const sub = await connect();
  const s = await sub.subscribe(['ov/#', 'ov/+/b', 'ov/a/b', '+/a/b']);
  assert.equal(s.count, 1);
  assert.equal(s.retained.length, 1);
  // A second SUBSCRIBE overlapping the first still gets its own snapshot (once per topic).
  const s2 = await sub.subscribe(['ov/a/+', 'ov/+/+']);
  assert.equal(s2.count, 1);
  await pub.publish('ov/a/b', bytes('live'));
  await pub.publish('ov/end', bytes('end'));
  await sub.expect(isDelivery('ov/end'));
  assert.equal(sub.deliveries('ov/a/b').filter((d) => d.flags === 0).length, 1, 'one live delivery for four matching filters');
  // After removing some of the filters the rest still deliver, once.
  await sub.unsubscribe(['ov/#', 'ov/a/b']);
  await pub.publish('ov/a/b', bytes('live2'));
  await pub.publish('ov/a/end', bytes('end'));
  await sub.expect(isDelivery('ov/a/end'));
  assert.equal(sub.deliveries('ov/a/b').filter((d) => text(d.payload) === 'live2').length, 1);
  await Promise.all([pub.close(), sub.close()]);
});

test('will: published on an abrupt close, not on a clean close, replaced and cleared by later WILL frames', async () => {
  const watcher = await connect();
  await watcher.subscribe(['will/#']);

  const abrupt = await connect();
  await abrupt.setWill('will/abrupt', bytes('offline'), true);
  abrupt.terminate();
  const d = await watcher.expect(isDelivery('will/abrupt'));
  assert.equal(text(d.payload), 'offline');
  const late = await connect();
  const l = await late.subscribe(['will/abrupt']);
  assert.deepEqual(l.retained.map((x) => text(x.payload)), ['offline'], 'a retained will is stored');

  const clean = await connect();
  await clean.setWill('will/clean', bytes('offline'));
  await clean.close(1000);
  const going = await connect();
  await going.setWill('will/going', bytes('offline'));
  await going.close(1001);
  const cleared = await connect();
  await cleared.setWill('will/cleared', bytes('offline'));
  const id = cleared.id();
  cleared.send({ op: Op.will, id, will: null });
  assert.equal((await cleared.answer(id)).op, Op.ack);
  cleared.terminate();
  const replaced = await connect();
  await replaced.setWill('will/old', bytes('old'));
  await replaced.setWill('will/new', bytes('new'));
  replaced.terminate();
  await watcher.expect(isDelivery('will/new'));

  // A broker-side close for a protocol error is not clean either.
  const bad = await connect();
  await bad.setWill('will/protocol-error', bytes('offline'));
  bad.send(new Uint8Array([0xc1]));
  assert.equal((await bad.closed).code, 1002);
  await watcher.expect(isDelivery('will/protocol-error'));

  const probe = await connect();
  await probe.publish('will/end', bytes('end'));
  await watcher.expect(isDelivery('will/end'));
  const topics = watcher.deliveries().map((x) => x.topic);
  for (const t of ['will/clean', 'will/going', 'will/cleared', 'will/old']) assert.ok(!topics.includes(t), `${t} must not be published`);

  // An invalid will is refused and the connection stays open.
  const id2 = probe.id();
  probe.send({ op: Op.will, id: id2, will: { topic: 'will/+', payload: bytes('x'), retain: false } });
  const e = await probe.answer(id2);
  assert.equal(e.op, Op.error);
  assert.equal(e.op === Op.error && e.code, ErrorCode.invalidTopic);
  await probe.ping();
  await Promise.all([watcher, late, probe].map((c) => c.close()));
});

test('invalid topics and filters get ERROR with the right code and the connection stays open', async () => {
  const c = await connect();
  for (const f of ['a/#/b', 'a/b#', 'a+/b', '', 'a/\u0000']) {
    const r = await c.subscribeRaw([f]);
    assert.equal(r.op, Op.error, JSON.stringify(f));
    assert.equal(r.op === Op.error && r.code, ErrorCode.invalidFilter, JSON.stringify(f));
  }
  // Atomic: one bad filter and nothing is subscribed.
  const r = await c.subscribeRaw(['atomic/ok', 'atomic/#/bad']);
  assert.equal(r.op, Op.error);
  await c.publish('atomic/ok', bytes('x'));
  for (const t of ['a/+', 'a/#', '', 'a\u0000b']) {
    const p = await c.publish(t, bytes('x'));
    assert.equal(p?.op, Op.error, JSON.stringify(t));
    assert.equal(p?.op === Op.error && p.code, ErrorCode.invalidTopic, JSON.stringify(t));
  }
  await c.ping();
  assert.equal(c.deliveries('atomic/ok').length, 0, 'a refused SUBSCRIBE subscribed nothing');
  assert.ok(c.isOpen);
  await c.close();
});

test('PING gets PONG with the same id', async () => {
  const c = await connect();
  c.send({ op: Op.ping, id: 0xffffffff });
  const p = await c.expect((f) => f.op === Op.pong);
  assert.deepEqual(p, { op: Op.pong, id: 0xffffffff });
  await c.close();
});

test('upgrade without the topicast.v1 subprotocol is refused with HTTP 400', async () => {
  for (const protocols of [[], ['mqtt'], ['topicast.v2'], ['Topicast.v1']]) {
    await assert.rejects(NativeClient.connect(broker.url, { protocols }), (err: Error & { status?: number }) => {
      assert.equal(err.status, 400, `${JSON.stringify(protocols)}: ${err.message}`);
      return true;
    });
  }
  // Plain ws with the wrong subprotocol: an error event, never an open socket.
  const ws = new WebSocket(broker.url, 'mqtt');
  const err = await new Promise<Error>((resolve) => {
    ws.on('open', () => resolve(new Error('opened')));
    ws.on('error', resolve);
  });
  assert.match(err.message, /400/);
  // Offering several, one of them ours: accepted, ours chosen.
  const ok = await NativeClient.connect(broker.url, { protocols: ['foo', SUBPROTOCOL] });
  assert.equal(ok.ws.protocol, SUBPROTOCOL);
  await ok.close();
});

test('retained snapshots follow the $ rule too: # and +/... snapshots hold no $ topics', async () => {
  const pub = await connect();
  await pub.publish('$app/retained', bytes('r'), { retain: true });
  await pub.publish('snapdollar/x', bytes('r'), { retain: true });
  const c = await connect();
  const hash = await c.subscribe(['#']);
  assert.deepEqual(hash.retained.filter((d) => d.topic.startsWith('$')).map((d) => d.topic), [], '# snapshot');
  assert.ok(hash.retained.some((d) => d.topic === 'snapdollar/x'));
  const c2 = await connect();
  const plus = await c2.subscribe(['+/retained', '+/broker/#', '+/+/+']);
  assert.deepEqual(plus.retained.filter((d) => d.topic.startsWith('$')).map((d) => d.topic), [], '+/... snapshot');
  const c3 = await connect();
  const explicit = await c3.subscribe(['$app/#']);
  assert.deepEqual(explicit.retained.map((d) => d.topic), ['$app/retained']);
  await pub.publish('$app/retained', new Uint8Array(0), { retain: true });
  await Promise.all([pub, c, c2, c3].map((x) => x.close()));
});

test('the same filter twice in one SUBSCRIBE counts once and one UNSUBSCRIBE removes it', async () => {
  const c = await connect();
  const s = await c.subscribe(['dupf/a', 'dupf/a', 'dupf/+', 'dupf/+']);
  assert.equal(s.count, 0);
  const p = await connect();
  await p.publish('dupf/a', bytes('1'));
  await c.expect(isDelivery('dupf/a', '1'));
  await c.unsubscribe(['dupf/a', 'dupf/+']);
  await p.publish('dupf/a', bytes('2'));
  await p.publish('dupf-end', bytes('e'));
  const w = await connect();
  await w.subscribe(['dupf/a']);
  await p.publish('dupf/a', bytes('3'));
  await w.expect(isDelivery('dupf/a', '3'));
  await c.ping();
  assert.deepEqual(c.deliveries('dupf/a').map((d) => text(d.payload)), ['1'], 'nothing after the UNSUBSCRIBE');
  await Promise.all([c, p, w].map((x) => x.close()));
});

test('clients cannot publish into $SYS/..., the broker\'s own: the figures are never spoofed', async () => {
  const watcher = await connect();
  await watcher.subscribe(['$SYS/broker/version']);
  const c = await connect();
  const answer = await c.publish('$SYS/broker/version', bytes('spoofed'), { retain: true });
  await c.publish('$SYS/broker/version', bytes('spoofed-live'), { ack: false });
  await c.ping();
  await watcher.ping();
  assert.deepEqual(watcher.deliveries('$SYS/broker/version').filter((d) => text(d.payload).startsWith('spoofed')).map((d) => text(d.payload)), [], 'no spoofed delivery');
  const late = await connect();
  const s = await late.subscribe(['$SYS/broker/version']);
  assert.match(text(s.retained[0]!.payload), /^topicast /, 'the retained figure is the broker\'s');
  assert.equal(answer?.op, Op.error, `the publish is refused: ${JSON.stringify(answer)}`);
  assert.equal(answer?.op === Op.error && answer.code, ErrorCode.notAuthorized);
  // Nor through a will, nor over HTTP.
  const id = c.id();
  c.send({ op: Op.will, id, will: { topic: '$SYS/broker/version', payload: bytes('spoofed-will'), retain: true } });
  const w = await c.answer(id);
  assert.equal(w.op === Op.error && w.code, ErrorCode.notAuthorized, `will refused: ${JSON.stringify(w)}`);
  const http = await fetch(`${broker.httpUrl}/api/publish/$SYS/broker/version?retain=1`, { method: 'POST', body: 'spoofed-http' });
  assert.equal(http.status, 403);
  c.terminate();
  // Other $-topics are the clients' to use.
  const other = await connect();
  assert.equal((await other.publish('$app/ok', bytes('x')))?.op, Op.ack);
  await watcher.ping();
  assert.deepEqual(watcher.deliveries('$SYS/broker/version').filter((d) => text(d.payload).startsWith('spoofed')).map((d) => text(d.payload)), []);
  await Promise.all([watcher, late, other].map((x) => x.close()));
});

test('UNSUBSCRIBE right behind a SUBSCRIBE: the snapshot completes, then the ACK, then nothing', async () => {
  const pub = await connect();
  for (let i = 0; i < 50; i++) await pub.publish(`unsnap/${i}`, bytes('r'), { retain: true, ack: false });
  await pub.ping();
  const c = await connect();
  c.send({ op: Op.subscribe, id: 1, filters: ['unsnap/#'], options: {} });
  c.send({ op: Op.unsubscribe, id: 2, filters: ['unsnap/#'] });
  await c.answer(2);
  await pub.publish('unsnap/0', bytes('live'));
  await c.ping();
  const ops = c.frames.slice(1).map((f) => f.op);
  assert.deepEqual(ops, [Op.ack, ...Array(50).fill(Op.delivery), Op.snapshotEnd, Op.ack, Op.pong]);
  await Promise.all([pub.close(), c.close()]);
});

test('fan-out: 50 subscribers each get all 2,000 messages of one publisher, in order per topic, bytes unchanged', async () => {
  const SUBS = 50;
  const N = 2000;
  const state = Array.from({ length: SUBS }, () => ({ count: 0, bad: 0, last: new Map<string, number>() }));
  const subs = await Promise.all(state.map((st) => NativeClient.connect(broker.url, {
    record: false,
    onFrame(f) {
      if (f.op !== Op.delivery || !f.topic.startsWith('fan/')) return;
      st.count++;
      const [seq, check] = text(f.payload).split(':');
      if (check !== String(Number(seq) * 7919 % 10007)) st.bad++;
      if ((st.last.get(f.topic) ?? -1) >= Number(seq)) st.bad++;
      st.last.set(f.topic, Number(seq));
    },
  })));
  await Promise.all(subs.map(async (s) => {
    const id = s.id();
    s.send({ op: Op.subscribe, id, filters: ['fan/#', 'fan/+'], options: {} }); // overlapping: still once each
    await s.expect((f) => f.op === Op.snapshotEnd && f.id === id);
  }));
  const pub = await connect();
  for (let i = 0; i < N; i++) await pub.publish(`fan/t${i % 5}`, bytes(`${i}:${i * 7919 % 10007}`), { ack: i % 100 === 99 });
  const deadline = Date.now() + 20_000;
  while (state.some((st) => st.count < N) && Date.now() < deadline) await sleep(10);
  await sleep(50);
  for (const [i, st] of state.entries()) {
    assert.equal(st.count, N, `subscriber ${i} received every message once`);
    assert.equal(st.bad, 0, `subscriber ${i}: order and bytes`);
  }
  await Promise.all([pub, ...subs].map((c) => c.close()));
});
