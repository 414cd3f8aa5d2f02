/** Wills: published on an abrupt close, not after a normal DISCONNECT; MQTT 5 0x04 and will delay. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RawClient, startMqtt } from './harness.js';

async function watcher(port: number, filter: string): Promise<RawClient> {
  const { client } = await RawClient.connect(port, { clientId: `watch-${filter}` });
  client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: filter, qos: 1 }] });
  await client.next('suback');
  return client;
}

const will = (topic: string, extra: Record<string, unknown> = {}) => ({ topic, payload: Buffer.from('offline'), qos: 1 as const, retain: true, ...extra });

test('the will is published (with its QoS and retain) when the connection drops without DISCONNECT', async () => {
  const h = await startMqtt();
  const w = await watcher(h.port, 'dev/+/status');
  const { client } = await RawClient.connect(h.port, { clientId: 'd1', will: will('dev/d1/status') });
  client.destroy();
  const m = await w.next('publish');
  assert.equal(m.topic, 'dev/d1/status');
  assert.equal(m.payload.toString(), 'offline');
  assert.equal(m.qos, 1);
  assert.equal(h.ctx.router.retained.get('dev/d1/status')?.payload.toString(), 'offline');
  assert.equal(h.ctx.counters.willsPublished, 1);
});

test('a normal DISCONNECT discards the will; MQTT 5 DISCONNECT 0x04 publishes it', async () => {
  const h = await startMqtt();
  const w = await watcher(h.port, 'w/#');
  const a = await RawClient.connect(h.port, { clientId: 'd2', will: will('w/a') });
  a.client.send({ cmd: 'disconnect' });
  await a.client.closedPromise;
  const b = await RawClient.connect(h.port, { clientId: 'd3', will: will('w/b') }, 5);
  b.client.send({ cmd: 'disconnect', reasonCode: 0x04 });
  const m = await w.next('publish');
  assert.equal(m.topic, 'w/b');
  assert.equal(await w.none('publish', 100), true, 'no will for d2');
});

test('a protocol error and a keepalive timeout publish the will', async () => {
  const h = await startMqtt();
  const w = await watcher(h.port, 'pe/#');
  const { client } = await RawClient.connect(h.port, { clientId: 'd4', will: will('pe/x') }, 5);
  client.send({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: 'd4' });
  assert.equal((await w.next('publish')).topic, 'pe/x');
  await RawClient.connect(h.port, { clientId: 'd4b', keepalive: 1, will: will('pe/silent') }); // never pings
  assert.equal((await w.next('publish', 4000)).topic, 'pe/silent');
});

test('MQTT 5 will delay: not published if the client resumes the session in time, published after the delay otherwise', async () => {
  const h = await startMqtt();
  const w = await watcher(h.port, 'wd/#');
  const connect = { clientId: 'd5', clean: false, properties: { sessionExpiryInterval: 60 }, will: will('wd/x', { properties: { willDelayInterval: 1 } }) };
  const a = await RawClient.connect(h.port, connect, 5);
  a.client.destroy();
  await a.client.closedPromise;
  await new Promise((r) => setTimeout(r, 300));
  const b = await RawClient.connect(h.port, connect, 5); // back within the delay [MQTT-3.1.3-9]
  assert.equal(b.connack.sessionPresent, true);
  assert.equal(await w.none('publish', 1000), true);
  b.client.destroy();
  const started = Date.now();
  const m = await w.next('publish', 3000);
  assert.equal(m.topic, 'wd/x');
  assert.ok(Date.now() - started >= 900, 'published after the delay');
});

test('will delay longer than the session expiry: published when the session ends', async () => {
  const h = await startMqtt();
  const w = await watcher(h.port, 'we/#');
  const a = await RawClient.connect(h.port, { clientId: 'd6', properties: { sessionExpiryInterval: 1 }, will: will('we/x', { properties: { willDelayInterval: 100 } }) }, 5);
  a.client.destroy();
  const m = await w.next('publish', 3000);
  assert.equal(m.topic, 'we/x');
});

test('takeover publishes the old connection\'s will (3.1.1)', async () => {
  const h = await startMqtt();
  const w = await watcher(h.port, 'tk/#');
  await RawClient.connect(h.port, { clientId: 'd7', will: will('tk/x') });
  await RawClient.connect(h.port, { clientId: 'd7' });
  assert.equal((await w.next('publish')).topic, 'tk/x');
});
