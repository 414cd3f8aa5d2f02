/**
 * mqtt-packet's first generate() would fill a cache of 65,536 two-byte Buffers (about 15 MiB resident
 * from the first MQTT client on, docs/EMBEDDED.md "Memory and CPU"); the broker's encoder turns it off.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import mqttPacket from 'mqtt-packet';

const require = createRequire(import.meta.url);

test('encoding MQTT packets leaves mqtt-packet\'s number cache empty', async () => {
  const { encodePacket } = (await import(new URL('../../../../../../broker/dist/protocol/mqtt/encode.js', import.meta.url).href)) as { encodePacket(p: mqttPacket.Packet, v: 3 | 4 | 5): Buffer };
  // The copy of mqtt-packet the broker resolves (the test's own may be another one).
  const numbers = createRequire(require.resolve('mqtt-packet', { paths: [new URL('../../../../../../broker/', import.meta.url).pathname] }))('./numbers.js') as { cache: Record<number, Buffer> };
  const bytes = encodePacket({ cmd: 'publish', topic: 'a/b', payload: Buffer.from('x'), qos: 1, messageId: 4242, dup: false, retain: false }, 4);
  assert.deepEqual([...bytes.subarray(0, 2)], [0x32, 8]);
  assert.equal(bytes.readUInt16BE(7), 4242, 'the packet id is written');
  assert.equal(Object.keys(numbers.cache).length, 0);
});
