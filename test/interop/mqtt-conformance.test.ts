/**
 * MQTT 3.1.1 / 5.0 conformance of the broker's MQTT listener, scenario by scenario in the
 * manner of the Eclipse Paho interoperability suite (basic, retained, will, zero-length
 * client id, offline queueing, overlapping subscriptions, keepalive, redelivery, `$` topics,
 * subscribe failure, unsubscribe, and the MQTT 5 features), plus packet-level rules checked
 * with hand-made bytes. One real broker process; every scenario uses its own topics and
 * client ids so the scenarios run concurrently.
 */
import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import { startBroker, type BrokerProcess } from '../helpers/broker.js';
import { RawClient } from '../unit/broker/protocol/mqtt/harness.js';

type Version = 4 | 5;
type Publish = mqttPacket.IPublishPacket;

let broker: BrokerProcess;
before(async () => {
  broker = await startBroker();
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function connect(version: Version, options: Partial<mqttPacket.IConnectPacket> = {}): Promise<{ client: RawClient; connack: mqttPacket.IConnackPacket }> {
  return RawClient.connect(broker.mqttPort, options, version);
}

async function client(version: Version, clientId: string, options: Partial<mqttPacket.IConnectPacket> = {}): Promise<RawClient> {
  const { client: c, connack } = await connect(version, { clientId, ...options });
  assert.equal(version === 5 ? connack.reasonCode : connack.returnCode, 0, `CONNACK for ${clientId}`);
  return c;
}

let nextId = 1;
const packetId = (): number => (nextId = (nextId % 60000) + 1);

async function subscribe(c: RawClient, subscriptions: mqttPacket.ISubscription[], properties?: mqttPacket.ISubscribePacket['properties']): Promise<number[]> {
  const messageId = packetId();
  c.send({ cmd: 'subscribe', messageId, subscriptions, ...(properties ? { properties } : {}) });
  const suback = await c.next('suback');
  assert.equal(suback.messageId, messageId);
  return suback.granted as number[];
}

/** Publishes and completes the QoS 1/2 exchange; returns the PUBACK/PUBREC reason code. */
async function publish(c: RawClient, topic: string, payload: string | Buffer, qos: 0 | 1 | 2 = 0, extra: Partial<Publish> = {}): Promise<number> {
  const messageId = qos > 0 ? packetId() : undefined;
  c.send({ cmd: 'publish', topic, payload: Buffer.from(payload), qos, retain: false, dup: false, ...(messageId ? { messageId } : {}), ...extra });
  if (qos === 1) {
    const ack = await c.next('puback');
    assert.equal(ack.messageId, messageId);
    return ack.reasonCode ?? 0;
  }
  if (qos === 2) {
    const rec = await c.next('pubrec');
    assert.equal(rec.messageId, messageId);
    if ((rec.reasonCode ?? 0) >= 0x80) return rec.reasonCode!;
    c.send({ cmd: 'pubrel', messageId: messageId! });
    assert.equal((await c.next('pubcomp')).messageId, messageId);
    return rec.reasonCode ?? 0;
  }
  return 0;
}

/** Takes the next PUBLISH and acknowledges it as the protocol requires. */
async function receive(c: RawClient, timeoutMs = 3000): Promise<Publish> {
  const p = await c.next('publish', timeoutMs);
  if (p.qos === 1) c.send({ cmd: 'puback', messageId: p.messageId! });
  if (p.qos === 2) {
    c.send({ cmd: 'pubrec', messageId: p.messageId! });
    const rel = await c.next('pubrel');
    assert.equal(rel.messageId, p.messageId);
    c.send({ cmd: 'pubcomp', messageId: p.messageId! });
  }
  return p;
}

async function receiveN(c: RawClient, n: number, timeoutMs = 3000): Promise<Publish[]> {
  const out: Publish[] = [];
  for (let i = 0; i < n; i++) out.push(await receive(c, timeoutMs));
  return out;
}

/** True when no PUBLISH arrives within `ms`. */
const quiet = (c: RawClient, ms = 300): Promise<boolean> => c.none('publish', ms);

async function disconnect(c: RawClient, packet: Partial<mqttPacket.IDisconnectPacket> = {}): Promise<void> {
  c.send({ cmd: 'disconnect', ...packet });
  assert.equal(await c.waitClosed(2000), true, 'the server closes after DISCONNECT');
}

/** The server's DISCONNECT reason (MQTT 5) and that it closed the connection. */
async function expectDisconnect(c: RawClient, reason: number): Promise<void> {
  const d = await c.next('disconnect');
  assert.equal(d.reasonCode, reason, `DISCONNECT reason ${d.reasonCode?.toString(16)} (${d.properties?.reasonString ?? ''})`);
  assert.equal(await c.waitClosed(2000), true, 'closed after DISCONNECT');
}

const names = (ps: Publish[]): string[] => ps.map((p) => `${p.topic}:${p.payload.toString()}`).sort();
const ids = (p: Publish): number[] => {
  const s = p.properties?.subscriptionIdentifier;
  return s === undefined ? [] : (Array.isArray(s) ? [...s] : [s]).sort();
};

describe('MQTT conformance', { concurrency: 12 }, () => {
  // ---------------------------------------------------------------- basic
  for (const v of [4, 5] as const) {
    test(`v${v} basic: subscribe at QoS 2, publish at QoS 0/1/2, each delivered once at its own QoS`, async () => {
      const c = await client(v, `basic-${v}`);
      assert.deepEqual(await subscribe(c, [{ topic: `basic${v}/TopicA`, qos: 2 }]), [2]);
      for (const q of [0, 1, 2] as const) await publish(c, `basic${v}/TopicA`, `qos ${q}`, q);
      const got = await receiveN(c, 3);
      assert.deepEqual(got.map((p) => [p.payload.toString(), p.qos]), [['qos 0', 0], ['qos 1', 1], ['qos 2', 2]]); // [MQTT-4.6.0-6] order kept
      assert.equal(await quiet(c), true, 'nothing more');
      await disconnect(c);
    });
  }

  test('v3.1.1 and v5: a second CONNECT is a protocol violation [MQTT-3.1.0-2]', async () => {
    const a = await client(4, 'second-connect-4');
    a.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: 'second-connect-4' });
    assert.equal(await a.waitClosed(), true);
    const b = await client(5, 'second-connect-5');
    b.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: 'second-connect-5' });
    await expectDisconnect(b, 0x82);
  });

  test('unacceptable protocol level → CONNACK 0x01 (3.1.1) / 0x84 (5) and close [MQTT-3.1.2-2]', async () => {
    const bad = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: 'lvl' });
    bad[8] = 6; // protocol level byte: fixed header (2) + "MQTT" (6)
    const raw = await RawClient.open(broker.mqttPort, 4);
    raw.write(bad);
    const connack = await raw.next('connack').catch(() => undefined);
    if (connack) assert.equal(connack.returnCode, 1);
    assert.equal(await raw.waitClosed(), true);
    const { client: c5, connack: ack5 } = await connect(5, { protocolId: 'MQIsdp', clientId: 'name-mismatch' });
    assert.equal(ack5.reasonCode, 0x84);
    assert.equal(await c5.waitClosed(), true);
  });

  // ---------------------------------------------------------------- retained
  for (const v of [4, 5] as const) {
    test(`v${v} retained: set at QoS 0/1/2, delivered on subscribe with RETAIN=1 (+/+, #), cleared by an empty payload`, async () => {
      const p = `ret${v}`;
      const pub = await client(v, `ret-pub-${v}`);
      const userProperties = { a: '2', c: '3' };
      const props = v === 5 ? { properties: { userProperties } } : {};
      await publish(pub, `${p}/qos 0`, 'qos 0', 0, { retain: true, ...props });
      await publish(pub, `${p}/qos 1`, 'qos 1', 1, { retain: true, ...props });
      await publish(pub, `${p}/qos2`, 'qos 2', 2, { retain: true, ...props });
      const sub = await client(v, `ret-sub-${v}`);
      await subscribe(sub, [{ topic: `${p}/+`, qos: 2 }]);
      const got = await receiveN(sub, 3);
      assert.deepEqual(got.map((m) => m.retain), [true, true, true]); // [MQTT-3.3.1-8]
      assert.deepEqual(got.map((m) => m.qos).sort(), [0, 1, 2]);
      if (v === 5) for (const m of got) assert.deepEqual({ ...m.properties?.userProperties }, userProperties);
      // A live publish to a matching topic is delivered with RETAIN=0 [MQTT-3.3.1-9 (3.1.1)] / retain as published off [MQTT-3.3.1-12].
      await publish(pub, `${p}/qos 1`, 'live', 1, { retain: true });
      const live = await receive(sub);
      assert.equal(live.payload.toString(), 'live');
      assert.equal(live.retain, false);
      // '#' at the root of the prefix matches the parent level too [MQTT-4.7.1-2].
      await publish(pub, p, 'parent', 0, { retain: true });
      const hash = await client(v, `ret-hash-${v}`);
      await subscribe(hash, [{ topic: `${p}/#`, qos: 0 }]);
      assert.deepEqual(names(await receiveN(hash, 4)), [`${p}/qos 0:qos 0`, `${p}/qos 1:live`, `${p}/qos2:qos 2`, `${p}:parent`]);
      // Clearing: a zero-byte retained payload removes it and is not stored [MQTT-3.3.1-10] [MQTT-3.3.1-11].
      for (const t of [`${p}/qos 0`, `${p}/qos 1`, `${p}/qos2`, p]) await publish(pub, t, '', 1, { retain: true });
      await receiveN(sub, 3); // the three clears reach the live subscriber of +/+ as ordinary messages
      const after = await client(v, `ret-after-${v}`);
      await subscribe(after, [{ topic: `${p}/#`, qos: 2 }]);
      assert.equal(await quiet(after), true, 'no retained message left');
    });
  }

  // ---------------------------------------------------------------- wills
  for (const v of [4, 5] as const) {
    test(`v${v} will: published when the network connection drops, not after DISCONNECT [MQTT-3.1.2-8] [MQTT-3.1.2-10]`, async () => {
      const watch = await client(v, `will-watch-${v}`);
      await subscribe(watch, [{ topic: `will${v}/#`, qos: 2 }]);
      const gone = await client(v, `will-a-${v}`, { will: { topic: `will${v}/a`, payload: Buffer.from('client not disconnected'), qos: 1, retain: false } });
      const polite = await client(v, `will-b-${v}`, { will: { topic: `will${v}/b`, payload: Buffer.from('never'), qos: 1, retain: false } });
      await disconnect(polite);
      gone.destroy();
      const m = await receive(watch);
      assert.equal(m.topic, `will${v}/a`);
      assert.equal(m.payload.toString(), 'client not disconnected');
      assert.equal(m.qos, 1);
      assert.equal(await quiet(watch), true, 'no will after a normal DISCONNECT [MQTT-3.14.4-3]');
    });
  }

  test('v5 will: DISCONNECT 0x04 publishes it; will delay holds it back, reconnecting in time cancels it [MQTT-3.1.3-9]', async () => {
    const watch = await client(5, 'wd-watch');
    await subscribe(watch, [{ topic: 'wd5/#', qos: 1 }]);
    const a = await client(5, 'wd-a', { will: { topic: 'wd5/a', payload: Buffer.from('x'), qos: 0, retain: false } });
    await disconnect(a, { reasonCode: 0x04 });
    assert.equal((await receive(watch)).topic, 'wd5/a');
    const delayed = { clean: false, properties: { sessionExpiryInterval: 30 }, will: { topic: 'wd5/b', payload: Buffer.from('late'), qos: 1 as const, retain: false, properties: { willDelayInterval: 1 } } };
    const b = await client(5, 'wd-b', delayed);
    b.destroy();
    await sleep(300);
    const b2 = await connect(5, { clientId: 'wd-b', ...delayed });
    assert.equal(b2.connack.sessionPresent, true);
    assert.equal(await quiet(watch, 1200), true, 'reconnected within the delay: no will');
    const start = Date.now();
    b2.client.destroy();
    const m = await receive(watch, 3000);
    assert.equal(m.payload.toString(), 'late');
    assert.ok(Date.now() - start >= 800, `published after the delay (${Date.now() - start} ms)`);
  });

  // ---------------------------------------------------------------- client ids
  test('zero-length client id: 3.1.1 needs clean session (else CONNACK 0x02) [MQTT-3.1.3-8]; v5 gets an Assigned Client Identifier [MQTT-3.2.2-16]', async () => {
    // mqtt-packet will not encode this CONNECT: "MQTT" level 4, flags 0, keepalive 0, empty client id.
    const refused = await RawClient.open(broker.mqttPort, 4);
    refused.write(Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 0, 0, 0]));
    const connack = await refused.next('connack');
    assert.equal(connack.returnCode, 2);
    assert.equal(connack.sessionPresent, false); // [MQTT-3.2.2-4]
    assert.equal(await refused.waitClosed(), true); // [MQTT-3.2.2-5]
    const ok = await connect(4, { clientId: '', clean: true });
    assert.equal(ok.connack.returnCode, 0);
    await disconnect(ok.client);
    const v5 = await connect(5, { clientId: '', clean: true });
    assert.equal(v5.connack.reasonCode, 0);
    const assigned = v5.connack.properties?.assignedClientIdentifier;
    assert.ok(assigned && assigned.length > 0, 'assigned client id');
    // The assigned id names a real session: a second connection with it takes it over [MQTT-3.1.4-3].
    const again = await connect(5, { clientId: assigned, clean: true });
    assert.equal(again.connack.reasonCode, 0);
    await expectDisconnect(v5.client, 0x8e);
    await disconnect(again.client);
  });

  // ---------------------------------------------------------------- sessions
  for (const v of [4, 5] as const) {
    test(`v${v} offline queueing: QoS 1/2 kept for a persistent session and delivered on reconnect with Session Present [MQTT-3.1.2-5] [MQTT-3.2.2-2]`, async () => {
      const p = `off${v}`;
      const persistent = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 60 } } : { clean: false };
      const first = await connect(v, { clientId: `off-a-${v}`, ...persistent, clean: true, ...(v === 5 ? { properties: { sessionExpiryInterval: 60 } } : {}) });
      assert.equal(first.connack.sessionPresent, false);
      await subscribe(first.client, [{ topic: `${p}/+`, qos: 2 }]);
      await disconnect(first.client);
      if (v === 4) {
        // 3.1.1: a clean session ends at disconnect; start the persistent one explicitly.
        const s = await connect(v, { clientId: `off-a-${v}`, clean: false });
        assert.equal(s.connack.sessionPresent, false, 'the clean session did not survive [MQTT-3.1.2-6]');
        await subscribe(s.client, [{ topic: `${p}/+`, qos: 2 }]);
        await disconnect(s.client);
      }
      const pub = await client(v, `off-pub-${v}`);
      await publish(pub, `${p}/a`, 'qos 0', 0);
      await publish(pub, `${p}/b`, 'qos 1', 1);
      await publish(pub, `${p}/c`, 'qos 2', 2);
      const back = await connect(v, { clientId: `off-a-${v}`, ...persistent });
      assert.equal(back.connack.sessionPresent, true);
      const got = await receiveN(back.client, 2);
      assert.deepEqual(got.map((m) => [m.payload.toString(), m.qos]), [['qos 1', 1], ['qos 2', 2]]);
      assert.equal(await quiet(back.client), true, 'QoS 0 is not queued (a permitted choice)');
      await disconnect(back.client);
      // Clean session / Clean Start discards the session [MQTT-3.1.2-4]: no Session Present, no queue.
      await publish(pub, `${p}/b`, 'dropped', 1);
      const clean = await connect(v, { clientId: `off-a-${v}`, clean: true });
      assert.equal(clean.connack.sessionPresent, false); // [MQTT-3.2.2-1]
      assert.equal(await quiet(clean.client), true);
    });
  }

  test('v5 session expiry: 0 ends at disconnect; N keeps it N seconds; DISCONNECT can change it (not from 0)', async () => {
    const props = (s: number) => ({ properties: { sessionExpiryInterval: s } });
    let r = await connect(5, { clientId: 'sx', clean: true, ...props(0) });
    await subscribe(r.client, [{ topic: 'sx/a', qos: 2 }]);
    await disconnect(r.client);
    r = await connect(5, { clientId: 'sx', clean: false, ...props(0) });
    assert.equal(r.connack.sessionPresent, false, 'expiry 0: gone at once');
    await disconnect(r.client);
    r = await connect(5, { clientId: 'sx', clean: true, ...props(2) });
    await disconnect(r.client);
    await sleep(500);
    r = await connect(5, { clientId: 'sx', clean: false, ...props(1) });
    assert.equal(r.connack.sessionPresent, true, 'within 2 s');
    await disconnect(r.client); // now with expiry 1
    await sleep(2200);
    r = await connect(5, { clientId: 'sx', clean: false, ...props(1) });
    assert.equal(r.connack.sessionPresent, false, 'expired after 1 s');
    await disconnect(r.client, { properties: { sessionExpiryInterval: 3 } }); // 1 → 3 at DISCONNECT
    await sleep(1500);
    r = await connect(5, { clientId: 'sx', clean: false, ...props(0) });
    assert.equal(r.connack.sessionPresent, true, 'DISCONNECT extended the expiry to 3 s');
    // Expiry 0 in CONNECT, non-zero in DISCONNECT: protocol error [MQTT-3.14.2-2]
    r.client.send({ cmd: 'disconnect', reasonCode: 0, properties: { sessionExpiryInterval: 5 } });
    await expectDisconnect(r.client, 0x82);
  });

  for (const v of [4, 5] as const) {
    test(`v${v} redelivery on reconnect: unacknowledged PUBLISH resent with DUP=1 and the same id, PUBREL resent [MQTT-4.4.0-1] [MQTT-3.3.1-1]`, async () => {
      const p = `redel${v}`;
      const persistent = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 60 } } : { clean: false };
      const first = await connect(v, { clientId: `redel-${v}`, ...persistent });
      await subscribe(first.client, [{ topic: `${p}/#`, qos: 2 }]);
      const pub = await client(v, `redel-pub-${v}`);
      await publish(pub, `${p}/one`, 'q1', 1);
      await publish(pub, `${p}/two`, 'q2', 2);
      await publish(pub, `${p}/three`, 'q2b', 2);
      const m1 = await first.client.next('publish');
      const m2 = await first.client.next('publish');
      const m3 = await first.client.next('publish');
      assert.deepEqual([m1.dup, m2.dup, m3.dup], [false, false, false]);
      first.client.send({ cmd: 'pubrec', messageId: m3.messageId! }); // third one past PUBREC
      await first.client.next('pubrel');
      first.client.destroy(); // no PUBACK, no PUBREC for two, no PUBCOMP for three
      await first.client.closedPromise;
      await sleep(100);
      const back = await connect(v, { clientId: `redel-${v}`, ...persistent });
      assert.equal(back.connack.sessionPresent, true);
      const r1 = await back.client.next('publish');
      const r2 = await back.client.next('publish');
      for (const [orig, again] of [[m1, r1], [m2, r2]] as const) {
        assert.equal(again.dup, true);
        assert.equal(again.messageId, orig.messageId);
        assert.equal(again.payload.toString(), orig.payload.toString());
        assert.equal(again.qos, orig.qos);
      }
      const rel = await back.client.next('pubrel');
      assert.equal(rel.messageId, m3.messageId, 'PUBREL resent, not the PUBLISH');
      assert.equal(await quiet(back.client, 200), true, 'the QoS 2 message past PUBREC is not resent');
      back.client.send({ cmd: 'puback', messageId: r1.messageId! });
      back.client.send({ cmd: 'pubrec', messageId: r2.messageId! });
      assert.equal((await back.client.next('pubrel')).messageId, r2.messageId);
      back.client.send({ cmd: 'pubcomp', messageId: r2.messageId! });
      back.client.send({ cmd: 'pubcomp', messageId: m3.messageId! });
      await disconnect(back.client);
    });
  }

  // ---------------------------------------------------------------- subscriptions
  test('v3.1.1 overlapping subscriptions: one message at the highest QoS, or one per subscription [MQTT-3.3.5-1]', async () => {
    const c = await client(4, 'overlap-4');
    assert.deepEqual(await subscribe(c, [{ topic: 'ov4/TopicA/#', qos: 2 }, { topic: 'ov4/TopicA/+', qos: 1 }]), [2, 1]);
    await publish(c, 'ov4/TopicA/C', 'overlapping topic filters', 2);
    const first = await receive(c);
    if (await quiet(c, 300)) assert.equal(first.qos, 2);
    else {
      const second = await receive(c);
      assert.deepEqual([first.qos, second.qos].sort(), [1, 2]);
    }
  });

  test('v5 overlapping subscriptions: delivered respecting the maximum QoS, with every matching Subscription Identifier [MQTT-3.3.4-2] [MQTT-3.3.4-3]', async () => {
    const c = await client(5, 'overlap-5');
    await subscribe(c, [{ topic: 'ov5/TopicA/#', qos: 2 }], { subscriptionIdentifier: 7 });
    await subscribe(c, [{ topic: 'ov5/TopicA/+', qos: 1 }], { subscriptionIdentifier: 9 });
    await subscribe(c, [{ topic: 'ov5/+/C', qos: 0 }]);
    await publish(c, 'ov5/TopicA/C', 'x', 2);
    const got = [await receive(c)];
    while (!(await quiet(c, 300))) got.push(await receive(c));
    assert.ok(got.some((m) => m.qos === 2), 'one copy at QoS 2');
    assert.deepEqual([...new Set(got.flatMap(ids))].sort(), [7, 9]);
  });

  for (const v of [4, 5] as const) {
    test(`v${v} $-topics are not matched by filters starting with a wildcard [MQTT-4.7.2-1]`, async () => {
      const wild = await client(v, `dollar-wild-${v}`);
      await subscribe(wild, [{ topic: '#', qos: 1 }, { topic: '+/dollar', qos: 1 }, { topic: `+/dollar${v}/x`, qos: 1 }]);
      const exact = await client(v, `dollar-exact-${v}`);
      await subscribe(exact, [{ topic: `$test/dollar${v}/#`, qos: 1 }]);
      // drain whatever the root '#' gets from concurrent scenarios, then look only for $ topics
      const pub = await client(v, `dollar-pub-${v}`);
      await publish(pub, `$test/dollar${v}/x`, 'hidden', 1);
      const m = await receive(exact);
      assert.equal(m.topic, `$test/dollar${v}/x`);
      await sleep(300);
      const seen = (wild.packets.filter((p) => p.cmd === 'publish') as Publish[]).map((p) => p.topic);
      assert.ok(!seen.some((t) => t.startsWith('$')), `'#' saw ${seen.filter((t) => t.startsWith('$')).join(',')}`);
      wild.destroy();
    });
  }

  for (const v of [4, 5] as const) {
    test(`v${v} subscribe failure: an invalid filter gets ${v === 5 ? '0x8F' : '0x80'} in its own SUBACK slot [MQTT-3.8.4-6] [MQTT-4.7.1-1]`, async () => {
      const c = await client(v, `subfail-${v}`);
      const granted = await subscribe(c, [{ topic: 'sf/ok', qos: 1 }, { topic: 'sf/#/bad', qos: 1 }, { topic: 'sf/a+', qos: 0 }, { topic: 'sf/+', qos: 2 }]);
      const bad = v === 5 ? 0x8f : 0x80;
      assert.deepEqual(granted, [1, bad, bad, 2]);
      await publish(c, 'sf/ok', 'still works', 2);
      const m = await receive(c);
      assert.equal(m.qos, 2);
    });
  }

  for (const v of [4, 5] as const) {
    test(`v${v} unsubscribe: no delivery after UNSUBACK, other subscriptions untouched [MQTT-3.10.4-1] [MQTT-3.10.4-4]`, async () => {
      const p = `unsub${v}`;
      const b = await client(v, `unsub-b-${v}`);
      for (const t of ['TopicA', 'TopicA/B', 'Topic/C']) await subscribe(b, [{ topic: `${p}/${t}`, qos: 2 }]);
      const messageId = packetId();
      b.send({ cmd: 'unsubscribe', messageId, unsubscriptions: [`${p}/TopicA`, `${p}/never`] });
      const unsuback = await b.next('unsuback');
      assert.equal(unsuback.messageId, messageId);
      if (v === 5) assert.deepEqual(unsuback.granted, [0x00, 0x11]);
      const a = await client(v, `unsub-a-${v}`);
      for (const t of ['TopicA', 'TopicA/B', 'Topic/C']) await publish(a, `${p}/${t}`, t, 1);
      assert.deepEqual(names(await receiveN(b, 2)), [`${p}/Topic/C:Topic/C`, `${p}/TopicA/B:TopicA/B`]);
      assert.equal(await quiet(b), true);
    });
  }

  // ---------------------------------------------------------------- keepalive
  for (const v of [4, 5] as const) {
    test(`v${v} keepalive: closed after 1.5 × keepalive of silence, the will published; PINGREQ keeps it open [MQTT-3.1.2-24]`, async () => {
      const watch = await client(v, `ka-watch-${v}`);
      await subscribe(watch, [{ topic: `ka${v}/#`, qos: 1 }]);
      const pinger = await client(v, `ka-ping-${v}`, { keepalive: 1 });
      const silent = await client(v, `ka-silent-${v}`, { keepalive: 1, will: { topic: `ka${v}/expired`, payload: Buffer.from('keepalive expiry'), qos: 1, retain: false } });
      const start = Date.now();
      let pongs = 0;
      while (Date.now() - start < 2600) {
        pinger.send({ cmd: 'pingreq' });
        await pinger.next('pingresp');
        pongs++;
        await sleep(400);
      }
      assert.equal(pinger.closed, false, 'pinging client still connected');
      assert.ok(pongs >= 5);
      assert.equal(silent.closed, true, 'silent client closed');
      if (v === 5) assert.equal(silent.packets.find((p) => p.cmd === 'disconnect')?.reasonCode, 0x8d);
      assert.equal((await receive(watch)).payload.toString(), 'keepalive expiry');
    });
  }

  test('v5 Server Keep Alive: sent when the client asks for more than the server allows, and used [MQTT-3.2.2-21]', async () => {
    const r = await connect(5, { clientId: 'ska', keepalive: 65535 });
    const ska = r.connack.properties?.serverKeepAlive;
    assert.ok(ska !== undefined && ska > 0 && ska < 65535, `Server Keep Alive ${ska}`);
    const z = await connect(5, { clientId: 'ska0', keepalive: 10 });
    assert.equal(z.connack.properties?.serverKeepAlive, undefined, 'not sent when the client value is acceptable');
  });

  // ---------------------------------------------------------------- MQTT 5 properties
  test('v5 user properties: forwarded unchanged, order and repeats kept [MQTT-3.3.2-17] [MQTT-3.3.2-18]', async () => {
    const c = await client(5, 'userprops');
    await subscribe(c, [{ topic: 'up5/TopicA', qos: 2 }]);
    const userProperties = { c: '3', a: ['2', '1'], 'ü': 'wert' };
    for (const q of [0, 1, 2] as const) await publish(c, 'up5/TopicA', '', q, { properties: { userProperties } });
    const got = await receiveN(c, 3);
    for (const m of got) {
      assert.deepEqual(Object.entries(m.properties?.userProperties ?? {}), Object.entries(userProperties));
    }
  });

  test('v5 payload format indicator and content type are forwarded; a non-UTF-8 payload with indicator 1 gets 0x99', async () => {
    const c = await client(5, 'pfi');
    await subscribe(c, [{ topic: 'pfi5/TopicA', qos: 2 }]);
    for (const q of [0, 1, 2] as const) await publish(c, 'pfi5/TopicA', 'text', q, { properties: { payloadFormatIndicator: true, contentType: 'My name' } });
    for (const m of await receiveN(c, 3)) {
      assert.equal(m.properties?.payloadFormatIndicator, true); // [MQTT-3.3.2-4]
      assert.equal(m.properties?.contentType, 'My name');
    }
    assert.equal(await publish(c, 'pfi5/TopicA', Buffer.from([0xff, 0xfe]), 1, { properties: { payloadFormatIndicator: true } }), 0x99);
    assert.equal(await quiet(c), true);
  });

  test('v5 request/response: Response Topic and Correlation Data reach the subscriber unchanged [MQTT-3.3.2-15] [MQTT-3.3.2-16]', async () => {
    const responder = await client(5, 'rr-responder');
    await subscribe(responder, [{ topic: 'rr5/request', qos: 1 }]);
    const requester = await client(5, 'rr-requester');
    await subscribe(requester, [{ topic: 'rr5/response/+', qos: 1 }]);
    const correlationData = Buffer.from([0, 1, 2, 0xff]);
    await publish(requester, 'rr5/request', 'ping', 1, { properties: { responseTopic: 'rr5/response/requester', correlationData } });
    const req = await receive(responder);
    assert.equal(req.properties?.responseTopic, 'rr5/response/requester');
    assert.deepEqual(Buffer.from(req.properties!.correlationData!), correlationData);
    await publish(responder, req.properties!.responseTopic!, 'pong', 1, { properties: { correlationData: req.properties!.correlationData! } });
    const res = await receive(requester);
    assert.equal(res.payload.toString(), 'pong');
    assert.deepEqual(Buffer.from(res.properties!.correlationData!), correlationData);
  });

  test('v5 message expiry: expired queued messages are dropped, the rest forwarded with the remaining interval [MQTT-3.3.2-5] [MQTT-3.3.2-6]', async () => {
    const persistent = { clean: false, properties: { sessionExpiryInterval: 60 } };
    const b = await client(5, 'mx-b', persistent);
    await subscribe(b, [{ topic: 'mx5/TopicA', qos: 2 }]);
    await disconnect(b);
    const a = await client(5, 'mx-a');
    await publish(a, 'mx5/TopicA', 'qos 1 - expire', 1, { properties: { messageExpiryInterval: 1 } });
    await publish(a, 'mx5/TopicA', 'qos 2 - expire', 2, { properties: { messageExpiryInterval: 1 } });
    await publish(a, 'mx5/TopicA', "qos 1 - don't expire", 1, { properties: { messageExpiryInterval: 6 } });
    await publish(a, 'mx5/TopicA', "qos 2 - don't expire", 2, { properties: { messageExpiryInterval: 6 } });
    await sleep(2100);
    const back = await connect(5, { clientId: 'mx-b', ...persistent });
    const got = await receiveN(back.client, 2);
    assert.deepEqual(got.map((m) => m.payload.toString()), ["qos 1 - don't expire", "qos 2 - don't expire"]);
    for (const m of got) {
      const left = m.properties?.messageExpiryInterval;
      assert.ok(left !== undefined && left >= 3 && left < 6, `remaining interval ${left}`);
    }
    assert.equal(await quiet(back.client), true);
  });

  test('v5 subscription options: No Local, Retain As Published, Retain Handling 0/1/2 [MQTT-3.8.3-3] [MQTT-3.3.1-9..13]', async () => {
    const a = await client(5, 'so-a');
    const b = await client(5, 'so-b');
    await subscribe(a, [{ topic: 'so5/nl', qos: 2, nl: true }]);
    await subscribe(b, [{ topic: 'so5/nl', qos: 2, nl: true }]);
    await publish(a, 'so5/nl', 'noLocal test', 1);
    assert.equal((await receive(b)).payload.toString(), 'noLocal test');
    assert.equal(await quiet(a), true, 'not sent back to its publisher');

    await subscribe(a, [{ topic: 'so5/rap', qos: 2, rap: true }]);
    await publish(a, 'so5/rap', 'retain as published false', 1);
    await publish(a, 'so5/rap', 'retain as published true', 1, { retain: true });
    const rap = await receiveN(a, 2);
    assert.deepEqual(rap.map((m) => m.retain), [false, true]);

    for (const [t, q] of [['so5/rh/a', 0], ['so5/rh/b', 1], ['so5/rh/c', 2]] as const) await publish(b, t, `qos ${q}`, q, { retain: true });
    const c = await client(5, 'so-c');
    await subscribe(c, [{ topic: 'so5/rh/+', qos: 2, rh: 1 }]);
    assert.deepEqual((await receiveN(c, 3)).map((m) => m.qos).sort(), [0, 1, 2]);
    await subscribe(c, [{ topic: 'so5/rh/+', qos: 2, rh: 1 }]);
    assert.equal(await quiet(c), true, 'rh 1: not for an existing subscription');
    const d = await client(5, 'so-d');
    await subscribe(d, [{ topic: 'so5/rh/+', qos: 2, rh: 2 }]);
    await subscribe(d, [{ topic: 'so5/rh/+', qos: 2, rh: 2 }]);
    assert.equal(await quiet(d), true, 'rh 2: never');
    await subscribe(d, [{ topic: 'so5/rh/+', qos: 2, rh: 0 }]);
    assert.equal((await receiveN(d, 3)).length, 3, 'rh 0: on every subscribe');
    await subscribe(d, [{ topic: 'so5/rh/+', qos: 2, rh: 0 }]);
    assert.equal((await receiveN(d, 3)).length, 3, 'rh 0: again [MQTT-3.8.4-3]');
    for (const t of ['so5/rap', 'so5/rh/a', 'so5/rh/b', 'so5/rh/c']) await publish(b, t, '', 0, { retain: true });
  });

  test('v5 topic alias from the client: mapped, reused, remapped; 0 or above the maximum → DISCONNECT 0x94 [MQTT-3.3.2-8] [MQTT-3.3.2-9]', async () => {
    const sub = await client(5, 'ta-sub');
    await subscribe(sub, [{ topic: 'ta5/#', qos: 1 }]);
    const r = await connect(5, { clientId: 'ta-pub' });
    const max = r.connack.properties?.topicAliasMaximum ?? 0;
    assert.ok(max > 0, 'the server accepts topic aliases');
    const c = r.client;
    await publish(c, 'ta5/one', 'a', 1, { properties: { topicAlias: 1 } });
    await publish(c, '', 'b', 1, { properties: { topicAlias: 1 } });
    await publish(c, 'ta5/two', 'c', 1, { properties: { topicAlias: 1 } });
    await publish(c, '', 'd', 1, { properties: { topicAlias: 1 } });
    assert.deepEqual((await receiveN(sub, 4)).map((m) => `${m.topic}:${m.payload.toString()}`), ['ta5/one:a', 'ta5/one:b', 'ta5/two:c', 'ta5/two:d']);
    c.send({ cmd: 'publish', topic: 'ta5/x', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: max + 1 } });
    await expectDisconnect(c, 0x94);
    const z = await client(5, 'ta-zero');
    z.send({ cmd: 'publish', topic: 'ta5/x', payload: Buffer.from('x'), qos: 0, retain: false, dup: false, properties: { topicAlias: 0 } });
    await expectDisconnect(z, 0x94);
    assert.equal(await quiet(sub), true);
  });

  test('v5 topic alias to the client through mqtt.js: the client resolves the aliases the server assigns', async () => {
    const received: string[] = [];
    const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0, clientId: 'ta-mqttjs', properties: { topicAliasMaximum: 4 } });
    try {
      m.on('message', (topic, payload) => received.push(`${topic}:${payload.toString()}`));
      await m.subscribeAsync('tajs5/+', { qos: 1 });
      const pub = await client(5, 'tajs-pub');
      for (let i = 0; i < 6; i++) await publish(pub, `tajs5/${i % 2}`, String(i), 1);
      const deadline = Date.now() + 3000;
      while (received.length < 6 && Date.now() < deadline) await sleep(20);
      assert.deepEqual(received, ['tajs5/0:0', 'tajs5/1:1', 'tajs5/0:2', 'tajs5/1:3', 'tajs5/0:4', 'tajs5/1:5']);
    } finally {
      m.end(true);
    }
  });

  test('v5 maximum packet size: the server does not send a larger packet to the client [MQTT-3.1.2-25]; larger than ours → 0x95', async () => {
    const small = await client(5, 'mps-small', { properties: { maximumPacketSize: 128 } });
    await subscribe(small, [{ topic: 'mps5/+', qos: 1 }]);
    const pub = await connect(5, { clientId: 'mps-pub' });
    await publish(pub.client, 'mps5/big', Buffer.alloc(200, 1), 1);
    await publish(pub.client, 'mps5/small', Buffer.alloc(20, 1), 1);
    const m = await receive(small);
    assert.equal(m.topic, 'mps5/small', 'the too-large message was skipped');
    assert.equal(await quiet(small), true);
    const ours = pub.connack.properties?.maximumPacketSize;
    assert.ok(ours !== undefined && ours < 16 * 1024 * 1024, `server Maximum Packet Size ${ours}`);
    pub.client.send({ cmd: 'publish', topic: 'mps5/huge', payload: Buffer.alloc(ours + 1), qos: 0, retain: false, dup: false });
    await expectDisconnect(pub.client, 0x95); // [MQTT-3.2.2-15] is the client's duty; the server answers 0x95
  });

  test('v5 Receive Maximum: no more unacknowledged QoS 1/2 PUBLISHes than the client allows [MQTT-3.3.4-9]; ours enforced with 0x93', async () => {
    const sub = await client(5, 'rm-sub', { properties: { receiveMaximum: 2 } });
    await subscribe(sub, [{ topic: 'rm5/x', qos: 1 }]);
    const pub = await connect(5, { clientId: 'rm-pub' });
    for (let i = 0; i < 5; i++) await publish(pub.client, 'rm5/x', String(i), 1);
    await sleep(300);
    const first = sub.packets.filter((p) => p.cmd === 'publish') as Publish[];
    assert.equal(first.length, 2, 'two in flight');
    const a = await sub.next('publish');
    await sub.next('publish');
    sub.send({ cmd: 'puback', messageId: a.messageId! });
    const third = await sub.next('publish');
    assert.equal(third.payload.toString(), '2');
    assert.equal(await sub.none('publish', 200), true, 'still two in flight');

    const ours = pub.connack.properties?.receiveMaximum ?? 65535;
    assert.ok(ours < 1000, `server Receive Maximum ${ours}`);
    for (let i = 0; i <= ours; i++) {
      pub.client.send({ cmd: 'publish', topic: 'rm5/flood', payload: Buffer.from('q2'), qos: 2, messageId: i + 1, retain: false, dup: false });
    }
    await expectDisconnect(pub.client, 0x93); // [MQTT-3.3.4-8]
  });

  test('shared subscriptions: each message to one member of the group, spread over the members [MQTT-4.8.2]', async () => {
    const m1 = await client(5, 'sh-1');
    const m2 = await client(4, 'sh-2');
    const plain = await client(5, 'sh-plain');
    assert.deepEqual(await subscribe(m1, [{ topic: '$share/g/sh5/+', qos: 1 }]), [1]);
    assert.deepEqual(await subscribe(m2, [{ topic: '$share/g/sh5/+', qos: 1 }]), [1]);
    await subscribe(plain, [{ topic: 'sh5/+', qos: 1 }]);
    const pub = await client(5, 'sh-pub');
    for (let i = 0; i < 10; i++) await publish(pub, `sh5/${i}`, String(i), 1);
    assert.equal((await receiveN(plain, 10)).length, 10);
    await sleep(200);
    const n1 = m1.packets.filter((p) => p.cmd === 'publish').length;
    const n2 = m2.packets.filter((p) => p.cmd === 'publish').length;
    assert.equal(n1 + n2, 10, 'each message once per group');
    assert.ok(n1 > 0 && n2 > 0, `both members served (${n1}/${n2})`);
    assert.deepEqual(await subscribe(m1, [{ topic: '$share/g/#/x', qos: 0 }, { topic: '$share//a', qos: 0 }]), [0x8f, 0x8f]);
  });

  // ---------------------------------------------------------------- packet-level rules
  const rawConnect = (version: Version, clientId: string): Buffer =>
    mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 0, clientId }, { protocolVersion: version });

  async function afterConnect(version: Version, clientId: string): Promise<RawClient> {
    const raw = await RawClient.open(broker.mqttPort, version);
    raw.write(rawConnect(version, clientId));
    const ack = await raw.next('connack');
    assert.equal(version === 5 ? ack.reasonCode : ack.returnCode, 0);
    return raw;
  }

  /** v3.1.1: the server closes the connection; v5: DISCONNECT with `reason` (when given) then close. */
  async function expectRefused(raw: RawClient, version: Version, reason: number): Promise<void> {
    assert.equal(await raw.waitClosed(), true, 'connection closed');
    const d = raw.packets.find((p) => p.cmd === 'disconnect');
    if (version === 4) assert.equal(d, undefined, '3.1.1 has no server DISCONNECT');
    else if (d) assert.equal(d.reasonCode, reason, `DISCONNECT ${d.reasonCode?.toString(16)}`);
  }

  test('CONNECT with the reserved flag set → closed without CONNACK [MQTT-3.1.2-3]', async () => {
    for (const v of [4, 5] as const) {
      const bytes = rawConnect(v, `reserved-${v}`);
      bytes.writeUInt8(bytes.readUInt8(9) | 0x01, 9);
      const raw = await RawClient.open(broker.mqttPort, v);
      raw.write(bytes);
      assert.equal(await raw.waitClosed(), true);
      assert.equal(raw.packets.length, 0);
    }
  });

  test('3.1.1 CONNECT with a password but no user name → closed [MQTT-3.1.2-22]', async () => {
    const withUser = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: 'pw', username: 'u', password: Buffer.from('p') });
    // Fixed header (2), "MQTT" (6), level (1), flags at 9, keepalive (2), client id "pw" (4), user name "u" at 16 (3 bytes).
    const patched = Buffer.concat([withUser.subarray(0, 16), withUser.subarray(19)]);
    patched.writeUInt8(patched.readUInt8(9) & ~0x80, 9); // user name flag off, password flag still on
    patched.writeUInt8(patched.readUInt8(1) - 3, 1);
    const raw = await RawClient.open(broker.mqttPort, 4);
    raw.write(patched);
    assert.equal(await raw.waitClosed(), true);
    assert.equal(raw.packets.some((p) => p.cmd === 'connack' && p.returnCode === 0), false);
  });

  for (const v of [4, 5] as const) {
    test(`v${v} packet rules: PUBLISH QoS 3, wrong fixed-header flags, packet id 0, wildcard topic, PUBLISH before CONNECT`, async () => {
      const cases: [string, (raw: RawClient) => void, number][] = [
        ['PUBLISH with QoS 3 [MQTT-3.3.1-4]', (raw) => {
          const b = mqttPacket.generate({ cmd: 'publish', topic: 'pr/x', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false }, { protocolVersion: v });
          b.writeUInt8(b.readUInt8(0) | 0x06, 0);
          raw.write(b);
        }, 0x81],
        ['SUBSCRIBE with fixed-header flags 0000 [MQTT-3.8.1-1]', (raw) => {
          const b = mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'pr/x', qos: 0 }] }, { protocolVersion: v });
          b[0] = 0x80;
          raw.write(b);
        }, 0x81],
        ['UNSUBSCRIBE with fixed-header flags 0000 [MQTT-3.10.1-1]', (raw) => {
          const b = mqttPacket.generate({ cmd: 'unsubscribe', messageId: 1, unsubscriptions: ['pr/x'] }, { protocolVersion: v });
          b[0] = 0xa0;
          raw.write(b);
        }, 0x81],
        ['PUBREL with fixed-header flags 0000 [MQTT-3.6.1-1]', (raw) => raw.write(Buffer.from([0x60, 0x02, 0x00, 0x01])), 0x81],
        ['PINGREQ with a reserved flag set [MQTT-2.2.2-2]', (raw) => raw.write(Buffer.from([0xc1, 0x00])), 0x81],
        ['PUBLISH QoS 1 with packet id 0 [MQTT-2.3.1-1]', (raw) => {
          const b = mqttPacket.generate({ cmd: 'publish', topic: 'pr/x', payload: Buffer.from('x'), qos: 1, messageId: 1, retain: false, dup: false }, { protocolVersion: v });
          const at = 2 + 2 + 4; // fixed header, topic length, "pr/x"
          b[at] = 0;
          b[at + 1] = 0;
          raw.write(b);
        }, 0x82],
        ['SUBSCRIBE with packet id 0 [MQTT-2.3.1-1]', (raw) => {
          const b = mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'pr/x', qos: 0 }] }, { protocolVersion: v });
          b[3] = 0;
          raw.write(b);
        }, 0x82],
        ['PUBLISH to a topic with a wildcard [MQTT-3.3.2-2]', (raw) => raw.send({ cmd: 'publish', topic: 'pr/+', payload: Buffer.from('x'), qos: 0, retain: false, dup: false }), 0x90],
        ['PUBLISH to a topic with # [MQTT-3.3.2-2]', (raw) => raw.send({ cmd: 'publish', topic: 'pr/#', payload: Buffer.from('x'), qos: 1, messageId: 3, retain: false, dup: false }), 0x90],
        // 3.1.1 [MQTT-3.8.3-3] / 5 [MQTT-3.8.3-2]; 3.1.1 and 5 [MQTT-3.10.3-2]: protocol errors.
        ['SUBSCRIBE with no filter [MQTT-3.8.3-3]', (raw) => raw.write(Buffer.from(v === 5 ? [0x82, 0x03, 0x00, 0x01, 0x00] : [0x82, 0x02, 0x00, 0x01])), 0x82],
        ['UNSUBSCRIBE with no filter [MQTT-3.10.3-2]', (raw) => raw.write(Buffer.from(v === 5 ? [0xa2, 0x03, 0x00, 0x01, 0x00] : [0xa2, 0x02, 0x00, 0x01])), 0x82],
        ['a server-only packet (SUBACK) from the client', (raw) => raw.send({ cmd: 'suback', messageId: 1, granted: [0] }), 0x82],
      ];
      const watch = await client(v, `pr-watch-${v}`);
      await subscribe(watch, [{ topic: 'pr/#', qos: 1 }]);
      for (const [what, act, reason] of cases) {
        const raw = await afterConnect(v, `pr-${v}`);
        act(raw);
        await expectRefused(raw, v, reason).catch((err: Error) => {
          throw new Error(`${what}: ${err.message}`);
        });
      }
      assert.equal(await quiet(watch, 100), true, 'none of them was routed');
      const early = await RawClient.open(broker.mqttPort, v);
      early.send({ cmd: 'publish', topic: 'pr/early', payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
      assert.equal(await early.waitClosed(), true, 'the first packet must be CONNECT [MQTT-3.1.0-1]');
      assert.equal(early.packets.length, 0);
    });
  }

  test('v5 PUBLISH with an empty topic and no Topic Alias is a Protocol Error → DISCONNECT 0x82 (§3.3.2.1); 3.1.1 closes [MQTT-4.7.3-1]', async () => {
    const c5 = await client(5, 'empty-topic-5');
    c5.send({ cmd: 'publish', topic: '', payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
    await expectDisconnect(c5, 0x82);
    const c4 = await client(4, 'empty-topic-4');
    c4.send({ cmd: 'publish', topic: '', payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
    assert.equal(await c4.waitClosed(), true);
  });

  test('v5 SUBSCRIBE with Maximum QoS 3 or Retain Handling 3 is a Protocol Error → DISCONNECT 0x82 (§3.8.3.1)', async () => {
    for (const [what, options] of [['QoS 3', 0x03], ['Retain Handling 3', 0x30]] as const) {
      const c = await client(5, `sub-opt3-${options}`);
      // SUBSCRIBE, id 1, no properties, filter "a/b", options byte
      c.write(Buffer.from([0x82, 0x09, 0x00, 0x01, 0x00, 0x00, 0x03, 0x61, 0x2f, 0x62, options]));
      await expectDisconnect(c, 0x82).catch((err: Error) => {
        throw new Error(`${what}: ${err.message}`);
      });
    }
  });

  test('forwarded PUBLISH: DUP set independently of the incoming one [MQTT-3.3.1-3]; a non-retained publish leaves the retained message alone [MQTT-3.3.1-12 (3.1.1)]', async () => {
    const c = await client(4, 'dupfwd');
    await publish(c, 'dupfwd/x', 'kept', 1, { retain: true });
    await subscribe(c, [{ topic: 'dupfwd/x', qos: 1 }]);
    assert.equal((await receive(c)).retain, true);
    await publish(c, 'dupfwd/x', 'resent', 1, { dup: true });
    const m = await receive(c);
    assert.equal(m.payload.toString(), 'resent');
    assert.equal(m.dup, false);
    const late = await client(4, 'dupfwd-late');
    await subscribe(late, [{ topic: 'dupfwd/x', qos: 1 }]);
    assert.equal((await receive(late)).payload.toString(), 'kept');
    await publish(c, 'dupfwd/x', '', 0, { retain: true });
  });

  test('v5 retained on subscribe: carries the Subscription Identifier and the remaining Message Expiry Interval [MQTT-3.3.2-6] [MQTT-3.3.4-3]', async () => {
    const pub = await client(5, 'retx-pub');
    await publish(pub, 'retx5/a', 'r', 1, { retain: true, properties: { messageExpiryInterval: 30 } });
    await publish(pub, 'retx5/gone', 'r', 1, { retain: true, properties: { messageExpiryInterval: 1 } });
    await sleep(1100);
    const c = await client(5, 'retx-sub');
    await subscribe(c, [{ topic: 'retx5/+', qos: 1 }], { subscriptionIdentifier: 42 });
    const m = await receive(c);
    assert.equal(m.topic, 'retx5/a');
    assert.equal(m.retain, true);
    assert.deepEqual(ids(m), [42]);
    const left = m.properties?.messageExpiryInterval;
    assert.ok(left !== undefined && left < 30 && left >= 28, `remaining ${left}`);
    assert.equal(await quiet(c), true, 'the expired one is not sent [MQTT-3.3.2-5]');
    await publish(pub, 'retx5/a', '', 0, { retain: true });
  });

  test('v5 server → client topic aliases stay within the client\'s Topic Alias Maximum and resolve consistently [MQTT-3.3.2-9] [MQTT-3.3.2-10]', async () => {
    const c = await client(5, 'sta', { properties: { topicAliasMaximum: 2 } });
    await subscribe(c, [{ topic: 'sta5/+', qos: 0 }]);
    const pub = await client(5, 'sta-pub');
    const sent: string[] = [];
    for (let i = 0; i < 12; i++) {
      const t = `sta5/${i % 4}`;
      sent.push(t);
      await publish(pub, t, String(i), 0);
    }
    const map = new Map<number, string>();
    const seen: string[] = [];
    for (let i = 0; i < 12; i++) {
      const m = await c.next('publish');
      const alias = m.properties?.topicAlias;
      let topic = m.topic;
      if (alias !== undefined) {
        assert.ok(alias >= 1 && alias <= 2, `alias ${alias}`);
        if (topic === '') topic = map.get(alias) ?? assert.fail(`alias ${alias} used before it was set`);
        else map.set(alias, topic);
      }
      assert.notEqual(topic, '');
      seen.push(topic);
    }
    assert.deepEqual(seen, sent);
  });

  test('v5 a message larger than the client\'s Maximum Packet Size is skipped as if delivered, without using up Receive Maximum [MQTT-3.1.2-25]', async () => {
    const c = await client(5, 'mps-rm', { properties: { maximumPacketSize: 100, receiveMaximum: 1 } });
    await subscribe(c, [{ topic: 'mpsrm5/+', qos: 1 }]);
    const pub = await client(5, 'mps-rm-pub');
    for (let i = 0; i < 3; i++) await publish(pub, 'mpsrm5/big', Buffer.alloc(300), 1);
    await publish(pub, 'mpsrm5/small', 'ok', 1);
    assert.equal((await receive(c)).topic, 'mpsrm5/small');
  });

  test('v5 PUBREC with a failure reason ends the QoS 2 exchange (no PUBREL), PUBREL for an unknown id gets PUBCOMP 0x92 [MQTT-4.3.3]', async () => {
    const c = await client(5, 'pubrec-fail', { properties: { receiveMaximum: 1 } });
    await subscribe(c, [{ topic: 'prf5/x', qos: 2 }]);
    const pub = await client(5, 'pubrec-fail-pub');
    await publish(pub, 'prf5/x', 'one', 2);
    await publish(pub, 'prf5/x', 'two', 2);
    const m = await c.next('publish');
    c.send({ cmd: 'pubrec', messageId: m.messageId!, reasonCode: 0x80 });
    const next = await c.next('publish');
    assert.equal(next.payload.toString(), 'two', 'the window slot was freed');
    assert.equal(c.packets.some((p) => p.cmd === 'pubrel'), false);
    c.send({ cmd: 'pubrel', messageId: 4242 });
    const comp = await c.next('pubcomp');
    assert.equal(comp.messageId, 4242);
    assert.equal(comp.reasonCode, 0x92);
  });

  test('v5 Request Problem Information 0: no Reason String on PUBACK [MQTT-3.1.2-29]', async () => {
    const c = await client(5, 'rpi0', { properties: { requestProblemInformation: false } });
    c.send({ cmd: 'publish', topic: 'rpi5/x', payload: Buffer.from([0xff]), qos: 1, messageId: 5, retain: false, dup: false, properties: { payloadFormatIndicator: true } });
    const ack = await c.next('puback');
    assert.equal(ack.reasonCode, 0x99);
    assert.equal(ack.properties?.reasonString, undefined);
    const d = await client(5, 'rpi1');
    d.send({ cmd: 'publish', topic: 'rpi5/x', payload: Buffer.from([0xff]), qos: 1, messageId: 5, retain: false, dup: false, properties: { payloadFormatIndicator: true } });
    assert.ok((await d.next('puback')).properties?.reasonString, 'reason string by default');
  });

  test('v5 will properties travel with the will: user properties, content type, response topic, correlation data, expiry', async () => {
    const watch = await client(5, 'wp-watch');
    await subscribe(watch, [{ topic: 'wp5/#', qos: 1 }]);
    const properties = { userProperties: { k: 'v' }, contentType: 'text/plain', responseTopic: 'wp5/reply', correlationData: Buffer.from('cd'), messageExpiryInterval: 60, payloadFormatIndicator: true };
    const c = await client(5, 'wp', { will: { topic: 'wp5/dead', payload: Buffer.from('bye'), qos: 1, retain: false, properties } });
    c.destroy();
    const m = await receive(watch);
    assert.equal(m.topic, 'wp5/dead');
    assert.deepEqual({ ...m.properties?.userProperties }, { k: 'v' });
    assert.equal(m.properties?.contentType, 'text/plain');
    assert.equal(m.properties?.responseTopic, 'wp5/reply');
    assert.deepEqual(Buffer.from(m.properties!.correlationData!), Buffer.from('cd'));
    assert.equal(m.properties?.payloadFormatIndicator, true);
    assert.ok((m.properties?.messageExpiryInterval ?? 0) > 55);
  });

  test('v5 overlapping subscriptions with No Local on one: the other still delivers the client\'s own message', async () => {
    const c = await client(5, 'nl-overlap');
    await subscribe(c, [{ topic: 'nlo5/#', qos: 1, nl: true }, { topic: 'nlo5/x', qos: 0 }]);
    await publish(c, 'nlo5/x', 'own', 1);
    const m = await receive(c);
    assert.equal(m.payload.toString(), 'own');
    assert.equal(m.qos, 0, 'only the subscription without No Local matched');
  });

  test('v5 a repeated SUBSCRIBE replaces the subscription, Subscription Identifier included [MQTT-3.8.4-3]; UNSUBSCRIBE of an invalid filter → 0x8F', async () => {
    const c = await client(5, 'subid-replace');
    await subscribe(c, [{ topic: 'sir5/x', qos: 1 }], { subscriptionIdentifier: 5 });
    await publish(c, 'sir5/x', 'with id', 1);
    assert.deepEqual(ids(await receive(c)), [5]);
    await subscribe(c, [{ topic: 'sir5/x', qos: 0 }]);
    await publish(c, 'sir5/x', 'without id', 1);
    const m = await receive(c);
    assert.deepEqual(ids(m), [], 'the identifier went with the replaced subscription');
    assert.equal(m.qos, 0, 'and so did the QoS');
    const messageId = packetId();
    c.send({ cmd: 'unsubscribe', messageId, unsubscriptions: ['sir5/#/x', 'sir5/x'] });
    assert.deepEqual((await c.next('unsuback')).granted, [0x8f, 0x00]);
  });

  test('MQTT 3.1 (MQIsdp, level 3) client: connect, subscribe, publish at QoS 1', async () => {
    const { client: c, connack } = await RawClient.connect(broker.mqttPort, { clientId: 'mqisdp', clean: true }, 3);
    assert.equal(connack.returnCode, 0);
    await subscribe(c, [{ topic: 'mqisdp/x', qos: 1 }]);
    await publish(c, 'mqisdp/x', 'old', 1);
    assert.equal((await receive(c)).payload.toString(), 'old');
  });

  test('a refused CONNECT: nothing pipelined behind it is processed, nothing but CONNACK is sent [MQTT-3.1.4-5 (3.1.1)]', async () => {
    const watch = await client(4, 'refused-watch');
    await subscribe(watch, [{ topic: 'refused/#', qos: 0 }]);
    const raw = await RawClient.open(broker.mqttPort, 4);
    const connectBytes = Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x00, 0, 0, 0, 0]); // empty id, clean 0 → 0x02
    const publishBytes = mqttPacket.generate({ cmd: 'publish', topic: 'refused/x', payload: Buffer.from('x'), qos: 0, retain: false, dup: false });
    raw.write(Buffer.concat([connectBytes, publishBytes]));
    assert.equal(await raw.waitClosed(), true);
    assert.deepEqual(raw.packets.map((p) => p.cmd), ['connack']);
    assert.equal(await quiet(watch), true);
  });

  test('v5 topic aliases belong to one network connection: a new connection cannot use an alias set by the old one (§3.3.2.3.4)', async () => {
    const a = await client(5, 'alias-scope', { clean: false, properties: { sessionExpiryInterval: 30 } });
    await publish(a, 'alsc5/x', 'a', 0, { properties: { topicAlias: 1 } });
    await disconnect(a);
    const b = await client(5, 'alias-scope', { clean: false, properties: { sessionExpiryInterval: 30 } });
    b.send({ cmd: 'publish', topic: '', payload: Buffer.from('b'), qos: 0, retain: false, dup: false, properties: { topicAlias: 1 } });
    await expectDisconnect(b, 0x82);
  });

  test('keepalive is reset by any control packet, not only PINGREQ [MQTT-3.1.2-23]', async () => {
    const c = await client(4, 'ka-traffic', { keepalive: 1 });
    for (let i = 0; i < 6; i++) {
      await publish(c, 'katraffic/x', String(i), 1);
      await sleep(400);
    }
    assert.equal(c.closed, false);
  });

  test('v5 a property that may appear once, given twice, is a Protocol Error → DISCONNECT 0x82 (§2.2.2.2, e.g. §3.3.2.3.2)', async () => {
    const topic = [0x00, 0x03, 0x61, 0x2f, 0x62]; // "a/b"
    const cases: [string, number[]][] = [
      ['Payload Format Indicator', [0x01, 0x01, 0x01, 0x01]],
      ['Content Type', [0x03, 0x00, 0x01, 0x61, 0x03, 0x00, 0x01, 0x61]],
      ['Message Expiry Interval', [0x02, 0, 0, 0, 9, 0x02, 0, 0, 0, 9]],
      ['Correlation Data', [0x09, 0x00, 0x01, 0x61, 0x09, 0x00, 0x01, 0x61]],
      ['Payload Format Indicator 0 then 1', [0x01, 0x00, 0x01, 0x01]],
      ['Message Expiry Interval 0 then 0', [0x02, 0, 0, 0, 0, 0x02, 0, 0, 0, 0]],
    ];
    for (const [i, [what, props]] of cases.entries()) {
      const c = await client(5, `dupprop-${i}`);
      const body = [...topic, props.length, ...props, 0x78];
      c.write(Buffer.from([0x30, body.length, ...body]));
      await expectDisconnect(c, 0x82).catch((err: Error) => {
        throw new Error(`${what}: ${err.message}`);
      });
    }
  });

  test('v5 a property not defined for the packet is a Malformed Packet → DISCONNECT 0x81 (§2.2.2.2)', async () => {
    const cases: [string, number[], string][] = [
      // topic "a/b", packet id 1, properties: Session Expiry Interval 5, empty payload
      ['PUBLISH with Session Expiry Interval', [0x32, 13, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x00, 0x01, 5, 0x11, 0, 0, 0, 5], 'sessionExpiryInterval'],
      // packet id 1, properties: Topic Alias 1, filter "a/b" with options 0
      ['SUBSCRIBE with Topic Alias', [0x82, 12, 0x00, 0x01, 3, 0x23, 0x00, 0x01, 0x00, 0x03, 0x61, 0x2f, 0x62, 0x00], 'topicAlias'],
      // packet id 7, reason 0, properties: Content Type "a"
      ['PUBACK with Content Type', [0x40, 8, 0x00, 0x07, 0x00, 4, 0x03, 0x00, 0x01, 0x61], 'contentType'],
    ];
    for (const [what, bytes, name] of cases) {
      const c = await client(5, `misplaced-${bytes[0]}`);
      c.write(Buffer.from(bytes));
      const d = await c.next('disconnect');
      assert.equal(d.reasonCode, 0x81, what);
      assert.match(d.properties?.reasonString ?? '', new RegExp(name), what);
    }
    // CONNECT with a PUBLISH-only property, and a will with a CONNECT-only one: closed without CONNACK
    for (const props of [{ topicAlias: 3 }, { will: { sessionExpiryInterval: 3 } }] as const) {
      const raw = await RawClient.open(broker.mqttPort, 5);
      const willProps = 'will' in props ? props.will : undefined;
      raw.write(mqttPacket.generate({
        cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: 'misplaced-connect',
        ...(willProps ? { will: { topic: 'm/w', payload: Buffer.from('x'), qos: 0, retain: false, properties: willProps as never } } : { properties: props as never }),
      }, { protocolVersion: 5 }));
      assert.equal(await raw.waitClosed(), true);
      assert.equal(raw.packets.some((p) => p.cmd === 'connack' && p.reasonCode === 0), false);
    }
  });

  test('reserved packet types and a malformed Remaining Length close the connection [MQTT-2.2.2-2] [MQTT-4.8.0-1]', async () => {
    for (const [v, bytes] of [[4, [0x00, 0x00]], [4, [0xf0, 0x00]], [5, [0x00, 0x00]], [4, [0x30, 0xff, 0xff, 0xff, 0xff, 0x01]], [5, [0x30, 0xff, 0xff, 0xff, 0xff, 0x01]]] as const) {
      const raw = await afterConnect(v, `reserved-type-${v}-${bytes[0]}-${bytes.length}`);
      raw.write(Buffer.from(bytes));
      await expectRefused(raw, v, 0x81);
    }
  });

  test('wildcard matching on the Paho topic set, own broker so "#" sees only these [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.7.3]', async () => {
    const own = await startBroker();
    const topics = ['TopicA', 'TopicA/B', 'Topic/C', 'TopicA/C', '/TopicA', 'TopicA//B'];
    const expected: Record<string, string[]> = {
      'TopicA/+': ['TopicA/B', 'TopicA/C'],
      '+/C': ['Topic/C', 'TopicA/C'],
      '#': topics,
      '/#': ['/TopicA'],
      '/+': ['/TopicA'],
      '+/+': ['TopicA/B', 'Topic/C', 'TopicA/C', '/TopicA'],
      'TopicA/#': ['TopicA', 'TopicA/B', 'TopicA/C', 'TopicA//B'],
      '+': ['TopicA'],
      'TopicA/B/#': ['TopicA/B'],
      'TopicA/+/B': ['TopicA//B'],
      'topica/#': [],
    };
    const subs = new Map<string, RawClient>();
    for (const filter of Object.keys(expected)) {
      const { client: c } = await RawClient.connect(own.mqttPort, { clientId: `wm-${filter}` }, 4);
      await subscribe(c, [{ topic: filter, qos: 1 }]);
      subs.set(filter, c);
    }
    const { client: pub } = await RawClient.connect(own.mqttPort, { clientId: 'wm-pub' }, 4);
    for (const t of topics) await publish(pub, t, t, 1);
    await sleep(300);
    for (const [filter, c] of subs) {
      const got = (c.packets.filter((p) => p.cmd === 'publish') as Publish[]).map((p) => p.topic).sort();
      assert.deepEqual(got, [...expected[filter]!].sort(), `filter ${filter}`);
    }
    await own.stop();
  });

  test('v5 redelivery on resumption respects the new connection\'s Receive Maximum [MQTT-3.3.4-9] [MQTT-4.4.0-1]', async () => {
    const persistent = { clean: false, properties: { sessionExpiryInterval: 30, receiveMaximum: 5 } };
    const a = await client(5, 'rm-resume', persistent);
    await subscribe(a, [{ topic: 'rmr5/x', qos: 2 }]);
    const pub = await client(5, 'rm-resume-pub');
    for (let i = 0; i < 5; i++) await publish(pub, 'rmr5/x', String(i), i % 2 === 0 ? 1 : 2);
    const first: Publish[] = [];
    for (let i = 0; i < 5; i++) first.push(await a.next('publish'));
    a.destroy();
    await a.closedPromise;
    await sleep(100);
    const b = await client(5, 'rm-resume', { clean: false, properties: { sessionExpiryInterval: 30, receiveMaximum: 2 } });
    await sleep(300);
    const resent = b.packets.filter((p) => p.cmd === 'publish') as Publish[];
    assert.equal(resent.length, 2, `at most 2 unacknowledged, got ${resent.length}`);
    const seen: Publish[] = [];
    for (let i = 0; i < 5; i++) {
      const m = await b.next('publish');
      assert.equal(m.dup, true);
      seen.push(m);
      if (m.qos === 1) b.send({ cmd: 'puback', messageId: m.messageId! });
      else {
        b.send({ cmd: 'pubrec', messageId: m.messageId! });
        await b.next('pubrel');
        b.send({ cmd: 'pubcomp', messageId: m.messageId! });
      }
    }
    assert.deepEqual(seen.map((m) => [m.messageId, m.payload.toString()]), first.map((m) => [m.messageId, m.payload.toString()]), 'same ids, same order');
    assert.equal(await quiet(b), true);
  });

  test('v5 user properties with a repeated name interleaved with another keep their wire order [MQTT-3.3.2-18]', async () => {
    const withId = await client(5, 'up-order-id');
    await subscribe(withId, [{ topic: 'upo5/x', qos: 1 }], { subscriptionIdentifier: 3 }); // encoded per subscriber
    const plain = await client(5, 'up-order');
    await subscribe(plain, [{ topic: 'upo5/x', qos: 1 }]); // the shared encode
    const pub = await client(5, 'up-order-pub');
    const up = (k: string, v: string): number[] => [0x26, 0, k.length, ...Buffer.from(k), 0, v.length, ...Buffer.from(v)];
    const props = [...up('a', '1'), ...up('b', '2'), ...up('a', '3')];
    for (const qos of [0, 1] as const) {
      const wires = [withId, plain].map((c) => {
        const wire: Buffer[] = [];
        const onData = (b: Buffer): number => wire.push(b);
        c.socket.on('data', onData);
        return { c, wire, onData };
      });
      const body = [0x00, 0x06, ...Buffer.from('upo5/x'), ...(qos ? [0x00, 0x09] : []), props.length, ...props, 0x78, 0x79];
      pub.write(Buffer.from([0x30 | (qos << 1), body.length, ...body]));
      for (const { c, wire, onData } of wires) {
        const m = await receive(c);
        c.socket.off('data', onData);
        assert.equal(m.payload.toString(), 'xy', 'payload intact');
        assert.deepEqual(ids(m), c === withId ? [3] : []);
        assert.deepEqual({ ...m.properties?.userProperties }, { a: ['1', '3'], b: '2' });
        const bytes = Buffer.concat(wire);
        const at = (k: string, v: string): number => bytes.indexOf(Buffer.from(up(k, v)));
        assert.ok(at('a', '1') >= 0 && at('a', '1') < at('b', '2') && at('b', '2') < at('a', '3'), `QoS ${qos}: order a=1, b=2, a=3 (offsets ${at('a', '1')}, ${at('b', '2')}, ${at('a', '3')})`);
      }
    }
  });

  test('v5 CONNECT: Authentication Data without Authentication Method is a Protocol Error (§3.1.2.11.10); a method we lack → 0x8C', async () => {
    const a = await connect(5, { clientId: 'authdata', properties: { authenticationData: Buffer.from('x') } });
    assert.equal(a.connack.reasonCode, 0x82);
    assert.equal(await a.client.waitClosed(), true);
    const b = await connect(5, { clientId: 'authmethod', properties: { authenticationMethod: 'SCRAM-SHA-1' } });
    assert.equal(b.connack.reasonCode, 0x8c);
    assert.equal(await b.client.waitClosed(), true);
  });

  test('UTF-8: an ill-formed string anywhere is a malformed packet, a well-formed U+FFFD is an ordinary character [MQTT-1.5.4-1]', async () => {
    const sub = await client(5, 'u8-sub');
    await subscribe(sub, [{ topic: 'u8/\uFFFD', qos: 0 }]);
    const pub = await client(5, 'u8-pub');
    await publish(pub, 'u8/\uFFFD', 'replacement character', 0, { properties: { contentType: 'text/\uFFFD', userProperties: { '\uFFFD': '\uFFFD' } } });
    const m = await receive(sub);
    assert.equal(m.topic, 'u8/\uFFFD');
    assert.equal(m.properties?.contentType, 'text/\uFFFD');
    const bad = [0xed, 0xa0, 0x80]; // a UTF-16 surrogate, encoded: not UTF-8
    const cases: [string, number[]][] = [
      // PUBLISH QoS 0, topic "a/b", properties: Content Type <bad>, payload "x"
      ['content type', [0x30, 13, 0x00, 0x03, 0x61, 0x2f, 0x62, 6, 0x03, 0x00, 0x03, ...bad, 0x78]],
      // PUBLISH QoS 0, topic "a/b", properties: User Property ("k", <bad>), payload "x"
      ['user property value', [0x30, 16, 0x00, 0x03, 0x61, 0x2f, 0x62, 9, 0x26, 0x00, 0x01, 0x6b, 0x00, 0x03, ...bad, 0x78]],
      // PUBLISH QoS 0, topic "a" + <bad>
      ['topic', [0x30, 8, 0x00, 0x04, 0x61, ...bad, 0x00, 0x78]],
    ];
    for (const [what, bytes] of cases) {
      const c = await client(5, `u8-bad-${what}`);
      c.write(Buffer.from(bytes));
      const d = await c.next('disconnect').catch((err: Error) => assert.fail(`${what}: ${err.message}`));
      assert.equal(d.reasonCode, 0x81, what);
    }
    // CONNECT 3.1.1 with client id "a" + <bad>: closed without CONNACK
    const raw = await RawClient.open(broker.mqttPort, 4);
    raw.write(Buffer.from([0x10, 16, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 0, 0, 4, 0x61, ...bad]));
    assert.equal(await raw.waitClosed(), true);
    assert.equal(raw.packets.length, 0);
  });

  test('server limits announced in CONNACK are the ones applied: Server Keep Alive [MQTT-3.2.2-21], capped Session Expiry Interval (§3.2.2.3.2)', async () => {
    const own = await startBroker({ args: ['--mqtt-max-keepalive-sec', '1', '--mqtt-max-session-expiry-sec', '1'] });
    const ka = await RawClient.connect(own.mqttPort, { clientId: 'ska-used', keepalive: 0 }, 5);
    assert.equal(ka.connack.properties?.serverKeepAlive, 1);
    const start = Date.now();
    const d = await ka.client.next('disconnect', 4000);
    assert.equal(d.reasonCode, 0x8d);
    assert.ok(Date.now() - start >= 1000, `closed after the keep alive (${Date.now() - start} ms)`);
    const s1 = await RawClient.connect(own.mqttPort, { clientId: 'sx-cap', clean: false, properties: { sessionExpiryInterval: 100 } }, 5);
    assert.equal(s1.connack.properties?.sessionExpiryInterval, 1);
    await disconnect(s1.client);
    const s2 = await RawClient.connect(own.mqttPort, { clientId: 'sx-cap', clean: false, properties: { sessionExpiryInterval: 100 } }, 5);
    assert.equal(s2.connack.sessionPresent, true);
    await disconnect(s2.client);
    await sleep(1600);
    const s3 = await RawClient.connect(own.mqttPort, { clientId: 'sx-cap', clean: false, properties: { sessionExpiryInterval: 100 } }, 5);
    assert.equal(s3.connack.sessionPresent, false, 'expired after the granted second');
    await disconnect(s3.client);
    await own.stop();
  });

  test('v5 one-byte properties above 1 are Protocol Errors: Request Problem Information 2 in CONNECT, Payload Format Indicator 2 in PUBLISH', async () => {
    // CONNECT level 5, clean, keepalive 0, properties: Request Problem Information 2, client id "rpi2"
    const raw = await RawClient.open(broker.mqttPort, 5);
    raw.write(Buffer.from([0x10, 19, 0, 4, 0x4d, 0x51, 0x54, 0x54, 5, 0x02, 0, 0, 2, 0x17, 0x02, 0, 4, 0x72, 0x70, 0x69, 0x32]));
    assert.equal(await raw.waitClosed(), true);
    assert.equal(raw.packets.some((p) => p.cmd === 'connack' && p.reasonCode === 0), false);
    const c = await client(5, 'pfi2');
    // PUBLISH QoS 0, topic "a/b", properties: Payload Format Indicator 2, payload "x"
    c.write(Buffer.from([0x30, 9, 0x00, 0x03, 0x61, 0x2f, 0x62, 2, 0x01, 0x02, 0x78]));
    await expectDisconnect(c, 0x82);
    const ok = await client(5, 'pfi1');
    ok.write(Buffer.from([0x30, 9, 0x00, 0x03, 0x61, 0x2f, 0x62, 2, 0x01, 0x01, 0x78]));
    assert.equal(await ok.none('disconnect', 200), true, 'value 1 is fine');
  });

  for (const v of [4, 5] as const) {
    test(`v${v} QoS 2 inbound across a reconnect: the held packet id survives in the session, the message is routed once [MQTT-4.3.3-10 (5: -9)] [MQTT-4.1.0-1]`, async () => {
      const watch = await client(v, `q2x-watch-${v}`);
      await subscribe(watch, [{ topic: `q2x${v}/x`, qos: 2 }]);
      const persistent = v === 5 ? { clean: false, properties: { sessionExpiryInterval: 30 } } : { clean: false };
      const a = await client(v, `q2x-${v}`, persistent);
      const packet = { cmd: 'publish' as const, topic: `q2x${v}/x`, payload: Buffer.from('exactly once'), qos: 2 as const, messageId: 77, retain: false, dup: false };
      a.send(packet);
      await a.next('pubrec');
      a.destroy(); // PUBREC lost, as far as the client knows
      await a.closedPromise;
      await sleep(50);
      const b = await connect(v, { clientId: `q2x-${v}`, ...persistent });
      assert.equal(b.connack.sessionPresent, true);
      b.client.send({ ...packet, dup: true });
      assert.equal((await b.client.next('pubrec')).messageId, 77);
      b.client.send({ cmd: 'pubrel', messageId: 77 });
      const comp = await b.client.next('pubcomp');
      assert.equal(comp.reasonCode ?? 0, 0);
      assert.equal((await receive(watch)).payload.toString(), 'exactly once');
      assert.equal(await quiet(watch), true, 'not routed a second time');
    });
  }

  for (const v of [4, 5] as const) {
    test(`v${v} CONNECT, SUBSCRIBE, PUBLISH pipelined in one write: CONNACK comes first, the rest is processed in order [MQTT-3.2.0-1]`, async () => {
      const raw = await RawClient.open(broker.mqttPort, v);
      const g = (packet: mqttPacket.Packet): Buffer => mqttPacket.generate(packet, { protocolVersion: v });
      raw.write(Buffer.concat([
        g({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: v, clean: true, keepalive: 0, clientId: `pipelined-${v}` }),
        g({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `pipe${v}/x`, qos: 1 }] }),
        g({ cmd: 'publish', topic: `pipe${v}/x`, payload: Buffer.from('early'), qos: 1, messageId: 2, retain: false, dup: false }),
      ]));
      const m = await raw.next('publish');
      assert.equal(m.payload.toString(), 'early');
      const order = raw.packets.map((p) => p.cmd);
      assert.equal(order[0], 'connack');
      assert.ok(order.indexOf('suback') > 0);
    });
  }

  test('v3.1.1 QoS 2 inbound: a resent PUBLISH with a held packet id is acknowledged, not delivered twice [MQTT-4.3.3-10 (5: -9)]', async () => {
    const c = await client(4, 'q2dup');
    await subscribe(c, [{ topic: 'q2dup/x', qos: 2 }]);
    const messageId = packetId();
    const packet = { cmd: 'publish' as const, topic: 'q2dup/x', payload: Buffer.from('once'), qos: 2 as const, messageId, retain: false, dup: false };
    c.send(packet);
    assert.equal((await c.next('pubrec')).messageId, messageId);
    c.send({ ...packet, dup: true });
    assert.equal((await c.next('pubrec')).messageId, messageId);
    c.send({ cmd: 'pubrel', messageId });
    assert.equal((await c.next('pubcomp')).messageId, messageId);
    assert.equal((await receive(c)).payload.toString(), 'once');
    assert.equal(await quiet(c), true);
  });
});
