/** Topic aliases both ways with a real MQTT 5 client (mqtt.js resolves and assigns them itself). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { startMqtt } from './harness.js';

test('mqtt.js 5: auto-assigned aliases from the publisher, broker-assigned aliases to the subscriber', async () => {
  const h = await startMqtt();
  const sub = await mqtt.connectAsync(h.url, { protocolVersion: 5, reconnectPeriod: 0, properties: { topicAliasMaximum: 5 } });
  const pub = await mqtt.connectAsync(h.url, { protocolVersion: 5, reconnectPeriod: 0, autoAssignTopicAlias: true });
  try {
    await sub.subscribeAsync('alias/#', { qos: 1 });
    const got: { topic: string; payload: string; alias: number | undefined }[] = [];
    sub.on('message', (topic, payload, packet) => got.push({ topic, payload: payload.toString(), alias: packet.properties?.topicAlias }));
    for (let i = 0; i < 3; i++) await pub.publishAsync('alias/a/long/topic/name', String(i), { qos: 1 });
    await pub.publishAsync('alias/b', 'b', { qos: 0 });
    for (let i = 0; i < 100 && got.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(got.map((g) => `${g.topic}=${g.payload}`), ['alias/a/long/topic/name=0', 'alias/a/long/topic/name=1', 'alias/a/long/topic/name=2', 'alias/b=b']);
    assert.ok(got.every((g) => g.alias !== undefined), 'the broker used aliases towards the subscriber');
  } finally {
    sub.end(true);
    pub.end(true);
  }
});
