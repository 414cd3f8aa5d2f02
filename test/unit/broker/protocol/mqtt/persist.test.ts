/**
 * Persistent MQTT sessions across a restart (protocol/mqtt/persist.ts, MQTT.md "Persistent sessions
 * across restarts"), in-process: the MQTT listener with a session store on a temporary directory.
 * A graceful restart closes the listener and the store and opens both again on the same directory;
 * a crash is a copy of the directory taken while the first broker still runs, after its writes were
 * acknowledged (exactly what `kill -9` leaves on disk: what was written and synced).
 */
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type mqttPacket from 'mqtt-packet';
import type * as PersistModule from '../../../../../broker/src/protocol/mqtt/persist.js';
import type * as LogModule from '../../../../../broker/src/store/append-log.js';
import { RawClient, startMqtt, type Harness } from './harness.js';

const dist = new URL('../../../../../../broker/dist/', import.meta.url);
const persist = (await import(new URL('protocol/mqtt/persist.js', dist).href)) as typeof PersistModule;
const { nodeAppendIo } = (await import(new URL('store/append-log.js', dist).href)) as typeof LogModule;
type Store = PersistModule.MqttSessionStore;

const work = mkdtempSync(join(tmpdir(), 'topicast-sessions-'));
after(() => rmSync(work, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (): string => join(work, `d${++dirs}`);

interface Durable {
  h: Harness;
  store: Store;
  dir: string;
  errors: Error[];
}

async function start(dir: string, args: string[] = [], options: LogModule.AppendLogOptions = {}): Promise<Durable> {
  const errors: Error[] = [];
  const store = await persist.openSessionStore(dir, { onError: (err) => errors.push(err), ...options });
  const h = await startMqtt(args, { sessionStore: store });
  return { h, store, dir, errors };
}

/** Graceful stop: every connection closed (their sessions detached and stored), then the store closed. */
async function stop(d: Durable): Promise<void> {
  await d.h.close();
  await until(() => d.h.protocol.server.connections.size === 0);
  await d.store.close();
}

async function restart(d: Durable, args: string[] = []): Promise<Durable> {
  await stop(d);
  return start(d.dir, args);
}

/** What a kill -9 right now would leave: the files as they are, opened by a new broker. */
async function crashCopy(d: Durable, args: string[] = []): Promise<Durable> {
  await d.store.synced();
  const copy = freshDir();
  cpSync(d.dir, copy, { recursive: true });
  return start(copy, args);
}

async function until(predicate: () => boolean): Promise<void> {
  for (let i = 0; i < 300 && !predicate(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(predicate());
}

const pub = (topic: string, payload: string, qos: 0 | 1 | 2, messageId?: number): mqttPacket.IPublishPacket =>
  ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, dup: false, retain: false, messageId });

/** A connected client with its subscriptions acknowledged. */
async function subscribed(port: number, connect: Partial<mqttPacket.IConnectPacket>, subscriptions: mqttPacket.ISubscription[], version: 4 | 5 = 4): Promise<RawClient> {
  const { client } = await RawClient.connect(port, connect, version);
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions });
  await client.next('suback');
  return client;
}

async function offline(d: Durable, clientId: string, connect: Partial<mqttPacket.IConnectPacket>, subscriptions: mqttPacket.ISubscription[], version: 4 | 5 = 4): Promise<void> {
  const client = await subscribed(d.h.port, { clientId, clean: false, ...connect }, subscriptions, version);
  client.send({ cmd: 'disconnect' });
  await client.closedPromise;
  await until(() => d.h.protocol.server.sessions.get(clientId)?.link === undefined);
}

async function publishAll(d: Durable, messages: mqttPacket.IPublishPacket[]): Promise<void> {
  const { client } = await RawClient.connect(d.h.port, { clientId: `pub-${Math.random()}` });
  for (const m of messages) {
    client.send(m);
    if (m.qos === 1) await client.next('puback');
    if (m.qos === 2) {
      await client.next('pubrec');
      client.send({ cmd: 'pubrel', messageId: m.messageId! });
      await client.next('pubcomp');
    }
  }
  client.destroy();
}

test('3.1.1 and MQTT 5 sessions: subscriptions with their options and queued QoS 1/2 messages survive a graceful restart', async () => {
  let d = await start(freshDir());
  await offline(d, 'v4', {}, [{ topic: 'a/+', qos: 1 }, { topic: 'b/#', qos: 2 }]);
  await offline(d, 'v5', { properties: { sessionExpiryInterval: 600 } }, [{ topic: 'a/+', qos: 2, nl: true, rap: true, rh: 2 }], 5);
  await publishAll(d, [pub('a/1', 'one', 1, 1), pub('b/x/y', 'two', 2, 2), pub('a/2', 'zero', 0), pub('a/3', 'three', 2, 3)]);
  d = await restart(d);

  const v4 = await RawClient.connect(d.h.port, { clientId: 'v4', clean: false });
  assert.equal(v4.connack.sessionPresent, true);
  const got4: string[] = [];
  for (let i = 0; i < 3; i++) {
    const p = await v4.client.next('publish');
    got4.push(`${p.topic}=${p.payload.toString()}@${p.qos}`);
    if (p.qos === 1) v4.client.send({ cmd: 'puback', messageId: p.messageId! });
  }
  assert.deepEqual(got4, ['a/1=one@1', 'b/x/y=two@2', 'a/3=three@1'], 'in order, at min(published, granted); QoS 0 was not queued');

  const v5 = await RawClient.connect(d.h.port, { clientId: 'v5', clean: false, properties: { sessionExpiryInterval: 600 } }, 5);
  assert.equal(v5.connack.sessionPresent, true);
  assert.deepEqual([(await v5.client.next('publish')).payload.toString(), (await v5.client.next('publish')).payload.toString()], ['one', 'three']);

  // Still subscribed without resubscribing, options included: No Local keeps v5's own publish away.
  v5.client.send(pub('a/live', 'own', 1, 9));
  await v5.client.next('puback');
  const live = await v4.client.next('publish');
  assert.equal(live.payload.toString(), 'own');
  assert.equal(await v5.client.none('publish', 100), true, 'No Local restored');
  const sessions = d.h.protocol.server.sessions;
  assert.deepEqual(sessions.get('v5')!.subscriptions.get('a/+')!.options, { qos: 2, noLocal: true, retainAsPublished: true, retainHandling: 2, subscriptionId: undefined });
  await stop(d);
});

test('after a crash: unacknowledged QoS 1 resent with DUP and the same packet id, QoS 2 past PUBREC resumes at PUBREL, acknowledged publishes are all there', async () => {
  const d = await start(freshDir());
  const a = await RawClient.connect(d.h.port, { clientId: 'dev', clean: false });
  a.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'r/#', qos: 2 }] });
  await a.client.next('suback');
  const { client } = await RawClient.connect(d.h.port, { clientId: 'feeder' });
  client.send(pub('r/1', 'q1', 1, 1));
  await client.next('puback');
  client.send(pub('r/2', 'q2', 2, 2));
  await client.next('pubrec');
  const m1 = await a.client.next('publish');
  const m2 = await a.client.next('publish');
  a.client.send({ cmd: 'pubrec', messageId: m2.messageId! });
  await a.client.next('pubrel');
  a.client.destroy();
  await until(() => d.h.protocol.server.sessions.get('dev')?.link === undefined);
  for (let i = 0; i < 50; i++) client.send(pub('r/q', `m${i}`, 1, 10 + i));
  for (let i = 0; i < 50; i++) await client.next('puback'); // every one acknowledged: durable in dev's queue

  const c = await crashCopy(d);
  const b = await RawClient.connect(c.h.port, { clientId: 'dev', clean: false });
  assert.equal(b.connack.sessionPresent, true);
  const again = await b.client.next('publish');
  assert.deepEqual([again.dup, again.messageId, again.payload.toString()], [true, m1.messageId, 'q1']); // [MQTT-4.4.0-1]
  assert.equal((await b.client.next('pubrel')).messageId, m2.messageId, 'PUBREL, not the PUBLISH again');
  const queued: string[] = [];
  for (let i = 0; i < 50; i++) {
    const p = await b.client.next('publish');
    queued.push(p.payload.toString());
    b.client.send({ cmd: 'puback', messageId: p.messageId! });
  }
  assert.deepEqual(queued, Array.from({ length: 50 }, (_, i) => `m${i}`));
  await stop(c);
  await stop(d);
});

test('incoming QoS 2 across a crash: a resent PUBLISH with a held packet id is acknowledged but not routed again; PUBREL completes', async () => {
  const d = await start(freshDir());
  const watcher = await subscribed(d.h.port, { clientId: 'watch', clean: false }, [{ topic: 'x', qos: 1 }]);
  const { client } = await RawClient.connect(d.h.port, { clientId: 'sender', clean: false });
  client.send(pub('x', 'once', 2, 7));
  await client.next('pubrec');
  const first = await watcher.next('publish');
  watcher.send({ cmd: 'puback', messageId: first.messageId! });
  await until(() => d.h.protocol.server.sessions.get('watch')!.inflight.size === 0);

  const c = await crashCopy(d);
  const { client: w2 } = await RawClient.connect(c.h.port, { clientId: 'watch', clean: false });
  const s2 = await RawClient.connect(c.h.port, { clientId: 'sender', clean: false });
  assert.equal(s2.connack.sessionPresent, true);
  s2.client.send({ ...pub('x', 'once', 2, 7), dup: true });
  assert.equal((await s2.client.next('pubrec')).messageId, 7);
  assert.equal(await w2.none('publish', 150), true, 'not delivered twice'); // [MQTT-4.3.3-10]
  s2.client.send({ cmd: 'pubrel', messageId: 7 });
  assert.equal((await s2.client.next('pubcomp')).messageId, 7);
  s2.client.send(pub('x', 'reused id', 2, 7)); // the id is free again
  await s2.client.next('pubrec');
  assert.equal((await w2.next('publish')).payload.toString(), 'reused id');
  await stop(c);
  await stop(d);
});

test('session expiry counts from the disconnect across a restart: an expired session is gone, a live one stays', async () => {
  let d = await start(freshDir());
  await offline(d, 'short', { properties: { sessionExpiryInterval: 1 } }, [{ topic: 's', qos: 1 }], 5);
  await offline(d, 'long', { properties: { sessionExpiryInterval: 3600 } }, [{ topic: 's', qos: 1 }], 5);
  await offline(d, 'v311', {}, [{ topic: 's', qos: 1 }]);
  await stop(d);
  await new Promise((r) => setTimeout(r, 1100));
  d = await start(d.dir);
  const { server } = d.h.protocol;
  assert.deepEqual([...server.sessions.keys()].sort(), ['long', 'v311']);
  assert.equal(server.stats.sessionsExpired, 1);
  const short = await RawClient.connect(d.h.port, { clientId: 'short', clean: false, properties: { sessionExpiryInterval: 1 } }, 5);
  assert.equal(short.connack.sessionPresent, false);
  await stop(d);
});

test('will delay across a restart: a will pending at shutdown is published when its delay runs out, not at once', async () => {
  let d = await start(freshDir());
  const w = await subscribed(d.h.port, { clientId: 'wt', clean: false }, [{ topic: 'wd/#', qos: 1 }]);
  w.destroy();
  const will = { topic: 'wd/dev', payload: Buffer.from('gone'), qos: 1 as const, retain: false, properties: { willDelayInterval: 1 } };
  const { client } = await RawClient.connect(d.h.port, { clientId: 'dev', clean: false, properties: { sessionExpiryInterval: 60 }, will }, 5);
  client.destroy(); // no DISCONNECT: the will waits for its delay
  await until(() => d.h.protocol.server.sessions.get('dev')?.link === undefined);
  d = await restart(d);
  assert.equal(d.h.ctx.counters.willsPublished, 0, 'not published at start-up: 1 s had not passed');
  await until(() => d.h.ctx.counters.willsPublished === 1);
  const back = await RawClient.connect(d.h.port, { clientId: 'wt', clean: false });
  assert.equal((await back.client.next('publish')).payload.toString(), 'gone', 'queued for the offline watcher');
  await stop(d);
});

test('torn tail of the session store: cut off on load, everything before it restored', async () => {
  let d = await start(freshDir());
  await offline(d, 'keep', {}, [{ topic: 't', qos: 1 }]);
  await publishAll(d, [pub('t', 'kept', 1, 1)]);
  await stop(d);
  const segment = readdirSync(d.dir).filter((n) => n.startsWith('log-')).sort().at(-1)!;
  appendFileSync(join(d.dir, segment), Buffer.from([200, 0, 0, 0, 1, 2, 3, 4, 5, 6])); // a record header promising 200 bytes, then the crash
  d = await start(d.dir);
  assert.ok(d.store.stats.truncatedBytes > 0);
  const b = await RawClient.connect(d.h.port, { clientId: 'keep', clean: false });
  assert.equal(b.connack.sessionPresent, true);
  assert.equal((await b.client.next('publish')).payload.toString(), 'kept');
  await stop(d);
});

test('disk full in the session store: reported (onError, metric, MQTT 5 PUBACK 0x83) and live traffic continues; writes resume once there is room', async () => {
  let full = false;
  const io: LogModule.AppendIo = {
    ...nodeAppendIo,
    write: (fd, buf, offset, length, position) => (full
      ? Promise.reject(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' }))
      : nodeAppendIo.write(fd, buf, offset, length, position)),
  };
  const d = await start(freshDir(), [], { io });
  await offline(d, 'away', {}, [{ topic: 'f', qos: 1 }]);
  const live = await subscribed(d.h.port, { clientId: 'live' }, [{ topic: 'f', qos: 1 }]); // clean: never stored
  const { client } = await RawClient.connect(d.h.port, { clientId: 'p' }, 5);

  full = true;
  client.send(pub('f', 'while full', 1, 1));
  const ack = await client.next('puback');
  assert.equal(ack.reasonCode, 0x83, 'not acknowledged as stored');
  assert.equal((await live.next('publish')).payload.toString(), 'while full', 'live delivery unaffected');
  assert.match(d.errors[0]!.message, /session store in .*: append failed: no space left on device \(ENOSPC\)/);
  assert.equal(d.h.ctx.metrics.value('topicast_mqtt_session_store_write_errors_total'), 1);

  client.send(pub('f', 'qos 2 while full', 2, 3));
  assert.equal((await client.next('pubrec')).reasonCode, 0x83, 'the exchange ends here: no PUBREL follows');
  await live.next('publish');

  full = false;
  client.send(pub('f', 'after', 1, 2));
  assert.equal((await client.next('puback')).reasonCode, 0);
  client.send(pub('f', 'id 3 again', 2, 3));
  assert.equal((await client.next('pubrec')).reasonCode, 0, 'the failed id was released, not held as a duplicate');
  assert.equal((await live.next('publish')).payload.toString(), 'after');
  assert.equal((await live.next('publish')).payload.toString(), 'id 3 again');
  const c = await crashCopy(d);
  const b = await RawClient.connect(c.h.port, { clientId: 'away', clean: false });
  assert.equal((await b.client.next('publish')).payload.toString(), 'after', 'the acknowledged ones are there; the failed ones never were acknowledged');
  await stop(c);
  await stop(d);
});

test('clean sessions, expiry-0 sessions and QoS 0 write nothing to the session store', async () => {
  const d = await start(freshDir());
  const before = d.store.writes;
  const clean = await subscribed(d.h.port, { clientId: 'c' }, [{ topic: 'z', qos: 1 }]);
  const v5 = await subscribed(d.h.port, { clientId: 'e0', clean: false }, [{ topic: 'z', qos: 1 }], 5); // expiry absent = 0
  await publishAll(d, [pub('z', 'a', 1, 1), pub('z', 'b', 2, 2)]);
  assert.equal(d.store.writes, before);
  await offline(d, 'p', {}, [{ topic: 'z', qos: 1 }]);
  const stored = d.store.writes;
  await publishAll(d, [pub('z', 'q0', 0)]);
  assert.equal(d.store.writes, stored, 'QoS 0 is not stored for an offline session');
  await stop(d);
});

test('compaction keeps exactly the live sessions and deliveries', async () => {
  let d = await start(freshDir(), [], { compactMinBytes: 4096 });
  await offline(d, 'k', {}, [{ topic: 'c/#', qos: 1 }]);
  const online = await subscribed(d.h.port, { clientId: 'on', clean: false }, [{ topic: 'c/#', qos: 1 }]);
  const messages = Array.from({ length: 300 }, (_, i) => pub(`c/${i % 7}`, `p${i}`.padEnd(64, '.'), 1, 1 + (i % 60000)));
  const acking = (async () => {
    for (let i = 0; i < 300; i++) online.send({ cmd: 'puback', messageId: (await online.next('publish')).messageId! });
  })();
  await publishAll(d, messages);
  await acking;
  await until(() => d.store.stats.compactions > 0);
  d = await restart(d, ['--mqtt-max-queued', '1000']);
  const b = await RawClient.connect(d.h.port, { clientId: 'k', clean: false });
  const got: string[] = [];
  for (let i = 0; i < 300; i++) {
    const p = await b.client.next('publish');
    got.push(p.payload.toString().replace(/\.+$/, ''));
    b.client.send({ cmd: 'puback', messageId: p.messageId! });
  }
  assert.deepEqual(got, messages.map((m) => String(m.payload).replace(/\.+$/, '')));
  assert.equal(d.h.protocol.server.sessions.get('on')!.inflight.size + d.h.protocol.server.sessions.get('on')!.queuedCount, 0, 'acknowledged deliveries are gone');
  await stop(d);
});

test('PUBACK and PUBREC wait until the message is durable in the persistent session queues it was added to; the others do not', async () => {
  let release: (() => void) | undefined;
  let gated = false;
  const io: LogModule.AppendIo = {
    ...nodeAppendIo,
    fdatasync: async (fd) => {
      if (gated) await new Promise<void>((r) => (release = r));
      return nodeAppendIo.fdatasync(fd);
    },
  };
  const d = await start(freshDir(), [], { io });
  await offline(d, 'slowdisk', {}, [{ topic: 'durable/#', qos: 2 }]);
  const { client } = await RawClient.connect(d.h.port, { clientId: 'p' });
  gated = true;
  client.send(pub('durable/1', 'x', 1, 1));
  client.send(pub('durable/2', 'y', 2, 2));
  client.send(pub('other', 'no persistent subscriber', 1, 3));
  const { client: another } = await RawClient.connect(d.h.port, { clientId: 'q' });
  another.send(pub('other', 'no persistent subscriber', 1, 4));
  assert.equal((await another.next('puback')).messageId, 4, 'no persistent subscriber: acknowledged without waiting');
  assert.equal(await client.none('puback', 150), true, 'no PUBACK while the fsync is pending');
  assert.equal(await client.none('pubrec', 0), true);
  gated = false;
  release!();
  assert.equal((await client.next('puback')).messageId, 1);
  assert.equal((await client.next('pubrec')).messageId, 2);
  assert.equal((await client.next('puback')).messageId, 3, 'in PUBLISH order [MQTT-4.6.0-2]');
  await stop(d);
});

test('limits lowered between restarts apply to restored sessions: mqttMaxQueued (overflow policy) and the session expiry cap', async () => {
  let d = await start(freshDir());
  await offline(d, 'many', { properties: { sessionExpiryInterval: 86400 } }, [{ topic: 'l', qos: 1 }], 5);
  await publishAll(d, Array.from({ length: 10 }, (_, i) => pub('l', String(i), 1, i + 1)));
  d = await restart(d, ['--mqtt-max-queued', '3', '--mqtt-max-session-expiry-sec', '60']);
  const session = d.h.protocol.server.sessions.get('many')!;
  assert.equal(session.expirySec, 60);
  assert.equal(d.h.protocol.server.stats.queueDropped, 7);
  const b = await RawClient.connect(d.h.port, { clientId: 'many', clean: false, properties: { sessionExpiryInterval: 60 } }, 5);
  const got: string[] = [];
  for (let i = 0; i < 3; i++) got.push((await b.client.next('publish')).payload.toString());
  assert.deepEqual(got, ['7', '8', '9'], 'drop-oldest keeps the newest');
  assert.equal(await b.client.none('publish', 100), true);
  await stop(d);
});

test('no compaction before the loaded sessions are rebuilt: a store opened early keeps everything', async () => {
  let d = await start(freshDir()); // no compaction yet: everything is in the log
  await offline(d, 'early', {}, [{ topic: 'e', qos: 1 }]);
  await publishAll(d, Array.from({ length: 40 }, (_, i) => pub('e', `m${i}`.padEnd(100, '.'), 1, i + 1)));
  await stop(d);
  const store = await persist.openSessionStore(d.dir, { compactMinBytes: 1024 }); // the log is over this threshold, no snapshot yet
  await new Promise((r) => setTimeout(r, 100)); // the broker opens other stores meanwhile
  assert.equal(store.stats.compactions + store.stats.compactionErrors, 0, 'waits for the sessions to be rebuilt');
  d = { h: await startMqtt([], { sessionStore: store }), store, dir: d.dir, errors: [] };
  const b = await RawClient.connect(d.h.port, { clientId: 'early', clean: false });
  assert.equal(b.connack.sessionPresent, true);
  for (let i = 0; i < 40; i++) {
    const p = await b.client.next('publish');
    assert.equal(p.payload.toString().replace(/\.+$/, ''), `m${i}`);
    b.client.send({ cmd: 'puback', messageId: p.messageId! });
  }
  await until(() => store.stats.compactions > 0); // and compacts once they are
  await stop(d);
});

test('wills of persistent sessions connected at a crash: due at once without a delay; with a delay, not published if the client returns in time', async () => {
  const d = await start(freshDir());
  const will = (topic: string, delay?: number) => ({ topic, payload: Buffer.from('lost'), qos: 1 as const, retain: true, properties: delay === undefined ? undefined : { willDelayInterval: delay } });
  await RawClient.connect(d.h.port, { clientId: 'now', clean: false, will: will('wills/now') });
  await RawClient.connect(d.h.port, { clientId: 'later', clean: false, properties: { sessionExpiryInterval: 60 }, will: will('wills/later', 1) }, 5);
  const c = await crashCopy(d); // both still connected when the broker died
  await until(() => c.h.ctx.counters.willsPublished === 1);
  assert.equal(c.h.ctx.router.retained.get('wills/now')?.payload.toString(), 'lost', 'the connection ended without DISCONNECT: its will is due');
  const back = await RawClient.connect(c.h.port, { clientId: 'later', clean: false, properties: { sessionExpiryInterval: 60 } }, 5);
  assert.equal(back.connack.sessionPresent, true);
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(c.h.ctx.counters.willsPublished, 1, 'returned within the will delay: no will [MQTT-3.1.3-9]');
  assert.equal(c.h.ctx.router.retained.get('wills/later'), undefined);
  await stop(c);
  await stop(d);
});

test('exactly once to a persistent subscriber: a QoS 2 PUBLISH leaves once its entry is durable (what follows waits with it), PUBREL once the PUBREC state is; QoS 1 alone does not wait', async () => {
  let gate: Promise<void> | undefined;
  let open: () => void = () => {};
  const close = (): void => {
    gate = new Promise<void>((r) => (open = r));
  };
  const io: LogModule.AppendIo = {
    ...nodeAppendIo,
    fdatasync: async (fd) => {
      await gate;
      return nodeAppendIo.fdatasync(fd);
    },
  };
  const d = await start(freshDir(), [], { io });
  const sub = await subscribed(d.h.port, { clientId: 'eo', clean: false }, [{ topic: 'eo/#', qos: 2 }]);
  const { client } = await RawClient.connect(d.h.port, { clientId: 'p' });
  close();
  client.send(pub('eo/1', 'at least once', 1, 1));
  client.send(pub('eo/2', 'exactly once', 2, 2));
  client.send(pub('eo/3', 'after it', 1, 3));
  const first = await sub.next('publish');
  assert.deepEqual([first.qos, first.payload.toString()], [1, 'at least once'], 'QoS 1 goes out at once');
  assert.equal(await sub.none('publish', 150), true, 'the QoS 2 PUBLISH waits for the fsync, and what follows it');
  open();
  const second = await sub.next('publish');
  assert.deepEqual([second.qos, second.dup, second.payload.toString()], [2, false, 'exactly once']);
  const third = await sub.next('publish');
  assert.equal(third.payload.toString(), 'after it', 'in order');
  sub.send({ cmd: 'puback', messageId: third.messageId! });
  close();
  sub.send({ cmd: 'pubrec', messageId: second.messageId! });
  assert.equal(await sub.none('pubrel', 150), true, 'PUBREL waits until the PUBREC state is durable');
  open();
  assert.equal((await sub.next('pubrel')).messageId, second.messageId);
  sub.send({ cmd: 'pubcomp', messageId: second.messageId! });
  sub.send({ cmd: 'puback', messageId: first.messageId! });
  await until(() => d.h.protocol.server.sessions.get('eo')!.inflight.size === 0);
  await stop(d);
});
