/** Per-topic permissions handed over by the auth hook: PUBLISH, wills, SUBSCRIBE and deliveries are checked. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RawClient, startMqtt } from './harness.js';

const permissions = {
  canPublish: (topic: string) => topic.startsWith('ok/') || topic.startsWith('mixed/'),
  canSubscribe: (filter: string): 'allow' | 'deny' | 'filtered' => (filter === 'ok/#' ? 'allow' : filter === 'mixed/#' ? 'filtered' : 'deny'),
  canRead: (topic: string) => !topic.endsWith('/secret'),
};

const pub = (topic: string, payload: string, extra: Record<string, unknown> = {}) =>
  ({ cmd: 'publish', topic, payload: Buffer.from(payload), qos: 1, dup: false, retain: false, messageId: 1, ...extra }) as const;

test('a restricted client: refused publishes (0x87), refused subscriptions (0x87 / 0x80), filtered deliveries, refused will', async () => {
  const h = await startMqtt([], { authenticate: async (username) => (username === 'restricted' ? { allowed: true, permissions } : true) });
  const { client: r } = await RawClient.connect(h.port, { clientId: 'r5', username: 'restricted' }, 5);
  r.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'ok/#', qos: 1 }, { topic: 'mixed/#', qos: 1 }, { topic: 'other/#', qos: 1 }] });
  assert.deepEqual((await r.next('suback')).granted, [1, 1, 0x87]);
  const r4 = await RawClient.connect(h.port, { clientId: 'r4', username: 'restricted' });
  r4.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'other/#', qos: 0 }] });
  assert.deepEqual((await r4.client.next('suback')).granted, [0x80]);

  r.send(pub('other/x', 'no'));
  assert.equal((await r.next('puback')).reasonCode, 0x87);
  const { client: free } = await RawClient.connect(h.port, { clientId: 'free' }, 5);
  free.send(pub('mixed/a/secret', 'hidden', { messageId: 2 }));
  free.send(pub('mixed/a/open', 'shown', { messageId: 3 }));
  const m = await r.next('publish');
  assert.equal(m.topic, 'mixed/a/open');
  assert.equal(await r.none('publish', 100), true);
  assert.ok(h.ctx.auth.stats.withheld >= 1);

  const willed = await RawClient.connect(h.port, { clientId: 'rw', username: 'restricted', will: { topic: 'other/will', payload: Buffer.from('x'), qos: 0, retain: false } }, 5);
  assert.equal(willed.connack.reasonCode, 0x87);
});

test('credentials that expire close the connection (MQTT 5: DISCONNECT 0x87) and publish the will', async () => {
  const h = await startMqtt(['--auth-clock-skew-sec', '0'], { timerIntervalMs: 50, authenticate: async (_u, _p, clientId) => (clientId === 'expiring' ? { allowed: true, expiresAtMs: Date.now() + 300 } : true) });
  const { client: w } = await RawClient.connect(h.port, { clientId: 'ew' }, 5);
  w.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'exp/will', qos: 0 }] });
  await w.next('suback');
  const { client } = await RawClient.connect(h.port, { clientId: 'expiring', will: { topic: 'exp/will', payload: Buffer.from('gone'), qos: 0, retain: false } }, 5);
  const d = await client.next('disconnect', 3000);
  assert.equal(d.reasonCode, 0x87);
  assert.equal((await w.next('publish', 3000)).payload.toString(), 'gone');
});
