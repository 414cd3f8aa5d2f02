/**
 * Graceful drain (issue 8, broker/src/session/drain.ts) on a real broker process with real
 * clients: SIGTERM with TOPICAST_DRAIN_MS set makes /healthz answer 503 "draining" and refuse
 * new WebSockets, sends native clients a DRAIN frame with delays spread over the window,
 * disconnects MQTT 5 clients with 0x8B (0x9C + Server Reference when configured) and closes
 * MQTT 3.1.1 ones at spread moments, publishes their wills, and exits 0 in time.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import mqtt from 'mqtt';
import WebSocket from 'ws';
import { decodeServerFrame, encodeFrame, Op, SUBPROTOCOL, type ServerFrame } from 'topicast/protocol';
import { startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';

interface NativeClient {
  ws: WebSocket;
  frames: ServerFrame[];
  closed: Promise<number>;
}

async function nativeClient(broker: BrokerProcess): Promise<NativeClient> {
  const ws = new WebSocket(broker.url, SUBPROTOCOL);
  const frames: ServerFrame[] = [];
  ws.on('message', (data: Buffer) => frames.push(decodeServerFrame(new Uint8Array(data))));
  const closed = new Promise<number>((resolve) => ws.on('close', (code) => resolve(code)));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  return { ws, frames, closed };
}

interface MqttClient {
  client: mqtt.MqttClient;
  /** DISCONNECT packet from the server (MQTT 5), with the time it arrived. */
  disconnect: Promise<{ packet: mqtt.IDisconnectPacket; atMs: number }>;
  /** Time the connection closed. */
  closedAtMs: Promise<number>;
}

async function mqttClient(broker: BrokerProcess, protocolVersion: 4 | 5, id: string): Promise<MqttClient> {
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, {
    protocolVersion, clientId: id, reconnectPeriod: 0, connectTimeout: 5000,
    will: { topic: `drain/wills/${id}`, payload: Buffer.from('offline'), qos: 0, retain: false },
  });
  const disconnect = new Promise<{ packet: mqtt.IDisconnectPacket; atMs: number }>((resolve) => client.once('disconnect', (packet) => resolve({ packet, atMs: Date.now() })));
  const closedAtMs = new Promise<number>((resolve) => client.once('close', () => resolve(Date.now())));
  return { client, disconnect, closedAtMs };
}

async function healthz(broker: BrokerProcess): Promise<{ status: number; body: { status: string } }> {
  const r = await fetch(`${broker.httpUrl}/healthz`);
  return { status: r.status, body: (await r.json()) as { status: string } };
}

test('SIGTERM with drainMs: readiness 503 "draining", DRAIN frames and MQTT disconnects spread over the window, wills published, exit 0', async () => {
  const drainMs = 3000;
  const shutdownTimeoutMs = 2000;
  const broker = await startBroker({ env: { TOPICAST_DRAIN_MS: String(drainMs), TOPICAST_SHUTDOWN_TIMEOUT_MS: String(shutdownTimeoutMs) } });
  assert.equal((await healthz(broker)).status, 200);

  // A native subscriber sees the wills of the MQTT clients the drain disconnects; it ignores its
  // own DRAIN frame (a raw client, not the SDK) and so stays until the end of the window.
  const watcher = await nativeClient(broker);
  watcher.ws.send(encodeFrame({ op: Op.subscribe, id: 1, filters: ['drain/wills/#'], options: {} }));
  await waitFor(() => watcher.frames.some((f) => f.op === Op.snapshotEnd), 'watcher subscribed');
  const natives = [watcher, ...(await Promise.all([1, 2, 3, 4, 5].map(() => nativeClient(broker))))];
  const v5 = await Promise.all([1, 2, 3].map((i) => mqttClient(broker, 5, `drain-v5-${i}`)));
  const v4 = await Promise.all([1, 2, 3].map((i) => mqttClient(broker, 4, `drain-v4-${i}`)));

  const termAtMs = Date.now();
  broker.kill('SIGTERM');

  // Readiness false at once, and no new WebSocket while draining.
  await waitFor(async () => (await healthz(broker)).status === 503, '/healthz 503', 2000);
  assert.equal((await healthz(broker)).body.status, 'draining');
  const refused = await new Promise<number>((resolve, reject) => {
    const ws = new WebSocket(broker.url, SUBPROTOCOL);
    ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.on('open', () => reject(new Error('a WebSocket was accepted while draining')));
    ws.on('error', () => {});
  });
  assert.equal(refused, 503);

  // Native: one DRAIN each, delays inside the window and not all equal.
  await waitFor(() => natives.every((n) => n.frames.some((f) => f.op === Op.drain)), 'DRAIN frames', 2000);
  const delays = natives.map((n) => {
    const f = n.frames.find((x) => x.op === Op.drain);
    assert.ok(f && f.op === Op.drain);
    return f.info.reconnectAfterMs;
  });
  for (const d of delays) assert.ok(d >= 0 && d < drainMs, `reconnectAfterMs ${d} within the ${drainMs} ms window`);
  assert.ok(new Set(delays).size > 1, `delays are spread: ${delays}`);
  assert.ok(Math.max(...delays) - Math.min(...delays) >= drainMs / 3, `delays cover the window: ${delays}`);
  const metrics = await (await fetch(`${broker.httpUrl}/metrics`)).text();
  assert.match(metrics, /^topicast_draining 1$/m);
  assert.match(metrics, /^topicast_drain_native_notified_total 6$/m);

  // MQTT 5: DISCONNECT 0x8B; MQTT 3.1.1: closed; at spread moments inside the window.
  const v5Disconnects = await Promise.all(v5.map((c) => c.disconnect));
  for (const { packet } of v5Disconnects) assert.equal(packet.reasonCode, 0x8b);
  const closedAt = await Promise.all([...v5, ...v4].map((c) => c.closedAtMs));
  assert.ok(Math.max(...closedAt) - Math.min(...closedAt) >= 200, `MQTT closes spread over the window: ${closedAt.map((t) => t - termAtMs)}`);

  // Server-initiated closes publish the will [MQTT-3.1.2-8]: the watcher sees all six.
  await waitFor(() => watcher.frames.filter((f) => f.op === Op.delivery).length === 6, 'six wills', 2000);
  const willTopics = watcher.frames.flatMap((f) => (f.op === Op.delivery ? [f.topic] : [])).sort();
  assert.deepEqual(willTopics, [...v5, ...v4].map((c) => `drain/wills/${c.client.options.clientId}`).sort());

  // Native connections still open at the end of the window are closed with 1001, then the process exits 0.
  for (const code of await Promise.all(natives.map((n) => n.closed))) assert.equal(code, 1001);
  const exit = await broker.exited;
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.ok(Date.now() - termAtMs < drainMs + shutdownTimeoutMs, 'exited within drainMs + shutdownTimeoutMs');
  const logs = broker.logs.join('\n');
  assert.match(logs, /"open":12,.*"draining: clients are told to reconnect elsewhere over the window"/);
  assert.match(logs, /"closing":6,.*"drain window over: closing the rest"/, 'the six native connections were left for the end');
});

test('drainServerReference: MQTT 5 clients get DISCONNECT 0x9C with the Server Reference; a native client obeying DRAIN leaves nothing to close', async () => {
  const broker = await startBroker({ env: { TOPICAST_DRAIN_MS: '1500', TOPICAST_DRAIN_SERVER_REFERENCE: 'other.example:1883' } });
  const c = await mqttClient(broker, 5, 'drain-ref');
  const native = await nativeClient(broker);
  // Metrics before: nothing drained yet.
  const before = await (await fetch(`${broker.httpUrl}/metrics`)).text();
  assert.match(before, /^topicast_draining 0$/m);

  broker.kill('SIGTERM');
  const { packet } = await c.disconnect;
  assert.equal(packet.reasonCode, 0x9c);
  assert.equal(packet.properties?.serverReference, 'other.example:1883');
  // A client obeying DRAIN closes normally (1000): nothing is left for the end of the window.
  await waitFor(() => native.frames.some((f) => f.op === Op.drain), 'DRAIN frame', 2000);
  native.ws.close(1000);
  const exit = await broker.exited;
  assert.deepEqual(exit, { code: 0, signal: null });
  assert.match(broker.logs.join('\n'), /"closing":0,.*"drain window over: closing the rest"/);
});
