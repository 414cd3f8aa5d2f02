/**
 * The MQTT listener of a real broker process with real clients: mqtt.js (protocol
 * 4 and 5) over TCP and WebSocket, mosquitto_pub / mosquitto_sub, and the native
 * protocol both ways through the one router.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { connect as netConnect } from 'node:net';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { decodeServerFrame, encodeFrame, Op, SUBPROTOCOL, type ServerFrame } from 'topicast/protocol';
import { startBroker, type BrokerProcess } from '../helpers/broker.js';

const run = promisify(execFile);
let broker: BrokerProcess;
const clients: mqtt.MqttClient[] = [];

before(async () => {
  broker = await startBroker({ args: ['--mqtt-port', '0'] });
});
after(async () => {
  for (const c of clients) c.end(true);
  await broker.stop();
});

type Transport = 'tcp' | 'ws';
function url(transport: Transport): string {
  return transport === 'tcp' ? `mqtt://127.0.0.1:${broker.mqttPort}` : `ws://127.0.0.1:${broker.port}/mqtt`;
}

async function client(transport: Transport, options: mqtt.IClientOptions = {}): Promise<mqtt.MqttClient> {
  const c = await mqtt.connectAsync(url(transport), { reconnectPeriod: 0, connectTimeout: 5000, ...options });
  clients.push(c);
  return c;
}

function nextMessage(c: mqtt.MqttClient, timeoutMs = 5000): Promise<{ topic: string; payload: Buffer; packet: mqtt.IPublishPacket }> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no message')), timeoutMs);
    c.once('message', (topic, payload, packet) => {
      clearTimeout(t);
      resolve({ topic, payload, packet });
    });
  });
}

test('mqtt.js protocol 4 and 5 over TCP and WebSocket reach each other, QoS 0, 1 and 2', async () => {
  const combos: [Transport, 4 | 5][] = [['tcp', 4], ['tcp', 5], ['ws', 4], ['ws', 5]];
  let n = 0;
  for (const [subT, subV] of combos) {
    const sub = await client(subT, { protocolVersion: subV });
    await sub.subscribeAsync(`mx/${n}/#`, { qos: 2 });
    for (const [pubT, pubV] of combos) {
      const pub = await client(pubT, { protocolVersion: pubV });
      for (const qos of [0, 1, 2] as const) {
        const got = nextMessage(sub);
        const body = `${pubT}${pubV}->${subT}${subV} q${qos}`;
        await pub.publishAsync(`mx/${n}/t`, body, { qos });
        const m = await got;
        assert.equal(m.payload.toString(), body);
        assert.equal(m.packet.qos, qos);
      }
      await pub.endAsync();
    }
    await sub.endAsync();
    n++;
  }
});

const haveMosquitto = await run('sh', ['-c', 'command -v mosquitto_pub && command -v mosquitto_sub']).then(() => true, () => false);
if (!haveMosquitto && process.env.CI) throw new Error('mosquitto-clients are required under CI (apt-get install mosquitto-clients)');
if (!haveMosquitto) console.log('# skipping mosquitto tests: mosquitto_pub/mosquitto_sub not installed');

/** mosquitto_sub -C count; resolves with its stdout lines. */
function mosquittoSub(args: string[], count: number): { ready: Promise<void>; lines: Promise<string[]> } {
  // stdbuf: mosquitto_sub's stdout is block-buffered on a pipe; line buffering lets us see SUBACK.
  const proc = spawn('stdbuf', ['-oL', 'mosquitto_sub', '-h', '127.0.0.1', '-p', String(broker.mqttPort), '-C', String(count), '-W', '10', '-d', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let ready!: () => void;
  const readyP = new Promise<void>((r) => (ready = r));
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (d: string) => {
    out += d;
    if (out.includes('SUBACK')) ready(); // -d prints "Client ... received SUBACK"
  });
  const lines = new Promise<string[]>((resolve, reject) => {
    proc.on('exit', (code) => (code === 0 ? resolve(out.split('\n').filter((l) => l && !l.startsWith('Client ') && !l.startsWith('Subscribed'))) : reject(new Error(`mosquitto_sub exited ${code}: ${out}`))));
  });
  after(() => proc.kill('SIGKILL'));
  return { ready: readyP, lines };
}

test('mosquitto_pub and mosquitto_sub, MQTT 3.1.1 and 5, to and from mqtt.js', { skip: !haveMosquitto }, async () => {
  for (const v of ['mqttv311', 'mqttv5']) {
    const sub = mosquittoSub(['-V', v, '-t', `mq/${v}/#`, '-q', '1'], 2);
    await sub.ready;
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-V', v, '-q', '2', '-t', `mq/${v}/cli`, '-m', `from mosquitto ${v}`]);
    const js = await client('tcp', { protocolVersion: 5 });
    await js.publishAsync(`mq/${v}/js`, `from mqtt.js ${v}`, { qos: 1 });
    assert.deepEqual(await sub.lines, [`from mosquitto ${v}`, `from mqtt.js ${v}`]);
  }
  // Retained: published by mosquitto_pub -r, received by a later mosquitto_sub with the retained flag.
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-t', 'mq/retained', '-m', 'kept', '-r']);
  const { stdout } = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-t', 'mq/retained', '-C', '1', '-W', '5', '-v', '-F', '%r %t %p']);
  assert.equal(stdout.trim(), '1 mq/retained kept');
});

/** A native-protocol client on /ws (subprotocol topicast.v1). */
async function nativeClient(): Promise<{ ws: WebSocket; frames: ServerFrame[]; next(op: number): Promise<ServerFrame> }> {
  const ws = new WebSocket(broker.url, SUBPROTOCOL);
  const frames: ServerFrame[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data: Buffer) => {
    frames.push(decodeServerFrame(new Uint8Array(data)));
    for (const w of waiters.splice(0)) w();
  });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  after(() => ws.terminate());
  return {
    ws,
    frames,
    async next(op) {
      const deadline = Date.now() + 5000;
      for (;;) {
        const i = frames.findIndex((f) => f.op === op);
        if (i >= 0) return frames.splice(i, 1)[0]!;
        if (Date.now() > deadline) throw new Error(`no frame ${op}`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
    },
  };
}

test('cross-protocol: MQTT → native and native → MQTT with identical payload bytes', async () => {
  const bytes = Buffer.from([0x00, 0xff, 0x10, 0x80, 0x7f, 0xc3, 0x28, 0x00]);
  const native = await nativeClient();
  native.ws.send(encodeFrame({ op: Op.subscribe, id: 1, filters: ['cross/#'], options: {} }));
  await native.next(Op.snapshotEnd);
  const m = await client('tcp', { protocolVersion: 4 });
  await m.publishAsync('cross/from-mqtt', bytes, { qos: 1 });
  const d = await native.next(Op.delivery);
  assert.ok(d.op === Op.delivery);
  assert.equal(d.topic, 'cross/from-mqtt');
  assert.deepEqual(Buffer.from(d.payload), bytes);

  const sub = await client('ws', { protocolVersion: 5 });
  await sub.subscribeAsync('cross/from-native', { qos: 1 });
  const got = nextMessage(sub);
  native.ws.send(encodeFrame({ op: Op.publish, id: 2, topic: 'cross/from-native', payload: bytes, flags: 0 }));
  const r = await got;
  assert.deepEqual(r.payload, bytes);
  assert.equal(r.packet.qos, 0, 'native publishes are QoS 0');
});

test('QoS 1 and 2 across a client restart with a persistent session', async () => {
  for (const protocolVersion of [4, 5] as const) {
    const clientId = `persist-${protocolVersion}`;
    const opts = { protocolVersion, clientId, clean: false, ...(protocolVersion === 5 ? { properties: { sessionExpiryInterval: 300 } } : {}) };
    const a = await client('tcp', opts);
    await a.subscribeAsync('persist/#', { qos: 2 });
    await a.endAsync(); // a normal disconnect: the session stays
    const pub = await client('tcp', { protocolVersion });
    await pub.publishAsync('persist/1', 'one', { qos: 1 });
    await pub.publishAsync('persist/2', 'two', { qos: 2 });
    await pub.publishAsync('persist/0', 'zero', { qos: 0 }); // not stored for an offline session
    const received: string[] = [];
    const b = mqtt.connect(url('tcp'), { ...opts, reconnectPeriod: 0 });
    clients.push(b);
    b.on('message', (_t, p) => received.push(p.toString()));
    const connack = await new Promise<mqtt.IConnackPacket>((r) => b.once('connect', r));
    assert.equal(connack.sessionPresent, true);
    for (let i = 0; i < 100 && received.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(received, ['one', 'two']);
    await b.endAsync();
    await pub.endAsync();
  }
});

test('the will is published when the TCP connection is destroyed', async () => {
  const watcher = await client('ws', { protocolVersion: 5 });
  await watcher.subscribeAsync('devices/+/status', { qos: 1 });
  const dev = await client('tcp', { protocolVersion: 4, clientId: 'pi-01', will: { topic: 'devices/pi-01/status', payload: Buffer.from('offline'), qos: 1, retain: true } });
  const got = nextMessage(watcher);
  dev.stream.destroy();
  const m = await got;
  assert.equal(m.topic, 'devices/pi-01/status');
  assert.equal(m.payload.toString(), 'offline');
});

test('client-id takeover: the first client is disconnected (MQTT 5 reason 0x8E), the second works', async () => {
  const first = await client('tcp', { protocolVersion: 5, clientId: 'same-id' });
  const kicked = new Promise<number | undefined>((r) => first.once('disconnect', (p) => r(p.reasonCode)));
  const second = await client('ws', { protocolVersion: 5, clientId: 'same-id' });
  assert.equal(await kicked, 0x8e);
  await second.subscribeAsync('tk/x');
  const got = nextMessage(second);
  await second.publishAsync('tk/x', 'ok');
  assert.equal((await got).payload.toString(), 'ok');
});

async function rawOpen(): Promise<{ socket: import('node:net').Socket; closed: Promise<void>; data: Buffer[] }> {
  const socket = netConnect(broker.mqttPort, '127.0.0.1');
  const data: Buffer[] = [];
  socket.on('data', (d) => data.push(d));
  socket.on('error', () => {});
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  await new Promise((r) => socket.once('connect', r));
  after(() => socket.destroy());
  return { socket, closed, data };
}

test('keepalive expiry: a silent client is closed after 1.5 × keepalive', async () => {
  const { socket, closed } = await rawOpen();
  const started = Date.now();
  socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 1, clientId: 'silent' }));
  await Promise.race([closed, new Promise((_, reject) => setTimeout(() => reject(new Error('not closed')), 4000))]);
  const elapsed = Date.now() - started;
  assert.ok(elapsed >= 1400 && elapsed < 3500, `closed after ${elapsed} ms`);
});

test('raw garbage on the TCP port is closed, then a healthy client connects', async () => {
  const { socket, closed } = await rawOpen();
  socket.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
  await closed;
  const again = await rawOpen();
  again.socket.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x02]));
  await again.closed;
  const c = await client('tcp', { protocolVersion: 4 });
  await c.subscribeAsync('after/garbage');
  const got = nextMessage(c);
  await c.publishAsync('after/garbage', 'fine');
  assert.equal((await got).payload.toString(), 'fine');
  assert.equal(broker.proc.exitCode, null);
});

test('MQTT over WebSocket: packets split across messages and several packets in one message', async () => {
  const ws = new WebSocket(`ws://127.0.0.1:${broker.port}/mqtt`, 'mqtt');
  after(() => ws.terminate());
  const packets: mqttPacket.Packet[] = [];
  const parser = mqttPacket.parser({ protocolVersion: 4 });
  parser.on('packet', (p: mqttPacket.Packet) => packets.push(p));
  ws.on('message', (d: Buffer) => parser.parse(d));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  assert.equal(ws.protocol, 'mqtt');
  const connect = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, keepalive: 30, clientId: 'ws-split' });
  ws.send(connect.subarray(0, 5));
  ws.send(connect.subarray(5));
  ws.send(Buffer.concat([
    mqttPacket.generate({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'split/x', qos: 1 }] }),
    mqttPacket.generate({ cmd: 'publish', topic: 'split/x', payload: Buffer.from('both'), qos: 1, messageId: 2, dup: false, retain: false }),
  ]));
  for (let i = 0; i < 200 && !packets.some((p) => p.cmd === 'publish'); i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(packets.map((p) => p.cmd).sort(), ['connack', 'puback', 'publish', 'suback']);
  const m = packets.find((p) => p.cmd === 'publish') as mqttPacket.IPublishPacket;
  assert.equal(m.payload.toString(), 'both');
});

test('MQTT metrics are exported', async () => {
  const text = await (await fetch(`${broker.httpUrl}/metrics`)).text();
  for (const name of ['topicast_mqtt_connections', 'topicast_mqtt_sessions', 'topicast_mqtt_packets_received_total', 'topicast_mqtt_takeovers_total', 'topicast_mqtt_keepalive_timeouts_total']) {
    assert.match(text, new RegExp(`^${name} \\d+$`, 'm'));
  }
  assert.match(text, /^topicast_mqtt_takeovers_total [1-9]/m);
});

test('graceful shutdown: MQTT 5 clients on TCP and WebSocket get DISCONNECT 0x8B, and the process exits', async () => {
  const own = await startBroker({ args: [] });
  try {
    const reasons: Promise<number | undefined>[] = [];
    for (const u of [`mqtt://127.0.0.1:${own.mqttPort}`, `ws://127.0.0.1:${own.port}/mqtt`]) {
      const c = await mqtt.connectAsync(u, { protocolVersion: 5, reconnectPeriod: 0 });
      clients.push(c);
      reasons.push(new Promise((r) => c.once('disconnect', (p) => r(p.reasonCode))));
    }
    own.kill('SIGTERM');
    assert.deepEqual(await Promise.all(reasons), [0x8b, 0x8b]);
    const exit = await Promise.race([own.exited, new Promise((r) => setTimeout(() => r('still running'), 5000))]);
    assert.notEqual(exit, 'still running');
  } finally {
    await own.stop();
  }
});
