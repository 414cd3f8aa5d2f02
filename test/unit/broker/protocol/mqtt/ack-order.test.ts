/** PUBACKs follow PUBLISH order even when a durable retained write delays one of them [MQTT-4.6.0-2]. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryRetainedStore, Router, type Message } from '@topicast/broker';
import { createProtocol, encode, MemoryConnection, settle, testContext } from './harness.js';

class SlowStore extends MemoryRetainedStore {
  override set(message: Message): Promise<void> {
    super.set(message);
    return new Promise((resolve) => setTimeout(resolve, 50));
  }
}

test('a retained publish waiting for a durable write holds back later acknowledgements', async () => {
  const base = testContext();
  const ctx = { ...base, router: new Router(new SlowStore()) };
  const protocol = createProtocol(ctx);
  const conn = new MemoryConnection(5);
  const h = protocol.open(conn);
  h.onMessage(encode({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 5, clean: true, keepalive: 0, clientId: 'order' }, 5));
  await settle();
  const pub = (messageId: number, retain: boolean, qos: 1 | 2 = 1) =>
    encode({ cmd: 'publish', topic: 'o', payload: Buffer.from('x'), qos, dup: false, retain, messageId }, 5);
  h.onMessage(Buffer.concat([pub(1, true), pub(2, false), pub(3, false, 2)]));
  await settle();
  assert.deepEqual(conn.packets.filter((p) => p.cmd !== 'connack').map((p) => p.messageId), [], 'nothing acknowledged before the write is durable');
  await new Promise((r) => setTimeout(r, 80));
  await settle();
  assert.deepEqual(conn.packets.filter((p) => p.cmd !== 'connack').map((p) => `${p.cmd}:${p.messageId}`), ['puback:1', 'puback:2', 'pubrec:3']);
});
