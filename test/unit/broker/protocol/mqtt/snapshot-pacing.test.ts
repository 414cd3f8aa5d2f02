/**
 * A retained snapshot larger than the pacing window reaches an MQTT TCP subscriber whole. The outbox
 * writes a snapshot while the transport holds less than `snapshotWindowBytes` and waits for a drain
 * beyond; the TCP transport gathers a cork's writes into one buffer, and a socket write the kernel
 * takes at once reports no backpressure, so no drain ever came: a `#` subscriber of 100,000 retained
 * topics got the first 256 KB (3,197 messages) and then nothing (found by `npm run bench -- --full`).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import mqtt from 'mqtt';
import { createMessage } from '@topicast/broker';
import { startMqtt } from './harness.js';

test('a retained snapshot of many windows reaches an MQTT TCP subscriber whole, in order', async () => {
  const h = await startMqtt(['--snapshot-window-bytes', '1024']);
  const count = 2000; // ≈ 150 KB of PUBLISH packets: about 150 windows
  for (let i = 0; i < count; i++) h.ctx.router.publish(createMessage(`snap/${String(i).padStart(4, '0')}`, new Uint8Array(64).fill(i & 0xff), true));
  const sub = await mqtt.connectAsync(h.url, { protocolVersion: 4, reconnectPeriod: 0 });
  try {
    const got: string[] = [];
    sub.on('message', (topic) => got.push(topic));
    await sub.subscribeAsync('snap/#');
    for (let i = 0; i < 500 && got.length < count; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(got.length, count, `received ${got.length} of ${count} retained messages`);
    assert.deepEqual(new Set(got).size, count, 'each topic once');
  } finally {
    sub.end(true);
  }
});
