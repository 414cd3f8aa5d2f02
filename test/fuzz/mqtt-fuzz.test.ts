/**
 * Fuzzes the MQTT listener of a real broker process over TCP: 10,000+ random and
 * mutated packets (3.1.1 and 5) behind valid CONNECTs, then checks the process is
 * alive, logged no handler failure, and serves a fresh mqtt.js client.
 * Seeded: set MQTT_FUZZ_SEED to replay a failure.
 */
import assert from 'node:assert/strict';
import { connect as netConnect } from 'node:net';
import { test } from 'node:test';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { startBroker } from '../helpers/broker.js';
import { seededRandom } from '../helpers/random.js';

const seed = Number(process.env.MQTT_FUZZ_SEED ?? Date.now() % 1_000_000);


function templates(version: 4 | 5): Buffer[] {
  const g = (p: mqttPacket.Packet) => mqttPacket.generate(p, { protocolVersion: version });
  const props = version === 5;
  return [
    g({ cmd: 'publish', topic: 'f/a', payload: Buffer.from('hello'), qos: 0, dup: false, retain: false }),
    g({ cmd: 'publish', topic: 'f/b', payload: Buffer.from('x'), qos: 1, messageId: 3, dup: false, retain: true, ...(props ? { properties: { topicAlias: 1, userProperties: { a: 'b' }, messageExpiryInterval: 5 } } : {}) }),
    g({ cmd: 'publish', topic: 'f/c', payload: Buffer.alloc(40, 7), qos: 2, messageId: 4, dup: false, retain: false, ...(props ? { properties: { payloadFormatIndicator: true, contentType: 'x' } } : {}) }),
    g({ cmd: 'subscribe', messageId: 5, subscriptions: [{ topic: 'f/#', qos: 2 }, { topic: '+/x', qos: 1 }], ...(props ? { properties: { subscriptionIdentifier: 3 } } : {}) }),
    g({ cmd: 'unsubscribe', messageId: 6, unsubscriptions: ['f/#'] }),
    g({ cmd: 'puback', messageId: 1 }),
    g({ cmd: 'pubrec', messageId: 2 }),
    g({ cmd: 'pubrel', messageId: 4 }),
    g({ cmd: 'pubcomp', messageId: 2 }),
    g({ cmd: 'pingreq' }),
    g({ cmd: 'disconnect', ...(props ? { reasonCode: 4, properties: { sessionExpiryInterval: 10 } } : {}) }),
    g({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 10, clientId: 'again' }),
    ...(props ? [g({ cmd: 'auth', reasonCode: 0x18, properties: { authenticationMethod: 'x' } })] : []),
  ];
}

function mutate(bytes: Buffer, r: () => number): Buffer {
  const out = Buffer.from(bytes);
  // Mostly valid packets, so the session state machine runs deep before a mutation ends the connection.
  if (r() < 0.85) return out;
  switch (Math.floor(r() * 5)) {
    case 0: // flip a few bytes
      for (let i = 0, n = 1 + Math.floor(r() * 3); i < n; i++) out[Math.floor(r() * out.length)] = Math.floor(r() * 256);
      return out;
    case 1: // truncate
      return out.subarray(0, Math.floor(r() * out.length));
    case 2: { // random bytes
      const b = Buffer.alloc(1 + Math.floor(r() * 64));
      for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
      return b;
    }
    case 3: // bad flags in the first byte
      out[0] = (out[0]! & 0xf0) | Math.floor(r() * 16);
      return out;
    case 4: // a remaining length that lies
      if (out.length > 1) out[1] = Math.floor(r() * 256);
      return out;
    default:
      return out;
  }
}

test(`MQTT listener survives 10,000 random and mutated packets (seed ${seed})`, { timeout: 120_000 }, async () => {
  const broker = await startBroker({ args: ['--mqtt-port', '0'] });
  try {
    const r = seededRandom(seed);
    const t4 = templates(4);
    const t5 = templates(5);
    let sent = 0;
    let connections = 0;
    const deadline = Date.now() + 90_000;
    while (sent < 10_000 && Date.now() < deadline) {
      const version = r() < 0.5 ? 4 : 5;
      const pool = version === 4 ? t4 : t5;
      const chunks: Buffer[] = [];
      if (r() < 0.9) chunks.push(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: r() < 0.7, keepalive: 10, clientId: `fz${Math.floor(r() * 20)}` }, { protocolVersion: version }));
      const n = 5 + Math.floor(r() * 30);
      for (let i = 0; i < n; i++) chunks.push(mutate(pool[Math.floor(r() * pool.length)]!, r));
      sent += n;
      connections++;
      await new Promise<void>((resolve) => {
        const socket = netConnect(broker.mqttPort, '127.0.0.1');
        const done = (): void => {
          clearTimeout(timer);
          socket.destroy();
          resolve();
        };
        const timer = setTimeout(done, 30);
        socket.on('error', done);
        socket.on('close', done);
        socket.on('data', () => {});
        socket.on('connect', () => {
          // Split the stream at random points: packets must survive any fragmentation.
          const all = Buffer.concat(chunks);
          let at = 0;
          while (at < all.length) {
            const step = 1 + Math.floor(r() * 200);
            socket.write(all.subarray(at, at + step));
            at += step;
          }
        });
      });
    }
    assert.ok(sent >= 10_000, `sent ${sent} packets over ${connections} connections`);
    assert.equal(broker.proc.exitCode, null, 'broker still running');
    if (process.env.MQTT_FUZZ_LOGS) console.log(broker.logs.filter((l) => !l.includes('"level":30')).slice(0, 20).join('\n'));
    const failures = broker.logs.filter((l) => l.includes('handler failed') || l.includes('uncaught'));
    assert.deepEqual(failures, [], 'no handler threw');

    // The packets reached the handlers, and malformed ones were recognised as such.
    const metrics = await (await fetch(`${broker.httpUrl}/metrics`)).text();
    const value = (name: string): number => Number(new RegExp(`^${name} (\\d+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    assert.ok(value('topicast_mqtt_packets_received_total') > 1500, `packets parsed and dispatched: ${metrics.split('\n').filter((l) => l.startsWith('topicast_mqtt')).join(', ')}`);
    assert.ok(value('topicast_mqtt_malformed_total') > 100, 'malformed packets detected');
    assert.equal(value('topicast_mqtt_connections'), 0, 'every fuzz connection was cleaned up');

    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 });
    await client.subscribeAsync('after/fuzz', { qos: 1 });
    const got = new Promise<string>((resolve) => client.once('message', (_t, p) => resolve(p.toString())));
    await client.publishAsync('after/fuzz', 'still here', { qos: 1 });
    assert.equal(await got, 'still here');
    await client.endAsync();
  } finally {
    await broker.stop();
  }
});

test(`MQTT over WebSocket survives 3,000 mutated packets (seed ${seed})`, { timeout: 120_000 }, async () => {
  const broker = await startBroker({ args: ['--mqtt-port', '0'] });
  try {
    const r = seededRandom(seed + 1);
    const t4 = templates(4);
    const t5 = templates(5);
    let sent = 0;
    const deadline = Date.now() + 60_000;
    while (sent < 3_000 && Date.now() < deadline) {
      const version = r() < 0.5 ? 4 : 5;
      const pool = version === 4 ? t4 : t5;
      const messages: Buffer[] = [mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: version, clean: true, keepalive: 10, clientId: `wz${Math.floor(r() * 10)}` }, { protocolVersion: version })];
      const n = 5 + Math.floor(r() * 20);
      for (let i = 0; i < n; i++) messages.push(mutate(pool[Math.floor(r() * pool.length)]!, r));
      sent += n;
      await new Promise<void>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${broker.port}/mqtt`, 'mqtt');
        const done = (): void => {
          clearTimeout(timer);
          ws.terminate();
          resolve();
        };
        const timer = setTimeout(done, 50);
        ws.on('error', done);
        ws.on('close', done);
        ws.on('open', () => {
          // Several packets per WebSocket message, or one split over two.
          for (let i = 0; i < messages.length; i += 2) ws.send(Buffer.concat(messages.slice(i, i + 2)));
        });
      });
    }
    assert.ok(sent >= 3_000);
    assert.equal(broker.proc.exitCode, null, 'broker still running');
    assert.deepEqual(broker.logs.filter((l) => l.includes('handler failed') || l.includes('uncaught')), []);
    const client = await mqtt.connectAsync(`ws://127.0.0.1:${broker.port}/mqtt`, { protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 5000 });
    await client.subscribeAsync('after/wsfuzz');
    const got = new Promise<string>((resolve) => client.once('message', (_t, p) => resolve(p.toString())));
    await client.publishAsync('after/wsfuzz', 'ok');
    assert.equal(await got, 'ok');
    await client.endAsync();
  } finally {
    await broker.stop();
  }
});
