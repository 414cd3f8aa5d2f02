/**
 * Payload formats across protocols (issue 14, PROTOCOL.md §8): every publisher × every subscriber
 * gives the value that was sent. Publishers: mosquitto_pub (-m number, text, JSON, -l lines, -f
 * binary file; MQTT 3.1.1 and 5 with a content type), curl with each Content-Type, mqtt.js v5,
 * the SDK with each codec, the agent's native and MQTT transports. Subscribers: the SDK's default
 * (`auto`), the SDK's `raw` (bytes unchanged), mosquitto_sub 3.1.1 and 5 (`-F` with the content
 * type and the payload in hex), mqtt.js v5. Then the same values from the retained snapshot, from a
 * history replay after a kill -9 restart with --data, and across two nodes on NATS; and a v1 native
 * client that sends no content type still works.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { pack } from 'msgpackr';
import { connect, type Client, type MessageMeta } from 'topicast';
import { mqttTransport, nativeTransport } from 'topicast/agent';
import { decodeServerFrame, encodeFrame, Op, SUBPROTOCOL } from 'topicast/protocol';
import WebSocket from 'ws';
import { startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';
import { haveNatsServer, requireNatsServer, startNatsServer } from '../helpers/nats.js';

const run = promisify(execFile);
const haveTools = await run('sh', ['-c', 'command -v mosquitto_pub && command -v mosquitto_sub && command -v curl']).then(() => true, () => false);
if (!haveTools && process.env.CI) throw new Error('mosquitto-clients and curl are required under CI');
const skip = haveTools ? false : 'needs mosquitto_pub, mosquitto_sub and curl (apt-get install mosquitto-clients curl)';

const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const BINARY = Uint8Array.of(0xff, 0x00, 0x01, 0xc1, 0x80);

/** What one publish should look like to each kind of subscriber. */
interface Case {
  topic: string;
  /** The SDK's default (`auto`) value. */
  value: unknown;
  /** The content type SDK subscribers and MQTT 5 subscribers see (undefined: none). */
  contentType: string | undefined;
  /** The bytes native subscribers get: exactly what was published. */
  published: Uint8Array;
  /** The bytes MQTT subscribers get (default `--mqtt-payloads json`): MessagePack converted, the rest as published. */
  mqtt: Uint8Array;
  /** The content type MQTT 5 subscribers see, when it differs from `contentType` (after conversion). */
  mqttContentType?: string;
}

const cases: Case[] = [];
function expect(topic: string, value: unknown, contentType: string | undefined, published: Uint8Array, mqttView?: { bytes: Uint8Array; contentType: string }): void {
  cases.push({ topic, value, contentType, published, mqtt: mqttView?.bytes ?? published, ...(mqttView && { mqttContentType: mqttView.contentType }) });
}

let broker: BrokerProcess;
let dataDir: string;
const tmp = mkdtempSync(join(tmpdir(), 'topicast-formats-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** A running mosquitto_sub printing `topic|content type|payload hex` per message. */
function mosquittoSub(port: number, version: '311' | '5', filter: string): { lines: string[]; stop(): void } {
  const args = ['-h', '127.0.0.1', '-p', String(port), '-V', version === '5' ? '5' : '311', '-t', filter, '-F', '%t|%C|%x'];
  const proc = spawn('mosquitto_sub', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let buf = '';
  proc.stdout.setEncoding('utf8');
  proc.stdout.on('data', (d: string) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      lines.push(buf.slice(0, i));
      buf = buf.slice(i + 1);
    }
  });
  return { lines, stop: () => proc.kill('SIGKILL') };
}

interface Seen { topic: string; value: unknown; contentType: string | undefined; payload: Uint8Array; retained: boolean; replayed: boolean }

/** Node hands bytes over as Buffers: compare them as plain Uint8Arrays. */
const plain = (v: unknown): unknown => (v instanceof Uint8Array ? Uint8Array.from(v) : v);

function collect(into: Seen[]): (value: unknown, meta: MessageMeta) => void {
  return (value, meta) => into.push({ topic: meta.topic, value: plain(value), contentType: meta.contentType, payload: meta.payload, retained: meta.retained, replayed: meta.replayed });
}

function lastPerTopic<T extends { topic: string }>(items: T[]): Map<string, T> {
  const m = new Map<string, T>();
  for (const i of items) m.set(i.topic, i);
  return m;
}

async function mosquittoPub(...args: string[]): Promise<void> {
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-q', '1', '-r', ...args]);
}

async function curl(topic: string, args: string[]): Promise<void> {
  const { stdout } = await run('curl', ['-sS', '-f', '-X', 'POST', ...args, `${broker.httpUrl}/api/publish/${topic}?retain=1`]);
  assert.match(stdout, /"deliveries"/);
}

before(async () => {
  if (skip) return;
  dataDir = join(tmp, 'data');
  broker = await startBroker({ args: ['--data', dataDir, '--history-filters', 'fmt/#'] });
});

// Every publisher's message, recorded by every live subscriber.
const sdkSeen: Seen[] = [];
const rawSeen: Seen[] = [];
const mqttjsSeen: { topic: string; payload: Uint8Array; contentType: string | undefined }[] = [];
let sub311: ReturnType<typeof mosquittoSub>;
let sub5: ReturnType<typeof mosquittoSub>;
let position: { epoch: string; offset: number } | undefined;

test('every publisher reaches every live subscriber with its value (MQTT 3.1.1/5, HTTP, SDK, agent)', { skip }, async () => {
  const sdk = await connect(broker.url);
  const rawClient = await connect(broker.url, { codec: 'raw' });
  const s = await sdk.subscribe('fmt/#', collect(sdkSeen), { retained: false });
  await s.snapshot;
  position = s.position;
  await (await rawClient.subscribe('fmt/#', collect(rawSeen), { retained: false })).snapshot;
  const mq = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5 });
  mq.on('message', (topic, payload, packet) => mqttjsSeen.push({ topic, payload: new Uint8Array(payload), contentType: packet.properties?.contentType }));
  await mq.subscribeAsync('fmt/#', { qos: 1, rh: 2 });
  sub311 = mosquittoSub(broker.mqttPort, '311', 'fmt/#');
  sub5 = mosquittoSub(broker.mqttPort, '5', 'fmt/#');
  await new Promise((r) => setTimeout(r, 300)); // mosquitto_sub has no "subscribed" signal: let both SUBSCRIBEs land

  // mosquitto_pub, MQTT 3.1.1: untagged; SDK reads UTF-8 JSON as its value, other UTF-8 as text, the rest as bytes.
  await mosquittoPub('-t', 'fmt/mosq/number', '-m', '7');
  expect('fmt/mosq/number', 7, undefined, utf8('7'));
  await mosquittoPub('-t', 'fmt/mosq/float', '-m', '48.2');
  expect('fmt/mosq/float', 48.2, undefined, utf8('48.2'));
  await mosquittoPub('-t', 'fmt/mosq/text', '-m', 'hello world');
  expect('fmt/mosq/text', 'hello world', undefined, utf8('hello world'));
  await mosquittoPub('-t', 'fmt/mosq/json', '-m', '{"v":1,"unit":"°C"}');
  expect('fmt/mosq/json', { v: 1, unit: '°C' }, undefined, utf8('{"v":1,"unit":"°C"}'));
  const binFile = join(tmp, 'bin');
  writeFileSync(binFile, BINARY);
  await mosquittoPub('-t', 'fmt/mosq/file', '-f', binFile);
  expect('fmt/mosq/file', BINARY, undefined, BINARY);
  // -l: one message per line.
  await new Promise<void>((resolve, reject) => {
    const p = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-q', '1', '-r', '-t', 'fmt/mosq/lines', '-l'], { stdio: ['pipe', 'ignore', 'inherit'] });
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`mosquitto_pub -l exited ${code}`))));
    p.stdin.end('1\n2\n3\n');
  });
  // MQTT 5 with a content type: the type wins over the untagged rules.
  await mosquittoPub('-V', '5', '-t', 'fmt/mosq5/json-string', '-m', '"7"', '-D', 'publish', 'content-type', 'application/json');
  expect('fmt/mosq5/json-string', '7', 'application/json', utf8('"7"'));
  await mosquittoPub('-V', '5', '-t', 'fmt/mosq5/text', '-m', '7', '-D', 'publish', 'content-type', 'text/plain');
  expect('fmt/mosq5/text', '7', 'text/plain', utf8('7'));

  // curl: Content-Type as sent; curl's default form type is untagged (read like mosquitto_pub -m).
  await curl('fmt/curl/form', ['--data', '21.5']);
  expect('fmt/curl/form', 21.5, undefined, utf8('21.5'));
  await curl('fmt/curl/form-word', ['--data', 'open']);
  expect('fmt/curl/form-word', 'open', undefined, utf8('open'));
  await curl('fmt/curl/json', ['-H', 'Content-Type: application/json', '--data', '{"a":[1,2]}']);
  expect('fmt/curl/json', { a: [1, 2] }, 'application/json', utf8('{"a":[1,2]}'));
  await curl('fmt/curl/text', ['-H', 'Content-Type: text/plain; charset=utf-8', '--data', '7']);
  expect('fmt/curl/text', '7', 'text/plain; charset=utf-8', utf8('7'));
  await curl('fmt/curl/bytes', ['-H', 'Content-Type: application/octet-stream', '--data-binary', `@${binFile}`]);
  expect('fmt/curl/bytes', BINARY, 'application/octet-stream', BINARY);
  const mp = pack({ t: 21.5 });
  const mpFile = join(tmp, 'mp');
  writeFileSync(mpFile, mp);
  await curl('fmt/curl/msgpack', ['-H', 'Content-Type: application/msgpack', '--data-binary', `@${mpFile}`]);
  expect('fmt/curl/msgpack', { t: 21.5 }, 'application/msgpack', mp, { bytes: utf8('{"t":21.5}'), contentType: 'application/json' });

  // mqtt.js, MQTT 5 with a content type.
  await mq.publishAsync('fmt/mqttjs/json', '{"x":2}', { qos: 1, retain: true, properties: { contentType: 'application/json' } });
  expect('fmt/mqttjs/json', { x: 2 }, 'application/json', utf8('{"x":2}'));

  // The SDK, each codec: MessagePack by default, converted for MQTT subscribers.
  const pub = await connect(broker.url);
  await pub.publish('fmt/sdk/number', 48.2, { retain: true, ack: true });
  expect('fmt/sdk/number', 48.2, 'application/msgpack', pack(48.2), { bytes: utf8('48.2'), contentType: 'application/json' });
  await pub.publish('fmt/sdk/string', 'online', { retain: true, ack: true });
  expect('fmt/sdk/string', 'online', 'application/msgpack', pack('online'), { bytes: utf8('online'), contentType: 'text/plain' });
  await pub.publish('fmt/sdk/reading', { value: 21.5, unit: '°C', ts: 1700000000000 }, { retain: true, ack: true });
  expect('fmt/sdk/reading', { value: 21.5, unit: '°C', ts: 1700000000000 }, 'application/msgpack', pack({ value: 21.5, unit: '°C', ts: 1700000000000 }), { bytes: utf8('{"value":21.5,"unit":"°C","ts":1700000000000}'), contentType: 'application/json' });
  await pub.publish('fmt/sdk/bytes', BINARY, { retain: true, ack: true });
  expect('fmt/sdk/bytes', BINARY, 'application/msgpack', pack(BINARY), { bytes: BINARY, contentType: 'application/octet-stream' });
  await pub.publish('fmt/sdk/json', { j: true }, { retain: true, ack: true, codec: 'json' });
  expect('fmt/sdk/json', { j: true }, 'application/json', utf8('{"j":true}'));
  await pub.publish('fmt/sdk/text', '42', { retain: true, ack: true, codec: 'text' });
  expect('fmt/sdk/text', '42', 'text/plain', utf8('42'));
  await pub.publish('fmt/sdk/raw', BINARY, { retain: true, ack: true, codec: 'raw' });
  expect('fmt/sdk/raw', BINARY, 'application/octet-stream', BINARY);
  await pub.publish('fmt/sdk/custom', utf8('a;b'), { retain: true, ack: true, codec: 'raw', contentType: 'text/csv' });
  expect('fmt/sdk/custom', 'a;b', 'text/csv', utf8('a;b'));

  // The agent's transports, as `topicast-agent` publishes readings.
  const agentNative = await nativeTransport({ url: broker.url, id: 'fmt-native' });
  await waitFor(() => agentNative.isOpen(), 'agent native transport open', 5000);
  await agentNative.publish('fmt/agent/native', { value: 3.5, unit: 'V', ts: 1 }, true);
  expect('fmt/agent/native', { value: 3.5, unit: 'V', ts: 1 }, 'application/msgpack', pack({ value: 3.5, unit: 'V', ts: 1 }), { bytes: utf8('{"value":3.5,"unit":"V","ts":1}'), contentType: 'application/json' });
  const agentMqtt = mqttTransport({ url: `mqtt://127.0.0.1:${broker.mqttPort}`, id: 'fmt-mqtt' });
  await waitFor(() => agentMqtt.isOpen(), 'agent MQTT transport open', 5000);
  await agentMqtt.publish('fmt/agent/mqtt', 12, true);
  expect('fmt/agent/mqtt', 12, 'application/json', utf8('12'));
  await agentMqtt.publish('fmt/agent/mqtt-status', '7', true);
  expect('fmt/agent/mqtt-status', '7', 'text/plain', utf8('7'));

  const total = cases.length + 3; // -l sent three
  await waitFor(() => sdkSeen.length >= total && rawSeen.length >= total && mqttjsSeen.length >= total && sub311.lines.length >= total && sub5.lines.length >= total, `all ${total} messages at every subscriber`, 10_000).catch((err: Error) => {
    throw new Error(`${err.message}: sdk ${sdkSeen.length}, raw ${rawSeen.length}, mqtt.js ${mqttjsSeen.length}, mosquitto_sub 3.1.1 ${sub311.lines.length}, 5 ${sub5.lines.length}`);
  });

  // -l: three messages in order, each a number.
  assert.deepEqual(sdkSeen.filter((m) => m.topic === 'fmt/mosq/lines').map((m) => m.value), [1, 2, 3]);
  cases.push({ topic: 'fmt/mosq/lines', value: 3, contentType: undefined, published: utf8('3'), mqtt: utf8('3') });

  const sdk1 = lastPerTopic(sdkSeen);
  const raw1 = lastPerTopic(rawSeen);
  const mqttjs1 = lastPerTopic(mqttjsSeen);
  const m311 = lastPerTopic(sub311.lines.map((l) => ({ topic: l.split('|')[0]!, line: l })));
  const m5 = lastPerTopic(sub5.lines.map((l) => ({ topic: l.split('|')[0]!, line: l })));
  for (const c of cases) {
    const got = sdk1.get(c.topic);
    assert.ok(got, `SDK got nothing on ${c.topic}`);
    assert.deepEqual(got.value, c.value, `SDK auto value on ${c.topic}`);
    assert.equal(got.contentType, c.contentType, `SDK meta.contentType on ${c.topic}`);
    assert.equal(hex(raw1.get(c.topic)!.payload), hex(c.published), `SDK raw bytes on ${c.topic}`);
    assert.equal(hex(mqttjs1.get(c.topic)!.payload), hex(c.mqtt), `mqtt.js bytes on ${c.topic}`);
    assert.equal(mqttjs1.get(c.topic)!.contentType, c.mqttContentType ?? c.contentType, `mqtt.js content type on ${c.topic}`);
    assert.equal(m311.get(c.topic)?.line, `${c.topic}||${hex(c.mqtt)}`, `mosquitto_sub 3.1.1 on ${c.topic}`);
    assert.equal(m5.get(c.topic)?.line, `${c.topic}|${c.mqttContentType ?? c.contentType ?? ''}|${hex(c.mqtt)}`, `mosquitto_sub 5 on ${c.topic}`);
  }
  await agentNative.close();
  await agentMqtt.close();
  await mq.endAsync();
  await pub.close();
  await rawClient.close();
  await sdk.close();
  sub311.stop();
  sub5.stop();
});

test('the retained snapshot keeps every format (SDK, mosquitto_sub 5)', { skip }, async () => {
  const seen: Seen[] = [];
  const client = await connect(broker.url);
  const s = await client.subscribe('fmt/#', collect(seen));
  await s.snapshot;
  const snap = lastPerTopic(seen);
  const v5 = mosquittoSub(broker.mqttPort, '5', 'fmt/#');
  try {
    await waitFor(() => v5.lines.length >= cases.length, 'mosquitto_sub 5 snapshot', 5000).catch((e: Error) => { throw new Error(`${e.message}: ${v5.lines.length} of ${cases.length}: ${v5.lines.join('\n')}`); });
    const m5 = lastPerTopic(v5.lines.map((l) => ({ topic: l.split('|')[0]!, line: l })));
    for (const c of cases) {
      const got = snap.get(c.topic);
      assert.ok(got?.retained, `retained ${c.topic}`);
      assert.deepEqual(got.value, c.value, `retained value on ${c.topic}`);
      assert.equal(got.contentType, c.contentType, `retained content type on ${c.topic}`);
      assert.equal(m5.get(c.topic)?.line, `${c.topic}|${c.mqttContentType ?? c.contentType ?? ''}|${hex(c.mqtt)}`, `mosquitto_sub 5 retained ${c.topic}`);
    }
  } finally {
    v5.stop();
    await client.close();
  }
});

test('after kill -9 and a restart with --data, the history replay and the retained values keep every format', { skip }, async () => {
  assert.ok(position, 'a history position from the first test');
  broker.kill('SIGKILL');
  await broker.exited;
  // A new port: the old one may sit in TIME_WAIT after the kill.
  broker = await startBroker({ args: ['--data', dataDir, '--history-filters', 'fmt/#'] });
  const seen: Seen[] = [];
  const client: Client = await connect(broker.url);
  try {
    const s = await client.subscribe('fmt/#', collect(seen), { resume: position });
    await s.snapshot;
    assert.equal(s.recovered, true, 'resume after kill -9 recovers (every message was acknowledged)');
    const replayed = seen.filter((m) => m.replayed);
    assert.equal(replayed.length, cases.length + 2, 'every message replayed (-l sent three)');
    const last = lastPerTopic(replayed);
    for (const c of cases) {
      assert.deepEqual(last.get(c.topic)?.value, c.value, `replayed value on ${c.topic}`);
      assert.equal(last.get(c.topic)?.contentType, c.contentType, `replayed content type on ${c.topic}`);
    }
    const fresh: Seen[] = [];
    await (await client.subscribe('fmt/#', collect(fresh))).snapshot;
    const retained = lastPerTopic(fresh);
    for (const c of cases) assert.deepEqual([retained.get(c.topic)?.value, retained.get(c.topic)?.contentType], [c.value, c.contentType], `retained after restart: ${c.topic}`);
  } finally {
    await client.close();
  }
});

test('a v1 native client that sends no content type still publishes and receives', { skip }, async () => {
  const ws = new WebSocket(broker.url, SUBPROTOCOL);
  const frames: ReturnType<typeof decodeServerFrame>[] = [];
  ws.on('message', (d: Buffer) => frames.push(decodeServerFrame(new Uint8Array(d))));
  await new Promise((resolve, reject) => (ws.once('open', resolve), ws.once('error', reject)));
  const sdk = await connect(broker.url);
  const seen: Seen[] = [];
  try {
    await (await sdk.subscribe('fmt/v1/#', collect(seen), { retained: false })).snapshot;
    ws.send(encodeFrame({ op: Op.subscribe, id: 1, filters: ['fmt/v1/#'], options: { retained: false } }));
    await waitFor(() => frames.some((f) => f.op === Op.snapshotEnd), 'v1 subscribed', 5000);
    // The v1 PUBLISH: five elements, no content type.
    ws.send(encodeFrame({ op: Op.publish, id: 2, topic: 'fmt/v1/text', payload: utf8('19.5'), flags: 0 }));
    await waitFor(() => frames.some((f) => f.op === Op.ack && f.id === 2), 'v1 publish acknowledged', 5000);
    await sdk.publish('fmt/v1/sdk', 5, { ack: true });
    await waitFor(() => seen.length >= 2 && frames.filter((f) => f.op === Op.delivery).length >= 2, 'deliveries', 5000);
    assert.deepEqual(seen.map((m) => [m.topic, m.value, m.contentType]), [['fmt/v1/text', 19.5, undefined], ['fmt/v1/sdk', 5, 'application/msgpack']]);
    const deliveries = frames.filter((f) => f.op === Op.delivery);
    assert.deepEqual(deliveries.map((f) => f.op === Op.delivery && [f.topic, hex(f.payload)]), [['fmt/v1/text', hex(utf8('19.5'))], ['fmt/v1/sdk', hex(pack(5))]]);
  } finally {
    ws.close();
    await sdk.close();
  }
});

test('across two nodes on NATS, every format arrives as sent', { skip: skip || (haveNatsServer ? false : requireNatsServer() ? false : 'needs nats-server') }, async () => {
  const nats = await startNatsServer({ jetstream: true });
  const a = await startBroker({ args: ['--bus', nats.url, '--node-id', 'fmt-a'] });
  const b = await startBroker({ args: ['--bus', nats.url, '--node-id', 'fmt-b'] });
  const onB = await connect(b.url);
  const onA = await connect(a.url);
  const seen: Seen[] = [];
  const v5 = mosquittoSub(b.mqttPort, '5', 'hop/#');
  try {
    await waitFor(async () => (await fetch(`${a.httpUrl}/healthz`)).status === 200 && (await fetch(`${b.httpUrl}/healthz`)).status === 200, 'both nodes ready', 15_000);
    await (await onB.subscribe('hop/#', collect(seen), { retained: false })).snapshot;
    await new Promise((r) => setTimeout(r, 500)); // the bus interest and mosquitto_sub's SUBSCRIBE settle
    await onA.publish('hop/sdk', { n: 1 }, { ack: true });
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(a.mqttPort), '-V', '5', '-q', '1', '-t', 'hop/mqtt5', '-m', '"x"', '-D', 'publish', 'content-type', 'application/json']);
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(a.mqttPort), '-q', '1', '-t', 'hop/mqtt311', '-m', '8']);
    await waitFor(() => seen.length >= 3 && v5.lines.length >= 3, 'three messages on node B', 10_000);
    assert.deepEqual(seen.map((m) => [m.topic, m.value, m.contentType]), [['hop/sdk', { n: 1 }, 'application/msgpack'], ['hop/mqtt5', 'x', 'application/json'], ['hop/mqtt311', 8, undefined]]);
    assert.deepEqual(v5.lines, [`hop/sdk|application/json|${hex(utf8('{"n":1}'))}`, `hop/mqtt5|application/json|${hex(utf8('"x"'))}`, `hop/mqtt311||${hex(utf8('8'))}`]);
  } finally {
    v5.stop();
    await onA.close();
    await onB.close();
    await a.stop();
    await b.stop();
    await nats.stop();
  }
});
