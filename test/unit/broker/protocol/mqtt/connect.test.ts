/** CONNECT rules of MQTT 3.1.1 and 5, packet by packet, against the in-process listener. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { RawClient, startMqtt } from './harness.js';

test('3.1.1: an empty client id with clean session is assigned one; without clean session it is rejected (rc 2)', async () => {
  const h = await startMqtt();
  const ok = await RawClient.connect(h.port, { clientId: '', clean: true });
  assert.equal(ok.connack.returnCode, 0);
  const bad = await RawClient.open(h.port);
  // CONNECT 3.1.1, flags 0 (clean session 0), keepalive 0, empty client id: mqtt-packet refuses to build it.
  bad.write(Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0, 0, 0, 0, 0]));
  assert.equal((await bad.next('connack')).returnCode, 2); // [MQTT-3.1.3-8]
  assert.equal(await bad.waitClosed(), true);
});

test('MQTT 5: an empty client id gets an Assigned Client Identifier, and CONNACK states our limits', async () => {
  const h = await startMqtt(['--mqtt-max-inflight', '7', '--mqtt-max-topic-aliases', '5']);
  const { connack } = await RawClient.connect(h.port, { clientId: '' }, 5);
  assert.equal(connack.reasonCode, 0);
  assert.match(connack.properties?.assignedClientIdentifier ?? '', /^auto-[0-9a-f]{24}$/);
  assert.equal(connack.properties?.receiveMaximum, 7);
  assert.equal(connack.properties?.topicAliasMaximum, 5);
  assert.ok((connack.properties?.maximumPacketSize ?? 0) > 256 * 1024);
});

test('an unsupported protocol level gets CONNACK 0x01 and a close', async () => {
  const h = await startMqtt();
  const c = await RawClient.open(h.port);
  // CONNECT with protocol level 6.
  c.write(Buffer.from([0x10, 12, 0, 4, 0x4d, 0x51, 0x54, 0x54, 6, 2, 0, 0, 0, 0]));
  const connack = await c.next('connack');
  assert.equal(connack.returnCode, 1); // [MQTT-3.1.2-2]
  assert.equal(await c.waitClosed(), true);
});

test('the first packet must be CONNECT; a second CONNECT is a protocol error', async () => {
  const h = await startMqtt();
  const c = await RawClient.open(h.port);
  c.send({ cmd: 'pingreq' });
  assert.equal(await c.waitClosed(), true); // [MQTT-3.1.0-1]
  assert.equal(c.packets.length, 0);

  const { client } = await RawClient.connect(h.port, { clientId: 'twice' }, 5);
  client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: 'twice' });
  const d = await client.next('disconnect');
  assert.equal(d.reasonCode, 0x82); // [MQTT-3.1.0-2]
  assert.equal(await client.waitClosed(), true);
});

test('the auth hook refuses with 3.1.1 rc 4 / MQTT 5 0x86, and sees username, password and client id', async () => {
  const seen: unknown[] = [];
  const h = await startMqtt([], {
    authenticate: async (username, password, clientId) => {
      seen.push([username, password && Buffer.from(password).toString(), clientId]);
      return username === 'good';
    },
  });
  const bad4 = await RawClient.connect(h.port, { clientId: 'x', username: 'bad', password: Buffer.from('pw') });
  assert.equal(bad4.connack.returnCode, 4);
  const bad5 = await RawClient.connect(h.port, { clientId: 'y', username: 'bad' }, 5);
  assert.equal(bad5.connack.reasonCode, 0x86);
  const good = await RawClient.connect(h.port, { clientId: 'z', username: 'good', password: Buffer.from('s3cret') }, 5);
  assert.equal(good.connack.reasonCode, 0);
  assert.deepEqual(seen, [['bad', 'pw', 'x'], ['bad', undefined, 'y'], ['good', 's3cret', 'z']]);
});

test('packets pipelined behind CONNECT wait for the auth hook and run in order', async () => {
  const h = await startMqtt([], { authenticate: () => new Promise((r) => setTimeout(() => r(true), 50)) });
  const c = await RawClient.open(h.port);
  c.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: 'pipe' });
  c.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'p/1', qos: 0 }] });
  c.send({ cmd: 'publish', topic: 'p/1', payload: Buffer.from('x'), qos: 0, dup: false, retain: false });
  assert.equal((await c.next('connack')).returnCode, 0);
  assert.deepEqual((await c.next('suback')).granted, [0]);
  assert.equal((await c.next('publish')).payload.toString(), 'x');
});

test('maxConnections: CONNACK 0x9F in MQTT 5, return code 3 in 3.1.1', async () => {
  const h = await startMqtt(['--max-connections', '1']);
  const first = await RawClient.connect(h.port, { clientId: 'one' });
  assert.equal(first.connack.returnCode, 0);
  const v5 = await RawClient.connect(h.port, { clientId: 'two' }, 5);
  assert.equal(v5.connack.reasonCode, 0x9f);
  const v4 = await RawClient.connect(h.port, { clientId: 'three' });
  assert.equal(v4.connack.returnCode, 3);
  assert.equal(h.ctx.counters.connectionsRefused, 2);
});

test('client id takeover: the old MQTT 5 connection gets DISCONNECT 0x8E and is closed', async () => {
  const h = await startMqtt();
  const old = await RawClient.connect(h.port, { clientId: 'dup' }, 5);
  const fresh = await RawClient.connect(h.port, { clientId: 'dup' }, 5);
  assert.equal(fresh.connack.reasonCode, 0);
  assert.equal((await old.client.next('disconnect')).reasonCode, 0x8e); // [MQTT-3.1.4-3]
  assert.equal(await old.client.waitClosed(), true);
  assert.equal(h.protocol.server.stats.takeovers, 1);
  // The new connection works.
  fresh.client.send({ cmd: 'pingreq' });
  await fresh.client.next('pingresp');
});

test('keepalive: 1.5 x the keepalive without a packet closes the connection (MQTT 5: DISCONNECT 0x8D)', async () => {
  const h = await startMqtt();
  const started = Date.now();
  const c4 = await RawClient.connect(h.port, { clientId: 'ka4', keepalive: 1 });
  const c5 = await RawClient.connect(h.port, { clientId: 'ka5', keepalive: 1 }, 5);
  assert.equal((await c5.client.next('disconnect', 4000)).reasonCode, 0x8d);
  assert.equal(await c4.client.waitClosed(4000), true);
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 1400 && elapsed < 3500, `closed after ${elapsed} ms`);
  // A pinging client stays.
  const alive = await RawClient.connect(h.port, { clientId: 'ka-ping', keepalive: 1 });
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 500));
    alive.client.send({ cmd: 'pingreq' });
    await alive.client.next('pingresp');
  }
  assert.equal(alive.client.closed, false);
});

test('MQTT 5 Server Keep Alive caps a larger keepalive', async () => {
  const h = await startMqtt(['--mqtt-max-keepalive-sec', '30']);
  const { connack } = await RawClient.connect(h.port, { clientId: 'cap', keepalive: 600 }, 5);
  assert.equal(connack.properties?.serverKeepAlive, 30);
});

test('MQTT 5 CONNECT protocol errors: Receive Maximum 0 (0x82), an authentication method (0x8C)', async () => {
  const h = await startMqtt();
  const a = await RawClient.connect(h.port, { clientId: 'r0', properties: { receiveMaximum: 0 } }, 5);
  assert.equal(a.connack.reasonCode, 0x82);
  const b = await RawClient.connect(h.port, { clientId: 'am', properties: { authenticationMethod: 'SCRAM-SHA-1' } }, 5);
  assert.equal(b.connack.reasonCode, 0x8c);
});

test('session present: 3.1.1 clean session 0 resumes, clean session 1 discards', async () => {
  const h = await startMqtt();
  const a = await RawClient.connect(h.port, { clientId: 'persist', clean: false });
  assert.equal(a.connack.sessionPresent, false);
  a.client.send({ cmd: 'disconnect' });
  await a.client.waitClosed();
  const b = await RawClient.connect(h.port, { clientId: 'persist', clean: false });
  assert.equal(b.connack.sessionPresent, true); // [MQTT-3.2.2-2]
  b.client.send({ cmd: 'disconnect' });
  await b.client.waitClosed();
  const c = await RawClient.connect(h.port, { clientId: 'persist', clean: true });
  assert.equal(c.connack.sessionPresent, false); // [MQTT-3.2.2-1]
});

test('MQTT 5 session expiry: the session survives its interval, then ends', async () => {
  const h = await startMqtt();
  const a = await RawClient.connect(h.port, { clientId: 'exp', clean: true, properties: { sessionExpiryInterval: 1 } }, 5);
  a.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'exp/x', qos: 1 }] });
  await a.client.next('suback');
  a.client.send({ cmd: 'disconnect', reasonCode: 0 });
  await a.client.waitClosed();
  assert.equal(h.protocol.server.sessions.has('exp'), true);
  const b = await RawClient.connect(h.port, { clientId: 'exp', clean: false, properties: { sessionExpiryInterval: 1 } }, 5);
  assert.equal(b.connack.sessionPresent, true);
  b.client.destroy();
  await b.client.closedPromise;
  await new Promise((r) => setTimeout(r, 1300));
  assert.equal(h.protocol.server.sessions.has('exp'), false);
  assert.equal(h.ctx.router.subscriptionCount, 0);
});

test('graceful shutdown: closeAll sends MQTT 5 clients DISCONNECT 0x8B', async () => {
  const h = await startMqtt();
  const c = await mqtt.connectAsync(h.url, { protocolVersion: 5, reconnectPeriod: 0 });
  const got = new Promise<number | undefined>((r) => c.once('disconnect', (p) => r(p.reasonCode)));
  h.protocol.closeAll();
  assert.equal(await got, 0x8b);
  c.end(true);
});

test('the CONNECT deadline closes a silent connection and one whose auth hook never answers', async () => {
  const h = await startMqtt([], { connectTimeoutMs: 300, timerIntervalMs: 50, authenticate: () => new Promise(() => {}) });
  const silent = await RawClient.open(h.port);
  const stuck = await RawClient.open(h.port);
  stuck.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: 'stuck' });
  assert.equal(await silent.waitClosed(2000), true);
  assert.equal(await stuck.waitClosed(2000), true);
  assert.equal(stuck.packets.length, 0, 'no CONNACK');
});

test('no leak: 200 clean connections that subscribe and vanish leave no session, subscription or connection behind', async () => {
  const h = await startMqtt();
  for (let i = 0; i < 200; i++) {
    const { client } = await RawClient.connect(h.port, { clientId: `leak-${i % 7}`, will: { topic: 'leak/will', payload: Buffer.from('x'), qos: 0, retain: false } }, i % 2 ? 5 : 4);
    client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: `leak/${i}/#`, qos: 1 }, { topic: '$share/g/leak/+', qos: 0 }] });
    await client.next('suback');
    if (i % 3 === 0) client.send({ cmd: 'disconnect' });
    client.destroy();
  }
  for (let i = 0; i < 200 && h.protocol.server.connections.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(h.protocol.server.connections.size, 0);
  assert.equal(h.protocol.server.sessions.size, 0);
  assert.equal(h.protocol.server.shared.size, 0);
  assert.equal(h.ctx.router.subscriptionCount, 0);
  assert.equal(h.ctx.counters.open.mqtt, 0);
});
