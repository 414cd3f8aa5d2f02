/**
 * A cluster that forgets nothing (issue 21): history topics live in one JetStream stream every
 * node shares (cluster/DESIGN.md "History in JetStream"), so a client that moves resumes on any
 * node. Three Topicast processes on a 3-server NATS cluster, started by this file on 127.0.0.1:
 * an SDK subscriber on node A is drained (and, separately, A is killed with -9) and resumes on B
 * with `recovered: true` and exactly the messages it missed, in order, offsets compared; a
 * JetStream member killed while messages flow changes nothing a subscriber sees; a purged stream
 * answers the next resume `recovered: false`, and so does a stream deleted (a new one is a new
 * epoch) while messages keep flowing through the new one. And an MQTT shared subscription with members on all
 * three nodes gets each message once in the whole cluster (NATS queue groups), not once per node.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mqtt from 'mqtt';
import { connect as natsConnect } from 'nats';
import { connect, type Client, type ResumeOutcome } from 'topicast';
import { startBroker, waitFor, within, type BrokerProcess } from '../helpers/broker.js';
import { scrapeMetrics } from '../helpers/native-client.js';
import { requireNatsServer, startNatsCluster, type NatsCluster } from '../helpers/nats.js';

const TUNING = 'heartbeatMs=250&nodeTimeoutMs=2000&reconnectWaitMs=100&jetStreamRetryMs=300&requestTimeoutMs=10000';
const DRAIN_MS = 1500;

const clients: Client[] = [];
const mqttClients: mqtt.MqttClient[] = [];
after(async () => {
  for (const c of mqttClients) c.end(true);
  await Promise.allSettled(clients.map((c) => c.close()));
});

interface Received {
  value: number;
  offset: number | undefined;
  replayed: boolean;
}

if (requireNatsServer()) {
  let nats!: NatsCluster;
  const nodes: BrokerProcess[] = [];

  async function startNode(i: number): Promise<BrokerProcess> {
    const proc = await startBroker({
      args: ['--bus', `${nats.servers[i]!.url}?${TUNING}`, '--node-id', `hnode-${i}`, '--history-filters', 'h/#', '--sys-interval-sec', '0'],
      env: { TOPICAST_DRAIN_MS: String(DRAIN_MS), TOPICAST_SHUTDOWN_TIMEOUT_MS: '3000' },
      timeoutMs: 60_000,
    });
    nodes[i] = proc;
    return proc;
  }

  async function client(urls: string | string[]): Promise<Client> {
    const c = await connect(urls, { codec: 'json', reconnect: { minDelayMs: 100, maxDelayMs: 500 } });
    clients.push(c);
    return c;
  }

  /** Publishes `from..to` on `topic` through `pub`, each acknowledged (stored in the stream) before the next. */
  async function publishRange(pub: Client, topic: string, from: number, to: number): Promise<void> {
    for (let v = from; v <= to; v++) await pub.publish(topic, v, { ack: true });
  }

  /** Waits until JetStream answers again and every node's bus is up (a member was restarted). */
  async function settled(): Promise<void> {
    await nats.settled();
    for (const [i, node] of nodes.entries()) await waitFor(async () => (await scrapeMetrics(node.httpUrl)).get('topicast_bus_state') === 2, `node ${i}'s bus up again`, 60_000);
  }

  function assertExactly(got: Received[], from: number, to: number, what: string): void {
    assert.deepEqual(got.map((r) => r.value), Array.from({ length: to - from + 1 }, (_, i) => from + i), `${what}: every message once, in order`);
    for (let i = 1; i < got.length; i++) assert.ok(got[i]!.offset! > got[i - 1]!.offset!, `${what}: offsets grow (${got[i - 1]!.offset} then ${got[i]!.offset})`);
  }

  // CLUSTER_DEBUG=1 prints every node's warnings and errors at the end (what the bus went through).
  after(() => {
    if (!process.env.CLUSTER_DEBUG) return;
    for (const [i, node] of nodes.entries()) for (const line of node.logs.filter((l) => /"level":[456]0|stream created/.test(l)).slice(-40)) console.log(`# node ${i}: ${line.slice(0, 400)}`);
    for (const [i, s] of nats.servers.entries()) for (const line of s.logs.filter((l) => /\[(WRN|ERR|FTL)\]|leader|JetStream/.test(l)).slice(-60)) console.log(`# nats ${i}: ${line.slice(0, 300)}`);
  });

  before(async () => {
    nats = await startNatsCluster(3);
    await Promise.all([0, 1, 2].map(startNode));
  });

  test('drain: an SDK subscriber moves from A to B and resumes with recovered: true and exactly what it missed', { timeout: 90_000 }, async () => {
    const [a, b, c] = nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
    const sub = await client([a.url, b.url]);
    assert.equal(sub.url, a.url);
    const got: Received[] = [];
    const s = await sub.subscribe('h/drain', (v, m) => got.push({ value: v as number, offset: m.offset, replayed: m.replayed }));
    const outcomes: ResumeOutcome[] = [];
    s.on('resumed', (o) => outcomes.push(o));
    const pub = await client(c.url);
    await publishRange(pub, 'h/drain', 1, 10);
    await waitFor(() => got.length === 10, 'the first ten on A', 20_000);
    const epoch = s.position!.epoch;

    a.kill('SIGTERM');
    // Published all the while the subscriber moves: some reach it on A, those published while it is
    // between nodes are replayed on B, the rest arrive live there.
    let n = 10;
    const deadline = Date.now() + 20_000;
    while (!(sub.url === b.url && s.state === 'live')) {
      assert.ok(Date.now() < deadline, 'resumed on B in time');
      await publishRange(pub, 'h/drain', n + 1, n + 1);
      n++;
    }
    await publishRange(pub, 'h/drain', n + 1, n + 10);
    n += 10;
    await waitFor(() => got.length >= n, `all ${n}`, 20_000);
    assert.equal(outcomes.length, 1, 'one resume');
    assert.equal(outcomes[0]!.recovered, true, 'B resumes from the position A gave: nothing lost');
    assert.equal(s.position!.epoch, epoch, 'one stream, one epoch on every node');
    assertExactly(got, 1, n, 'drained subscriber');
    console.log(`# drain: ${n} messages, resumed on B with ${outcomes[0]!.replayed} replayed`);
    await a.exited;
    await startNode(0);
  });

  test('kill -9 of A: the SDK subscriber reconnects to B and resumes with recovered: true and exactly what it missed', { timeout: 90_000 }, async () => {
    const [a, b, c] = nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
    const sub = await client([a.url, b.url]);
    assert.equal(sub.url, a.url);
    const got: Received[] = [];
    const s = await sub.subscribe('h/kill', (v, m) => got.push({ value: v as number, offset: m.offset, replayed: m.replayed }));
    const outcomes: ResumeOutcome[] = [];
    s.on('resumed', (o) => outcomes.push(o));
    const pub = await client(c.url);
    await publishRange(pub, 'h/kill', 1, 10);
    await waitFor(() => got.length === 10, 'the first ten on A', 20_000);
    a.kill('SIGKILL');
    await a.exited;
    await publishRange(pub, 'h/kill', 11, 30); // stored while the subscriber is away
    await waitFor(() => sub.url === b.url && s.state === 'live', 'resumed on B', 30_000);
    await publishRange(pub, 'h/kill', 31, 40);
    await waitFor(() => got.length >= 40, 'all forty', 20_000);
    assert.deepEqual(outcomes.map((o) => o.recovered), [true]);
    assert.ok(outcomes[0]!.replayed >= 20, `the twenty published while away were replayed (${outcomes[0]!.replayed})`);
    assertExactly(got, 1, 40, 'subscriber moved by a crash');
    // A history query on the publisher's node answers from the same stream: the same values at the same offsets.
    const answer = (await (await fetch(`${c.httpUrl}/api/history/${encodeURIComponent('h/kill')}?limit=100&order=oldest`)).json()) as { rows: { offset: number; value: number }[]; complete: boolean };
    assert.deepEqual(answer.rows.map((r) => [r.value, r.offset]), got.map((r) => [r.value, r.offset]));
    assert.equal(answer.complete, true);
    await startNode(0);
  });

  test('a JetStream member killed while messages flow changes nothing a subscriber sees', { timeout: 120_000 }, async () => {
    const [, b, c] = nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
    const sub = await client(b.url);
    const got: Received[] = [];
    const s0 = await sub.subscribe('h/member', (v, m) => got.push({ value: v as number, offset: m.offset, replayed: m.replayed }));
    const pub = await client(c.url);
    await publishRange(pub, 'h/member', 1, 20);
    // Server 0 serves node A only: the stream (3 replicas) loses a member, maybe its leader.
    const killing = nats.servers[0]!.kill('SIGKILL');
    try {
      await publishRange(pub, 'h/member', 21, 60);
      await killing;
      await waitFor(() => got.length >= 60, 'all sixty', 30_000);
      assertExactly(got, 1, 60, 'subscriber while a JetStream member died');
    } finally {
      // Whatever happened above, the tests after this one start from a whole, settled cluster.
      await killing;
      await nats.servers[0]!.restart();
      await settled();
    }
    const late = await client(b.url);
    const replay: Received[] = [];
    const s = await late.subscribe('h/member', (v, m) => replay.push({ value: v as number, offset: m.offset, replayed: m.replayed }), { resume: { epoch: s0.position!.epoch, offset: got[29]!.offset! } });
    await waitFor(() => replay.length >= 30, 'a resume from the 30th replays the rest', 20_000);
    assert.equal(s.recovered, true);
    assertExactly(replay, 31, 60, 'replay after the member came back');
  });

  test('a shared group first formed on a node whose own NATS server is down: joined through a server the node learnt of', { timeout: 120_000 }, async () => {
    // Node A is configured with server 0 only; its link moved to another server when 0 died. The
    // group's connection is made now, for the first time on A: it must not try server 0 alone.
    const killing = nats.servers[0]!.kill('SIGKILL');
    try {
      await killing;
      const [a, b] = nodes as [BrokerProcess, BrokerProcess];
      await waitFor(async () => (await scrapeMetrics(a.httpUrl)).get('topicast_bus_state') !== 0, "node A's bus reconnected elsewhere", 30_000);
      const got: string[] = [];
      const member = await within(mqtt.connectAsync(`mqtt://127.0.0.1:${a.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0, clientId: 'late-member' }), "the member's CONNACK", 15_000);
      mqttClients.push(member);
      member.on('message', (_t, p) => got.push(p.toString()));
      await within(member.subscribeAsync('$share/late/late/#', { qos: 1 }), "the member's SUBACK", 15_000);
      const pub = await within(mqtt.connectAsync(`mqtt://127.0.0.1:${b.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0 }), "the publisher's CONNACK", 15_000);
      mqttClients.push(pub);
      let n = 0;
      await waitFor(async () => {
        await within(pub.publishAsync('late/job', String(++n), { qos: 1 }), 'a PUBACK', 5_000);
        return got.length > 0;
      }, "a job published on B reaching the group's member on A", 30_000);
      member.end(true);
      pub.end(true);
    } finally {
      await killing;
      await nats.servers[0]!.restart();
      await settled();
    }
  });

  test('a shared subscription with members on three nodes: each message to exactly one member in the cluster', { timeout: 60_000 }, async () => {
    const got = new Map<number, string[]>(); // message index → members that got it
    const perMember = [0, 0, 0];
    const warm = [0, 0, 0];
    for (const [i, node] of nodes.entries()) {
      const c = await within(mqtt.connectAsync(`mqtt://127.0.0.1:${node.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0, clientId: `worker-${i}` }), `worker-${i}'s CONNACK`, 15_000);
      mqttClients.push(c);
      c.on('message', (topic, payload) => {
        if (topic === 'jobs/warm') return void warm[i]!++;
        const n = Number(payload.toString());
        got.set(n, [...(got.get(n) ?? []), `worker-${i}`]);
        perMember[i]!++;
      });
      await within(c.subscribeAsync('$share/workers/jobs/#', { qos: 1 }), `worker-${i}'s SUBACK`, 15_000);
    }
    // A plain subscriber beside them gets everything (the group takes nothing from others).
    const all: number[] = [];
    const plain = await within(mqtt.connectAsync(`mqtt://127.0.0.1:${nodes[0]!.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0 }), "the plain subscriber's CONNACK", 15_000);
    mqttClients.push(plain);
    plain.on('message', (t, p) => t !== 'jobs/warm' && all.push(Number(p.toString())));
    await plain.subscribeAsync('jobs/#', { qos: 1 });
    const pubs = await Promise.all([1, 2].map(async (i) => {
      const p = await within(mqtt.connectAsync(`mqtt://127.0.0.1:${nodes[i]!.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0 }), `publisher ${i}'s CONNACK`, 15_000);
      mqttClients.push(p);
      return p;
    }));
    // A group's queue subscription reaches NATS shortly after the SUBACK: warm up until every member has had one.
    await waitFor(async () => {
      await within(pubs[0]!.publishAsync('jobs/warm', '0', { qos: 1 }), 'a warm-up PUBACK', 5_000);
      return warm.every((k) => k > 0);
    }, 'every member takes part in the group', 20_000);
    got.clear();
    perMember.fill(0);
    all.length = 0;
    const count = 90;
    for (let n = 1; n <= count; n++) await within(pubs[n % 2]!.publishAsync(`jobs/${n % 7}`, String(n), { qos: 1 }), `job ${n}'s PUBACK`, 5_000);
    await waitFor(() => all.length >= count && [...got.values()].reduce((k, m) => k + m.length, 0) >= count, 'every job delivered', 20_000);
    await new Promise((r) => setTimeout(r, 500)); // a second copy, if any, would arrive meanwhile
    assert.equal(all.length, count, 'the plain subscriber got every job once');
    for (let n = 1; n <= count; n++) assert.equal(got.get(n)?.length, 1, `job ${n}: ${JSON.stringify(got.get(n))}`);
    // One member per message in the whole cluster, spread over the nodes (a member missing all 90 would be a (2/3)^90 chance).
    for (const [i, k] of perMember.entries()) assert.ok(k > 0, `worker-${i} got some of the jobs (${perMember.join(', ')})`);
    console.log(`# shared subscription over three nodes: ${perMember.join(' / ')} of ${count}`);
  });

  test('a purged stream: the next resume answers recovered: false', { timeout: 60_000 }, async () => {
    const [, b, c] = nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
    const pub = await client(c.url);
    const first = await client(b.url);
    const got: Received[] = [];
    const s1 = await first.subscribe('h/purge', (v, m) => got.push({ value: v as number, offset: m.offset, replayed: m.replayed }));
    await publishRange(pub, 'h/purge', 1, 5);
    await waitFor(() => got.length === 5, 'five', 20_000);
    const position = s1.position!;
    await first.close();
    await publishRange(pub, 'h/purge', 6, 10);
    const nc = await natsConnect({ servers: nats.servers[1]!.url });
    try {
      // The member killed by the previous test may still be catching up: the purge is retried until the stream answers.
      const jsm = await nc.jetstreamManager({ timeout: 5000, checkAPI: false });
      await waitFor(async () => (await jsm.streams.purge('TOPICAST_HISTORY').catch(() => undefined))?.success === true, 'the stream purged', 30_000);
    } finally {
      await nc.close();
    }
    for (const node of [b, c]) {
      const again = await client(node.url);
      const s2 = await again.subscribe('h/purge', () => {}, { resume: position });
      await waitFor(() => s2.recovered !== undefined, 'resume answered', 20_000);
      assert.equal(s2.recovered, false, `node ${node.url}: messages after the position were purged ${node.logs.filter((l) => /history|purge/i.test(l)).slice(-5).join('\n')}`);
      await again.close();
    }
    const metrics = await scrapeMetrics(b.httpUrl);
    assert.ok((metrics.get('topicast_bus_nats_history_purges_seen_total') ?? 0) >= 1, 'the purge was seen and counted');
  });

  test('a stream deleted and made again: a new epoch, the old position answers recovered: false, messages flow on', { timeout: 60_000 }, async () => {
    const [, b, c] = nodes as [BrokerProcess, BrokerProcess, BrokerProcess];
    const pub = await client(c.url);
    const first = await client(b.url);
    const got: Received[] = [];
    const s1 = await first.subscribe('h/reset', (v, m) => got.push({ value: v as number, offset: m.offset, replayed: m.replayed }));
    await publishRange(pub, 'h/reset', 1, 3);
    await waitFor(() => got.length === 3, 'three', 20_000);
    const position = s1.position!;
    await first.close();
    const nc = await natsConnect({ servers: nats.servers[1]!.url });
    try {
      const jsm = await nc.jetstreamManager({ timeout: 5000, checkAPI: false });
      await waitFor(async () => (await jsm.streams.delete('TOPICAST_HISTORY').catch(() => false)) === true, 'the stream deleted', 30_000);
    } finally {
      await nc.close();
    }
    const again = await client(b.url);
    const after: Received[] = [];
    const s2 = await again.subscribe('h/reset', (v, m) => after.push({ value: v as number, offset: m.offset, replayed: m.replayed }), { resume: position });
    await waitFor(() => s2.recovered !== undefined, 'resume answered', 20_000);
    assert.equal(s2.recovered, false, 'the stream that held the position is gone');
    assert.notEqual(s2.position!.epoch, position.epoch, 'a new stream is a new epoch');
    // Publishes may be refused while the new stream elects its leader: retried until one is taken, then the rest.
    await waitFor(async () => (await pub.publish('h/reset', 4, { ack: true }).then(() => true, () => false)), 'the new stream takes a publish', 30_000);
    await publishRange(pub, 'h/reset', 5, 6);
    await waitFor(() => after.length >= 3, 'messages through the new stream', 20_000);
    // (4 may come twice: a publish refused while the leader was elected can have been stored all the same.)
    assertExactly(after.slice(-3), 4, 6, 'through the new stream');
    assert.equal(after[0]!.value, 4);
  });
}
