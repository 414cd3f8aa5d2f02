/**
 * Persistent MQTT sessions that follow the device (issue 21; cluster/DESIGN.md "Persistent MQTT
 * sessions in JetStream"). Three Topicast processes on a 3-server NATS cluster, on 127.0.0.1:
 * - mqtt.js 5 and 3.1.1 devices subscribe on node A and go away; QoS 1 and 2 messages published
 *   through node C meanwhile are queued for them; they reconnect to node B: Session Present 1 and
 *   every message once, in order (QoS 2 exactly once), then live messages follow on B only;
 * - `mosquitto_sub -c` the same way (Debian mosquitto-clients; required when CI is set);
 * - client-id takeover across nodes: the connection on A is closed when the id connects to B;
 * - node A drained (SIGTERM) and, separately, killed with -9 while holding an offline session:
 *   the device reconnecting to B finds the session and what was queued before.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';
import { scrapeMetrics } from '../helpers/native-client.js';
import { requireNatsServer, startNatsCluster, type NatsCluster } from '../helpers/nats.js';
import { RawClient } from '../unit/broker/protocol/mqtt/harness.js';

const TUNING = 'heartbeatMs=250&nodeTimeoutMs=2000&reconnectWaitMs=100&jetStreamRetryMs=300&requestTimeoutMs=10000';

const haveMosquittoSub = await promisify(execFile)('sh', ['-c', 'command -v mosquitto_sub']).then(() => true, () => false);
if (!haveMosquittoSub && process.env.CI) throw new Error('mosquitto-clients are required under CI (apt-get install mosquitto-clients)');

const clients: mqtt.MqttClient[] = [];
after(() => {
  for (const c of clients) c.end(true);
});

interface Connected {
  client: mqtt.MqttClient;
  sessionPresent: boolean;
  got: string[];
}

/** Connects and records every message (`topic payload qN`) from the start: queued ones arrive right after CONNACK. */
async function device(port: number, options: mqtt.IClientOptions): Promise<Connected> {
  const client = mqtt.connect(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0, connectTimeout: 10_000, ...options });
  clients.push(client);
  const got: string[] = [];
  client.on('message', (topic, payload, packet) => got.push(`${topic} ${payload.toString()} q${packet.qos}`));
  const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
    client.once('connect', resolve);
    client.once('error', reject);
  });
  return { client, sessionPresent: connack.sessionPresent, got };
}

/**
 * Every expected message exactly once, and in publish order within each QoS: clients hand a QoS 2
 * message to the application only once its PUBREL arrives (mqtt.js, libmosquitto), so a QoS 1
 * message sent after it may come first.
 */
function assertOnce(got: string[], want: string[], what: string): void {
  assert.deepEqual([...got].sort(), [...want].sort(), `${what}: every message once`);
  for (const q of ['q1', 'q2']) assert.deepEqual(got.filter((l) => l.endsWith(q)), want.filter((l) => l.endsWith(q)), `${what}: ${q} in order`);
}

async function close(c: mqtt.MqttClient): Promise<void> {
  await c.endAsync();
}

const expected = (topic: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${topic} m${i} q${i % 2 === 0 ? 1 : 2}`);

if (requireNatsServer()) {
  let nats!: NatsCluster;
  const nodes: BrokerProcess[] = [];
  let publisher!: mqtt.MqttClient;

  async function startNode(i: number): Promise<BrokerProcess> {
    const proc = await startBroker({
      args: ['--bus', `${nats.servers[i]!.url}?${TUNING}`, '--node-id', `snode-${i}`, '--sys-interval-sec', '0'],
      env: { TOPICAST_DRAIN_MS: '500', TOPICAST_SHUTDOWN_TIMEOUT_MS: '3000' },
      timeoutMs: 60_000,
    });
    nodes[i] = proc;
    return proc;
  }

  /** Publishes m0..m(n-1) on `topic` through node C, QoS 1 and 2 alternating, each acknowledged before the next. */
  async function publish(topic: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) await publisher.publishAsync(topic, `m${i}`, { qos: i % 2 === 0 ? 1 : 2 });
  }

  async function metric(node: BrokerProcess, name: string): Promise<number> {
    return (await scrapeMetrics(node.httpUrl)).get(name) ?? 0;
  }

  /**
   * Subscribes `d` (connected to A) to `filter` and waits until a probe published through C
   * reaches it: A's interest is on the bus, so what C publishes next reaches A's session.
   */
  async function subscribeEverywhere(d: Connected, filter: string, probe: string): Promise<void> {
    await d.client.subscribeAsync(filter, { qos: 2 });
    await publisher.publishAsync(probe, 'probe', { qos: 1 });
    await waitFor(() => d.got.length > 0, 'the probe through another node', 20_000);
    d.got.length = 0;
  }

  /** Waits until `node` holds at least `n` queued QoS 1/2 messages (they reached it over the bus). */
  async function queuedOn(node: BrokerProcess, n: number): Promise<void> {
    const deadline = Date.now() + 20_000;
    while ((await metric(node, 'topicast_mqtt_queued')) < n) {
      assert.ok(Date.now() < deadline, `${n} messages queued on the node holding the sessions`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  after(() => {
    if (!process.env.CLUSTER_DEBUG) return;
    for (const [i, node] of nodes.entries()) for (const line of node.logs.filter((l) => /"level":[456]0/.test(l)).slice(-40)) console.log(`# node ${i}: ${line.slice(0, 400)}`);
  });

  before(async () => {
    nats = await startNatsCluster(3);
    await Promise.all([0, 1, 2].map(startNode));
    publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${nodes[2]!.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0 });
    clients.push(publisher);
  });

  test('mqtt.js 5 and 3.1.1: subscribed on A, away while QoS 1/2 messages are published, back on B: Session Present 1, every message once', { timeout: 90_000 }, async () => {
    const [a, b] = nodes as [BrokerProcess, BrokerProcess];
    const v5 = { clientId: 'dev-v5', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } };
    const v4 = { clientId: 'dev-v4', protocolVersion: 4 as const, clean: false };
    for (const [options, topic] of [[v5, 'plant/v5/#'], [v4, 'plant/v4/#']] as const) {
      const d = await device(a.mqttPort, options);
      assert.equal(d.sessionPresent, false);
      await subscribeEverywhere(d, topic, topic.replace('#', 'probe'));
      await close(d.client);
    }
    await publish('plant/v5/t', 10);
    await publish('plant/v4/t', 10);
    await queuedOn(a, 20);

    for (const [options, topic] of [[v5, 'plant/v5/t'], [v4, 'plant/v4/t']] as const) {
      const d = await device(b.mqttPort, options);
      assert.equal(d.sessionPresent, true, `${options.clientId}: Session Present 1 on another node`);
      await waitFor(() => d.got.length >= 10, `${options.clientId}: the ten queued messages`, 20_000);
      // A live message after them: nothing is delivered twice in between (QoS 2 exactly once).
      await publisher.publishAsync(topic, 'live', { qos: 1 });
      await waitFor(() => d.got.length >= 11, `${options.clientId}: the live message on B`, 20_000);
      assertOnce(d.got.slice(0, 10), expected(topic, 10), options.clientId);
      assert.equal(d.got[10], `${topic} live q1`, `${options.clientId}: then the live message, nothing twice`);
      assert.equal(d.got.length, 11);
      await close(d.client);
    }
    await waitFor(async () => (await metric(a, 'topicast_mqtt_sessions')) === 0, 'A let both sessions go', 20_000);
  });

  test('QoS 2 in flight moves too: PUBREL sent on A is resent on B, the message itself is not', { timeout: 60_000 }, async () => {
    const [a, b] = nodes as [BrokerProcess, BrokerProcess];
    const connect = { clientId: 'dev-q2', clean: false, protocolVersion: 5 as const, properties: { sessionExpiryInterval: 600 } };
    const first = await RawClient.connect(a.mqttPort, connect, 5);
    first.client.send({ cmd: 'subscribe', messageId: 1, subscriptions: [{ topic: 'plant/q2', qos: 2 }] });
    await first.client.next('suback');
    await publisher.publishAsync('plant/q2', 'one', { qos: 2 });
    const one = await first.client.next('publish', 20_000);
    assert.equal(one.payload.toString(), 'one');
    first.client.send({ cmd: 'pubrec', messageId: one.messageId! });
    await first.client.next('pubrel', 20_000);
    const open = await metric(a, 'topicast_mqtt_connections');
    first.client.destroy(); // gone before PUBCOMP: the delivery is in its PUBREL state
    // A must have seen the socket close, or "two" would go to the dead connection instead of the queue.
    await waitFor(async () => (await metric(a, 'topicast_mqtt_connections')) < open, 'A sees the device gone', 20_000);
    await publisher.publishAsync('plant/q2', 'two', { qos: 2 });
    await queuedOn(a, 1);

    const second = await RawClient.connect(b.mqttPort, connect, 5);
    assert.equal(second.connack.sessionPresent, true);
    const pubrel = await second.client.next('pubrel', 20_000);
    assert.equal(pubrel.messageId, one.messageId, 'the PUBREL of the delivery in flight on A is resent');
    second.client.send({ cmd: 'pubcomp', messageId: pubrel.messageId! });
    const two = await second.client.next('publish', 20_000);
    assert.equal(two.payload.toString(), 'two');
    second.client.send({ cmd: 'pubrec', messageId: two.messageId! });
    second.client.send({ cmd: 'pubcomp', messageId: (await second.client.next('pubrel', 20_000)).messageId! });
    await publisher.publishAsync('plant/q2', 'three', { qos: 1 });
    const three = await second.client.next('publish', 20_000);
    assert.equal(three.payload.toString(), 'three', '"one" was not sent again before it');
    second.client.send({ cmd: 'puback', messageId: three.messageId! });
    assert.deepEqual(second.client.packets.filter((p) => p.cmd === 'publish'), []);
    second.client.destroy();
  });

  test('client-id takeover across nodes: connecting to B closes the connection on A', { timeout: 60_000 }, async () => {
    const [a, b] = nodes as [BrokerProcess, BrokerProcess];
    const options = { clientId: 'dev-takeover', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } };
    const first = await device(a.mqttPort, options);
    await first.client.subscribeAsync('plant/takeover', { qos: 1 });
    const disconnected = new Promise<number | undefined>((resolve) => first.client.once('disconnect', (p) => resolve(p.reasonCode)));
    const closed = new Promise<void>((resolve) => first.client.once('close', () => resolve()));
    const second = await device(b.mqttPort, options);
    assert.equal(second.sessionPresent, true, 'the session came along');
    assert.equal(await disconnected, 0x8e, 'A sent DISCONNECT "session taken over"');
    await closed;
    assert.equal(await metric(a, 'topicast_mqtt_takeovers_total'), 1);
    await publisher.publishAsync('plant/takeover', 'once', { qos: 1 });
    await waitFor(() => second.got.length >= 1, 'the message on B', 20_000);
    assert.deepEqual(second.got, ['plant/takeover once q1']);
    assert.deepEqual(first.got, []);
    await close(second.client);
  });

  test('mosquitto_sub -c: subscribed on A, queued QoS 1/2 messages delivered on B', { timeout: 60_000, skip: haveMosquittoSub ? false : 'mosquitto_sub not installed' }, async () => {
    const [a, b] = nodes as [BrokerProcess, BrokerProcess];
    const sub = (port: number, extra: string[]): Promise<string[]> => new Promise((resolve, reject) => {
      const proc = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-c', '-i', 'mosq-roaming', '-q', '2', '-t', 'plant/mosq/#', '-W', '15', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      proc.stdout.setEncoding('utf8');
      proc.stdout.on('data', (d: string) => (out += d));
      proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
      proc.on('exit', (code) => (code === 0 ? resolve(out.split('\n').filter((l) => l !== '')) : reject(new Error(`mosquitto_sub exited ${code}: ${out}`))));
    });
    assert.deepEqual(await sub(a.mqttPort, ['-E']), [], 'subscribed on A, then gone (-E)');
    await publish('plant/mosq/t', 6);
    await queuedOn(a, 6);
    const got = await sub(b.mqttPort, ['-C', '6', '-F', '%t %p q%q']);
    assertOnce(got, expected('plant/mosq/t', 6), 'mosquitto_sub on B');
  });

  test('A drained (SIGTERM) while holding an offline session: the device finds it and its queue on B', { timeout: 90_000 }, async () => {
    const [a, b] = nodes as [BrokerProcess, BrokerProcess];
    const options = { clientId: 'dev-drain', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } };
    const d = await device(a.mqttPort, options);
    await subscribeEverywhere(d, 'plant/drain/#', 'plant/drain/probe');
    await close(d.client);
    await publish('plant/drain/t', 6);
    await queuedOn(a, 6);
    a.kill('SIGTERM');
    await a.exited;
    const back = await device(b.mqttPort, options);
    assert.equal(back.sessionPresent, true);
    await waitFor(() => back.got.length >= 6, 'the six queued on A', 20_000);
    assertOnce(back.got, expected('plant/drain/t', 6), 'after the drain');
    await close(back.client);
    await startNode(0);
  });

  test('A killed with -9 while holding an offline session: the device finds it and its queue on B', { timeout: 90_000 }, async () => {
    const [a, b] = nodes as [BrokerProcess, BrokerProcess];
    const options = { clientId: 'dev-kill', protocolVersion: 4 as const, clean: false };
    const d = await device(a.mqttPort, options);
    await subscribeEverywhere(d, 'plant/kill/#', 'plant/kill/probe');
    await close(d.client);
    await publish('plant/kill/t', 6);
    await queuedOn(a, 6);
    // What A queued is stored once it is acknowledged by JetStream; give the last write its round trip.
    await waitFor(async () => (await metric(a, 'topicast_mqtt_cluster_session_writes_pending')) === 0, 'A stored its queue', 20_000);
    a.kill('SIGKILL');
    await a.exited;
    const back = await device(b.mqttPort, options);
    assert.equal(back.sessionPresent, true);
    await waitFor(() => back.got.length >= 6, 'the six queued on A', 20_000);
    assertOnce(back.got, expected('plant/kill/t', 6), 'after kill -9');
    await close(back.client);
    await startNode(0);
  });
}
