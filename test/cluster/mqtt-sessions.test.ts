/**
 * Persistent MQTT sessions that follow the device (issue 21; cluster/DESIGN.md "Persistent MQTT
 * sessions in JetStream"). Three Topicast processes on a 3-server NATS cluster, on 127.0.0.1:
 * - mqtt.js 5 and 3.1.1 devices subscribe on node A and go away; QoS 1 and 2 messages published
 *   through node C meanwhile are queued for them; they reconnect to node B: Session Present 1 and
 *   every message once, in order (QoS 2 exactly once), then live messages follow on B only;
 * - `mosquitto_sub -c` the same way (Debian mosquitto-clients; required when CI is set);
 * - client-id takeover across nodes: the connection on A is closed when the id connects to B;
 * - node A drained (SIGTERM) and, separately, killed with -9 while holding offline sessions: a
 *   survivor adopts them (cluster/DESIGN.md "Orphaned sessions"), so QoS 1/2 messages published
 *   after A is gone are queued too; the devices reconnecting to B (and C) find every message once;
 * - the adopter killed as well before the device returns: the last survivor adopts it;
 * - two CONNECTs of one client id on B and C at the same moment: exactly one session wins;
 * - the delayed will of an orphaned MQTT 5 session is published once when its delay runs out, and
 *   not when its device returns in time.
 * A failing test prints every node's warnings and errors.
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

/** `mosquitto_sub -c` (persistent session) as client `id` on `filter`, QoS 2, bounded by -W 15; resolves with its output lines. */
function mosquittoSub(port: number, id: string, filter: string, extra: string[]): Promise<string[]> {
  return new Promise((resolve, reject) => {
    const proc = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-c', '-i', id, '-q', '2', '-t', filter, '-W', '15', ...extra], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.setEncoding('utf8');
    proc.stdout.on('data', (d: string) => (out += d));
    proc.stderr.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('exit', (code) => (code === 0 ? resolve(out.split('\n').filter((l) => l !== '')) : reject(new Error(`mosquitto_sub exited ${code}: ${out}`))));
  });
}

const expected = (topic: string, n: number): string[] => Array.from({ length: n }, (_, i) => `${topic} m${i} q${i % 2 === 0 ? 1 : 2}`);

if (requireNatsServer()) {
  let nats!: NatsCluster;
  const nodes: BrokerProcess[] = [];
  /** Every node process started, restarted ones included, for the logs printed on a failure. */
  const started: [string, BrokerProcess][] = [];
  let publisher!: mqtt.MqttClient;

  async function startNode(i: number): Promise<BrokerProcess> {
    const proc = await startBroker({
      args: ['--bus', `${nats.servers[i]!.url}?${TUNING}`, '--node-id', `snode-${i}`, '--sys-interval-sec', '0'],
      env: { TOPICAST_DRAIN_MS: '500', TOPICAST_SHUTDOWN_TIMEOUT_MS: '3000' },
      timeoutMs: 60_000,
    });
    nodes[i] = proc;
    started.push([`node ${'ABC'[i]} (run ${started.filter(([l]) => l.startsWith(`node ${'ABC'[i]} `)).length + 1})`, proc]);
    return proc;
  }

  /** Publishes m0..m(n-1) on `topic` through node C, QoS 1 and 2 alternating, each acknowledged before the next. */
  async function publish(topic: string, n: number): Promise<void> {
    for (let i = 0; i < n; i++) await publisher.publishAsync(topic, `m${i}`, { qos: i % 2 === 0 ? 1 : 2 });
  }

  const running = (n: BrokerProcess): boolean => n.proc.exitCode === null && n.proc.signalCode === null;

  async function metric(node: BrokerProcess, name: string): Promise<number> {
    return (await scrapeMetrics(node.httpUrl)).get(name) ?? 0;
  }

  /**
   * The device leaves `node` (DISCONNECT) and the node has seen its connection close. mqtt.js
   * resolves `endAsync` once its own socket is closed, which can be before the node read the
   * DISCONNECT: a message arriving meanwhile goes in flight to that connection (resent with DUP
   * when the device returns) instead of the session's queue, and a test waiting for the queue to
   * fill waits for ever — the cause of the CI flake "6 messages queued on the node holding the
   * sessions" (more likely on a node just restarted, whose code runs cold).
   */
  async function leave(d: Connected, node: BrokerProcess): Promise<void> {
    const open = await metric(node, 'topicast_mqtt_connections');
    await close(d.client);
    await waitFor(async () => (await metric(node, 'topicast_mqtt_connections')) < open, 'the node sees the device gone', 20_000);
  }

  /** Runs a test body; on failure prints every node's warnings and errors (all runs) so the report explains itself. */
  function logged(fn: () => Promise<void>): () => Promise<void> {
    return async () => {
      // A test that failed half-way may have left a node stopped: every test starts with three.
      for (const [i, node] of nodes.entries()) if (!running(node)) await startNode(i);
      if (!publisher.connected) {
        publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${nodes[2]!.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0 });
        clients.push(publisher);
      }
      try {
        await fn();
      } catch (err) {
        for (const [label, node] of started) {
          for (const line of node.logs.filter((l) => /"level":[456]0/.test(l)).slice(-40)) console.log(`# ${label}: ${line.slice(0, 500)}`);
        }
        throw err;
      }
    };
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
    for (const [label, node] of started) for (const line of node.logs.filter((l) => /"level":[456]0/.test(l)).slice(-40)) console.log(`# ${label}: ${line.slice(0, 400)}`);
  });

  before(async () => {
    nats = await startNatsCluster(3);
    // Every start settles before a failure is reported: the helpers' end-of-file cleanup stops only
    // the brokers that finished starting, and one left starting would keep the test process alive.
    const starts = await Promise.allSettled([0, 1, 2].map(startNode));
    for (const r of starts) if (r.status === 'rejected') throw r.reason;
    publisher = await mqtt.connectAsync(`mqtt://127.0.0.1:${nodes[2]!.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0 });
    clients.push(publisher);
  });

  test('mqtt.js 5 and 3.1.1: subscribed on A, away while QoS 1/2 messages are published, back on B: Session Present 1, every message once', { timeout: 90_000 }, logged(async () => {
    const [a, b] = nodes as [BrokerProcess, BrokerProcess];
    const v5 = { clientId: 'dev-v5', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } };
    const v4 = { clientId: 'dev-v4', protocolVersion: 4 as const, clean: false };
    for (const [options, topic] of [[v5, 'plant/v5/#'], [v4, 'plant/v4/#']] as const) {
      const d = await device(a.mqttPort, options);
      assert.equal(d.sessionPresent, false);
      await subscribeEverywhere(d, topic, topic.replace('#', 'probe'));
      await leave(d, a);
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
  }));

  test('QoS 2 in flight moves too: PUBREL sent on A is resent on B, the message itself is not', { timeout: 60_000 }, logged(async () => {
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
  }));

  test('client-id takeover across nodes: connecting to B closes the connection on A', { timeout: 60_000 }, logged(async () => {
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
  }));

  test('mosquitto_sub -c: subscribed on A, queued QoS 1/2 messages delivered on B', { timeout: 60_000, skip: haveMosquittoSub ? false : 'mosquitto_sub not installed' }, logged(async () => {
    const [a, b] = nodes as [BrokerProcess, BrokerProcess];
    const open = await metric(a, 'topicast_mqtt_connections');
    assert.deepEqual(await mosquittoSub(a.mqttPort, 'mosq-roaming', 'plant/mosq/#', ['-E']), [], 'subscribed on A, then gone (-E)');
    await waitFor(async () => (await metric(a, 'topicast_mqtt_connections')) <= open, 'A sees mosquitto_sub gone', 20_000);
    await publish('plant/mosq/t', 6);
    await queuedOn(a, 6);
    const got = await mosquittoSub(b.mqttPort, 'mosq-roaming', 'plant/mosq/#', ['-C', '6', '-F', '%t %p q%q']);
    assertOnce(got, expected('plant/mosq/t', 6), 'mosquitto_sub on B');
  }));

  /** Every node's adopted-sessions counter (-1 for a node not running). */
  async function adoptedCounts(): Promise<number[]> {
    return Promise.all(nodes.map((n) => (running(n) ? metric(n, 'topicast_mqtt_cluster_sessions_adopted_total') : -1)));
  }

  /** Waits until the nodes running now adopted `n` more sessions than `before`; returns the index of each node that adopted. */
  async function adopted(before: number[], n: number): Promise<number[]> {
    let now: number[] = before;
    const gained = (v: number, i: number): number => (v >= 0 && (before[i] ?? -1) >= 0 ? v - before[i]! : 0);
    await waitFor(async () => {
      now = await adoptedCounts();
      return now.reduce((sum, v, i) => sum + gained(v, i), 0) >= n;
    }, `${n} sessions adopted by the survivors`, 30_000);
    return now.flatMap((v, i) => (gained(v, i) > 0 ? [i] : []));
  }

  /** QoS 1/2 messages queued on all nodes together (for offline sessions, or behind a full in-flight window). */
  async function queuedEverywhere(): Promise<number> {
    let sum = 0;
    for (const node of nodes) sum += await metric(node, 'topicast_mqtt_queued');
    return sum;
  }

  /** Waits until the running nodes hold at least `n` queued QoS 1/2 messages between them. */
  async function queuedOnSurvivors(survivors: BrokerProcess[], n: number): Promise<void> {
    await waitFor(async () => {
      let sum = 0;
      for (const node of survivors) sum += await metric(node, 'topicast_mqtt_queued');
      return sum >= n;
    }, `${n} messages queued on the adopting nodes`, 20_000);
  }

  async function restart(i: number): Promise<void> {
    await startNode(i);
  }

  test('A drained (SIGTERM) while holding offline sessions (mqtt.js 5 and 3.1.1): a survivor adopts them, QoS 1/2 messages published after A is gone are queued, the devices find them on B', { timeout: 90_000 }, logged(async () => {
    const [a, b, c] = nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
    const devices = [
      { options: { clientId: 'dev-drain5', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } }, topic: 'plant/drain5' },
      { options: { clientId: 'dev-drain4', protocolVersion: 4 as const, clean: false }, topic: 'plant/drain4' },
    ];
    for (const { options, topic } of devices) {
      const d = await device(a.mqttPort, options);
      await subscribeEverywhere(d, `${topic}/#`, `${topic}/probe`);
      await leave(d, a);
    }
    await publish('plant/drain5/before', 2); // queued on A, stored: they move with the session
    await queuedOn(a, 2);
    const before = await adoptedCounts();
    a.kill('SIGTERM');
    await a.exited;
    await adopted(before, 2);
    for (const { topic } of devices) await publish(`${topic}/t`, 6);
    await queuedOnSurvivors([b, c], 14);
    for (const { options, topic } of devices) {
      const back = await device(b.mqttPort, options);
      assert.equal(back.sessionPresent, true, `${options.clientId}: Session Present 1`);
      const want = [...(topic === 'plant/drain5' ? expected('plant/drain5/before', 2) : []), ...expected(`${topic}/t`, 6)];
      await waitFor(() => back.got.length >= want.length, `${options.clientId}: ${want.length} messages`, 20_000);
      await publisher.publishAsync(`${topic}/t`, 'live', { qos: 1 });
      await waitFor(() => back.got.length >= want.length + 1, `${options.clientId}: the live message`, 20_000);
      assertOnce(back.got.slice(0, want.length), want, `${options.clientId} after the drain`);
      assert.deepEqual(back.got.slice(want.length), [`${topic}/t live q1`], `${options.clientId}: then the live message, nothing twice`);
      await close(back.client);
    }
    await restart(0);
  }));

  test('A killed with -9 while holding offline sessions (mqtt.js 3.1.1, mosquitto_sub -c): adopted after the node timeout, messages published after A is gone reach the devices on B and C once', { timeout: 90_000 }, logged(async () => {
    const [a, b, c] = nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
    const options = { clientId: 'dev-kill', protocolVersion: 4 as const, clean: false };
    const d = await device(a.mqttPort, options);
    await subscribeEverywhere(d, 'plant/kill/#', 'plant/kill/probe');
    await leave(d, a);
    let sessions = 1;
    if (haveMosquittoSub) {
      const open = await metric(a, 'topicast_mqtt_connections');
      assert.deepEqual(await mosquittoSub(a.mqttPort, 'mosq-kill', 'plant/mosqkill/#', ['-E']), [], 'subscribed on A, then gone (-E)');
      await waitFor(async () => (await metric(a, 'topicast_mqtt_connections')) <= open, 'A sees mosquitto_sub gone', 20_000);
      sessions++;
    }
    await publish('plant/kill/before', 2);
    await queuedOn(a, 2);
    await waitFor(async () => (await metric(a, 'topicast_mqtt_cluster_session_writes_pending')) === 0, 'A stored its queue', 20_000);
    const before = await adoptedCounts();
    a.kill('SIGKILL');
    await a.exited;
    await adopted(before, sessions);
    await publish('plant/kill/t', 6);
    if (haveMosquittoSub) await publish('plant/mosqkill/t', 6);
    await queuedOnSurvivors([b, c], 6 * sessions + 2);
    const back = await device(b.mqttPort, options);
    assert.equal(back.sessionPresent, true);
    const want = [...expected('plant/kill/before', 2), ...expected('plant/kill/t', 6)];
    await waitFor(() => back.got.length >= want.length, 'the eight messages', 20_000);
    assertOnce(back.got, want, 'after kill -9');
    await close(back.client);
    if (haveMosquittoSub) {
      const got = await mosquittoSub(c.mqttPort, 'mosq-kill', 'plant/mosqkill/#', ['-C', '6', '-F', '%t %p q%q']);
      assertOnce(got, expected('plant/mosqkill/t', 6), 'mosquitto_sub on C after kill -9');
    }
    await restart(0);
  }));

  test('the adopter killed too before the device returns: the last survivor adopts the session, nothing is lost', { timeout: 120_000 }, logged(async () => {
    const [a] = nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
    const options = { clientId: 'dev-chain', protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } };
    const d = await device(a.mqttPort, options);
    await subscribeEverywhere(d, 'plant/chain/#', 'plant/chain/probe');
    await leave(d, a);
    let before = await adoptedCounts();
    a.kill('SIGKILL');
    await a.exited;
    const [first] = await adopted(before, 1);
    assert.ok(first === 1 || first === 2, 'B or C adopted it');
    const last = first === 1 ? 2 : 1;
    const adopter = nodes[first]!;
    const survivor = nodes[last]!;
    // Published through the node that stays, whichever it is.
    const via = await mqtt.connectAsync(`mqtt://127.0.0.1:${survivor.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0 });
    clients.push(via);
    const send = async (from: number, to: number): Promise<void> => {
      for (let i = from; i < to; i++) await via.publishAsync('plant/chain/t', `m${i}`, { qos: i % 2 === 0 ? 1 : 2 });
    };
    await send(0, 4);
    await queuedOn(adopter, 4);
    await waitFor(async () => (await metric(adopter, 'topicast_mqtt_cluster_session_writes_pending')) === 0, 'the adopter stored the queue', 20_000);
    // The adopter may hold other offline sessions (devices of earlier tests that left it): all move.
    // (Its connected sessions, the publisher's clean one among them, end with it.)
    const held = (await metric(adopter, 'topicast_mqtt_sessions')) - (await metric(adopter, 'topicast_mqtt_connections'));
    before = await adoptedCounts();
    adopter.kill('SIGKILL');
    await adopter.exited;
    const [second] = await adopted(before, held);
    assert.equal(second, last, 'the last survivor adopted it');
    await send(4, 8);
    await queuedOn(survivor, 8);
    const back = await device(survivor.mqttPort, options);
    assert.equal(back.sessionPresent, true);
    await waitFor(() => back.got.length >= 8, 'the eight messages', 20_000);
    assertOnce(back.got, expected('plant/chain/t', 8), 'after two kills');
    await close(back.client);
    await via.endAsync();
  }));

  test('simultaneous claims of one client id on B and C: exactly one session wins, the other connection is taken over', { timeout: 90_000 }, logged(async () => {
    const [a, b, c] = nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
    for (let round = 0; round < 4; round++) {
      const options = { clientId: `dev-race-${round}`, protocolVersion: 5 as const, clean: false, properties: { sessionExpiryInterval: 600 } };
      const topic = `plant/race/${round}`;
      // A session held offline on A (rounds 0, 2) or nowhere yet (rounds 1, 3).
      if (round % 2 === 0) {
        const d = await device(a.mqttPort, options);
        await d.client.subscribeAsync(topic, { qos: 1 });
        await leave(d, a);
      }
      const both = await Promise.allSettled([b, c].map(async (node) => {
        const client = mqtt.connect(`mqtt://127.0.0.1:${node.mqttPort}`, { reconnectPeriod: 0, connectTimeout: 20_000, ...options });
        clients.push(client);
        const got: string[] = [];
        let closed = false;
        client.on('message', (t, payload) => got.push(`${t} ${payload.toString()}`));
        client.on('close', () => (closed = true));
        client.on('error', () => undefined);
        await new Promise<void>((resolve) => {
          client.once('connect', () => resolve());
          client.once('close', () => resolve());
        });
        return { client, got, isClosed: () => closed };
      }));
      const conns = both.map((r) => (r.status === 'fulfilled' ? r.value : undefined)).filter((v) => v !== undefined);
      assert.equal(conns.length, 2);
      await waitFor(() => conns.filter((x) => x.isClosed()).length >= 1, `round ${round}: one of the two connections taken over`, 20_000);
      const winner = conns.find((x) => !x.isClosed());
      assert.ok(winner, `round ${round}: one connection stays`);
      if (round % 2 === 1) await winner.client.subscribeAsync(topic, { qos: 1 });
      const queuedBefore = await queuedEverywhere();
      await publisher.publishAsync(topic, 'once', { qos: 1 });
      await waitFor(() => winner.got.length >= 1, `round ${round}: the message on the winner`, 20_000);
      // A marker after it: a second session somewhere would have queued or sent the message too.
      await publisher.publishAsync(topic, 'marker', { qos: 1 });
      await waitFor(() => winner.got.length >= 2, `round ${round}: the marker`, 20_000);
      assert.deepEqual(winner.got, [`${topic} once`, `${topic} marker`]);
      await close(winner.client);
      assert.equal(await queuedEverywhere(), queuedBefore, `round ${round}: no second session queued the messages`);
    }
  }));

  test('the delayed will of an orphaned MQTT 5 session is published once when its delay runs out; not if the device returns in time', { timeout: 90_000 }, logged(async () => {
    const [a, b, c] = nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
    const watcher = await device(b.mqttPort, { clientId: 'will-watcher', protocolVersion: 5 });
    await subscribeEverywhere(watcher, 'plant/will/#', 'plant/will/probe');
    const withWill = (clientId: string, delaySec: number): mqtt.IClientOptions => ({
      clientId, protocolVersion: 5, clean: false, properties: { sessionExpiryInterval: 600 },
      will: { topic: `plant/will/${clientId}`, payload: Buffer.from('gone'), qos: 1, retain: false, properties: { willDelayInterval: delaySec } },
    });
    const due = await device(a.mqttPort, withWill('dev-will-due', 4));
    const back = await device(a.mqttPort, withWill('dev-will-back', 600));
    for (const d of [due, back]) {
      const open = await metric(a, 'topicast_mqtt_connections');
      d.client.stream.destroy(); // the network connection is lost: the will waits for its delay
      await waitFor(async () => (await metric(a, 'topicast_mqtt_connections')) < open, 'A sees the device gone', 20_000);
    }
    await waitFor(async () => (await metric(a, 'topicast_mqtt_cluster_session_writes_pending')) === 0, 'A stored the pending wills', 20_000);
    const before = await adoptedCounts();
    a.kill('SIGKILL');
    await a.exited;
    await adopted(before, 2);
    // The device with the long delay comes back in time (to C): its will is never published.
    const returned = await device(c.mqttPort, withWill('dev-will-back', 600));
    assert.equal(returned.sessionPresent, true);
    await returned.client.endAsync(); // normal DISCONNECT: no will
    await waitFor(() => watcher.got.some((l) => l.startsWith('plant/will/dev-will-due ')), 'the will of the orphaned session, after its delay', 30_000);
    await publisher.publishAsync('plant/will/marker', 'after', { qos: 1 });
    await waitFor(() => watcher.got.includes('plant/will/marker after q1'), 'a marker after the will', 20_000);
    assert.deepEqual(watcher.got, ['plant/will/dev-will-due gone q1', 'plant/will/marker after q1'], 'the due will once, the returned device\'s never');
    await close(watcher.client);
    await restart(0);
  }));
}
