/** The native protocol's slow-consumer policies apply to MQTT QoS 0 deliveries; QoS 1/2 is bounded by the in-flight window instead. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMessage } from '@topicast/broker';
import { createProtocol, encode, MemoryConnection, settle, testContext } from './harness.js';

async function connected(args: string[], version: 4 | 5 = 5) {
  const ctx = testContext(args);
  const protocol = createProtocol(ctx);
  const conn = new MemoryConnection(version);
  const handler = protocol.open(conn);
  handler.onMessage(encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 0, clientId: 'bp' }, version));
  await settle();
  handler.onMessage(encode({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 't/#', qos: 1 }] }, version));
  await settle();
  assert.equal(conn.of('suback').length, 1);
  /** Backs the transport up and lets the outbox see it (it samples the buffer on control writes and flushes). */
  const backUp = async (bytes: number): Promise<void> => {
    conn.buffered = bytes;
    handler.onMessage(encode({ cmd: 'pingreq' }, version));
    await settle();
  };
  return { ctx, protocol, conn, handler, backUp };
}

test('drop policy: QoS 0 deliveries beyond maxBufferedBytes are dropped and counted; acks still flow', async () => {
  const { ctx, conn, handler, backUp } = await connected(['--slow-consumer-policy', 'drop', '--max-buffered-bytes', '1024']);
  await backUp(1500); // the transport is backed up
  for (let i = 0; i < 10; i++) ctx.router.publish(createMessage('t/x', new Uint8Array(10)));
  await settle();
  assert.equal(conn.of('publish').length, 0);
  assert.equal(ctx.outboxStats.dropped, 10);
  handler.onMessage(encode({ cmd: 'pingreq' }, 5));
  await settle();
  assert.equal(conn.of('pingresp').length, 2);
  await backUp(0);
  ctx.router.publish(createMessage('t/x', new Uint8Array([1])));
  await settle();
  assert.equal(conn.of('publish').length, 1);
});

test('disconnect policy: an MQTT 5 slow consumer gets DISCONNECT 0x97 and is closed', async () => {
  const { ctx, conn, backUp } = await connected(['--slow-consumer-policy', 'disconnect', '--max-buffered-bytes', '1024']);
  await backUp(1500);
  ctx.router.publish(createMessage('t/x', new Uint8Array(10)));
  await settle();
  assert.equal(conn.of('disconnect')[0]?.reasonCode, 0x97);
  assert.ok(conn.closed);
  assert.equal(ctx.outboxStats.slowConsumerDisconnects, 1);
});

test('conflate policy keeps the latest QoS 0 value per topic until the connection drains', async () => {
  const { ctx, conn, handler, backUp } = await connected(['--slow-consumer-policy', 'conflate', '--max-buffered-bytes', '1024']);
  await backUp(1500);
  for (let i = 0; i < 5; i++) ctx.router.publish(createMessage('t/a', new Uint8Array([i])));
  ctx.router.publish(createMessage('t/b', new Uint8Array([9])));
  await settle();
  conn.buffered = 0;
  handler.onDrain();
  const got = conn.of('publish').map((p) => `${p.topic}=${[...(p.payload as Buffer)].join()}`);
  assert.deepEqual(got, ['t/a=4', 't/b=9']);
});

test('QoS 1 deliveries are not dropped by the policy: they wait in the session while backed up, then fill the in-flight window', async () => {
  const { ctx, conn, handler, backUp } = await connected(['--slow-consumer-policy', 'drop', '--max-buffered-bytes', '1024', '--mqtt-max-inflight', '2']);
  await backUp(1500);
  for (let i = 0; i < 5; i++) ctx.router.publish(createMessage('t/q', new Uint8Array([i]), false, undefined, 1));
  await settle();
  assert.equal(conn.of('publish').length, 0, 'held in the session while the transport is backed up');
  conn.buffered = 0;
  handler.onDrain();
  await settle();
  const sent = conn.of('publish');
  assert.deepEqual(sent.map((p) => [...(p.payload as Buffer)][0]), [0, 1], 'the in-flight window, in order');
  assert.equal(ctx.outboxStats.dropped, 0);
  handler.onMessage(encode({ cmd: 'puback', messageId: sent[0]!.messageId! }, 5));
  await settle();
  assert.equal(conn.of('publish').length, 3);
  assert.equal(ctx.outboxStats.slowConsumerDisconnects, 0);
});

test('a QoS 1 burst larger than maxBufferedBytes is paced, not disconnected as a slow consumer', async () => {
  const { ctx, conn, handler } = await connected(['--slow-consumer-policy', 'disconnect', '--max-buffered-bytes', '4096', '--mqtt-max-inflight', '1000']);
  for (let i = 0; i < 50; i++) ctx.router.publish(createMessage('t/big', new Uint8Array(1000).fill(i), false, undefined, 1));
  for (let round = 0; round < 50 && conn.of('publish').length < 50; round++) {
    await settle();
    handler.onDrain();
  }
  assert.equal(conn.of('publish').length, 50);
  assert.equal(conn.closed, undefined);
  assert.equal(ctx.outboxStats.slowConsumerDisconnects, 0);
});

test('a message is encoded once per wire shape: subscribers of the same shape share the bytes', async () => {
  const ctx = testContext();
  const protocol = createProtocol(ctx);
  const sent: Uint8Array[] = [];
  for (let i = 0; i < 3; i++) {
    const conn = new MemoryConnection(4);
    const original = conn.send.bind(conn);
    conn.send = (bytes) => {
      sent.push(bytes);
      return original(bytes);
    };
    const h = protocol.open(conn);
    h.onMessage(encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 0, clientId: `sh${i}` }));
    await settle();
    h.onMessage(encode({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 's', qos: 0 }] }));
    await settle();
  }
  sent.length = 0;
  const message = createMessage('s', new Uint8Array([1, 2, 3]));
  ctx.router.publish(message);
  await settle();
  assert.equal(sent.length, 3);
  assert.ok(sent[0] === sent[1] && sent[1] === sent[2], 'the same buffer for every subscriber');
  assert.deepEqual(Object.keys(message.encoded), ['mqtt4:q0']);
});
