/**
 * One WebSocket ↔ MQTT round trip against a running broker, the check every packaging test
 * (Node 18, the release tarball, the .deb, the emulated arm builds) makes: `/healthz` answers,
 * an MQTT publish reaches an SDK subscriber over `/ws`, and an SDK publish reaches an MQTT
 * subscriber. Text codec on the SDK side, so the bytes are the same on both protocols.
 */
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { connect } from 'topicast';
import { within } from './broker.js';

export interface RoundTripTarget {
  /** http://127.0.0.1:PORT */
  httpUrl: string;
  mqttPort: number;
  /** Generous bound for an emulated CPU. */
  timeoutMs?: number;
}

export async function roundTrip(target: RoundTripTarget, tag = 'rt'): Promise<void> {
  const timeoutMs = target.timeoutMs ?? 10_000;
  const health = await fetch(`${target.httpUrl}/healthz`);
  assert.equal(health.status, 200, '/healthz answers 200');
  await health.arrayBuffer();
  const wsUrl = `${target.httpUrl.replace(/^http/, 'ws')}/ws`;
  const client = await connect(wsUrl, { codec: 'text', connectTimeoutMs: timeoutMs });
  const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${target.mqttPort}`, { reconnectPeriod: 0, connectTimeout: timeoutMs });
  try {
    // MQTT → WebSocket
    const fromMqtt = new Promise<string>((resolve) => {
      void client.subscribe(`${tag}/from-mqtt`, (value) => resolve(String(value)));
    });
    await client.subscribe(`${tag}/ready`); // subscriptions are acknowledged in order: the first one is in place
    await m.publishAsync(`${tag}/from-mqtt`, 'hello from mqtt', { qos: 1 });
    assert.equal(await within(fromMqtt, 'MQTT publish reaching the WebSocket subscriber', timeoutMs), 'hello from mqtt');
    // WebSocket → MQTT
    const fromWs = new Promise<string>((resolve) => m.on('message', (topic, payload) => topic === `${tag}/from-ws` && resolve(payload.toString())));
    await m.subscribeAsync(`${tag}/from-ws`, { qos: 1 });
    await client.publish(`${tag}/from-ws`, 'hello from ws', { ack: true });
    assert.equal(await within(fromWs, 'WebSocket publish reaching the MQTT subscriber', timeoutMs), 'hello from ws');
  } finally {
    await client.close();
    await m.endAsync();
  }
}
