/**
 * The Bus contract (test/unit/broker/cluster/bus-contract.ts) against the MQTT 5 upstream adapter
 * (broker/src/cluster/mqtt-upstream.ts) on a real Mosquitto started here with a generated
 * config on a free 127.0.0.1 port. Each cluster gets its own upstream root (isolation on one
 * broker) and its own TCP proxy in front of Mosquitto, which `setDown` cuts and restores.
 * Plus what the contract does not cover: a blip shorter than the will grace fires no will,
 * an unreachable broker makes start() reject, and the root is checked.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import type * as MqttUpstream from '../../../../broker/src/cluster/mqtt-upstream.js';
import { freePort } from '../../../helpers/broker.js';
import { haveMosquitto, startMosquitto, type Mosquitto } from '../../../helpers/mosquitto.js';
import { busMessage, Recorder, runBusContract } from '../../../unit/broker/cluster/bus-contract.js';

const { createMqttBus } = (await import(new URL('../../../../../broker/dist/cluster/mqtt-upstream.js', import.meta.url).href)) as typeof MqttUpstream;

if (!haveMosquitto) console.log('# skipping the MQTT upstream bus tests: mosquitto not installed');

let mosquitto: Mosquitto | undefined;
let mosquittoPort = 0;

before(async () => {
  if (!haveMosquitto) return;
  mosquitto = await startMosquitto();
  mosquittoPort = mosquitto.port;
});

after(() => mosquitto?.stop());

/** A TCP proxy to Mosquitto that can be cut (every connection destroyed, new ones refused) and restored. */
async function proxy(): Promise<{ port: number; setDown(down: boolean): void; close(): Promise<void> }> {
  let down = false;
  const pairs = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (down) return void client.destroy();
    const upstream = createConnection(mosquittoPort, '127.0.0.1');
    pairs.add(client).add(upstream);
    const end = (): void => {
      client.destroy();
      upstream.destroy();
      pairs.delete(client);
      pairs.delete(upstream);
    };
    client.on('error', end).on('close', end);
    upstream.on('error', end).on('close', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    setDown(value) {
      down = value;
      if (value) for (const s of [...pairs]) s.destroy();
    },
    close: () => {
      for (const s of [...pairs]) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

const GRACE_MS = 400;

function makeBus(port: number, root: string, nodeId: string, extra: Partial<MqttUpstream.MqttBusOptions> = {}): MqttUpstream.MqttBus {
  return createMqttBus({ url: `mqtt://127.0.0.1:${port}`, nodeId, root, reconnectPeriodMs: 100, connectTimeoutMs: 2000, keepaliveSec: 5, willGraceMs: GRACE_MS, ...extra });
}

if (haveMosquitto) {
  runBusContract('mqtt upstream bus (mosquitto)', async (n) => {
    const p = await proxy();
    const root = `tc${randomBytes(4).toString('hex')}`;
    const buses = Array.from({ length: n }, (_, i) => makeBus(p.port, root, `node-${i}`));
    return {
      buses,
      kill: async (i) => buses[i]!.abort(),
      setDown: async (down) => p.setDown(down),
      close: async () => {
        await Promise.all(buses.map((b) => b.close()));
        await p.close();
      },
    };
  }, { timeoutMs: 5000, quietMs: 150 });
}

test('mqtt upstream bus: a blip shorter than the will grace fires no will; a longer absence does, once', { skip: !haveMosquitto }, async () => {
  const p = await proxy();
  const root = `tc${randomBytes(4).toString('hex')}`;
  // Node "a" (lowest id) claims; "b" holds the will and its connection alone is cut.
  // A grace well above a reconnect (100 ms period) on a busy machine, so the first cut is a blip for sure.
  const graceMs = 1500;
  const a = makeBus(mosquittoPort, root, 'a', { willGraceMs: graceMs });
  const b = makeBus(p.port, root, 'b', { willGraceMs: 60_000 });
  const ra = new Recorder();
  const rb = new Recorder();
  try {
    await a.start(ra);
    await b.start(rb);
    await b.setWill('conn-1', busMessage('status/1', 'offline', { retain: true }));
    p.setDown(true);
    await rb.until(() => b.state === 'down', 5000, 'b down');
    p.setDown(false);
    await rb.until(() => b.state === 'up', 5000, 'b up again');
    await new Promise((r) => setTimeout(r, graceMs * 1.5));
    assert.equal(ra.wills.length, 0, 'b came back within the grace under a new incarnation and cleared the old one itself');
    assert.equal(b.counters.connects, 2);

    // Now b stays away longer than the grace: its will is published once, by a.
    p.setDown(true);
    await ra.until(() => ra.wills.length === 1, graceMs + 5000, 'the will claimed');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(ra.wills.length, 1);
    assert.equal(ra.wills[0]!.owner, 'b');
    assert.equal(ra.wills[0]!.key, 'conn-1');
    assert.equal(new TextDecoder().decode(ra.wills[0]!.message.payload), 'offline');
    assert.equal(a.counters.willsClaimed, 1);
  } finally {
    await a.close();
    await b.close();
    await p.close();
  }
});

test('mqtt upstream bus: start() rejects with BusUnavailableError when the broker cannot be reached', async () => {
  const port = await freePort();
  const bus = makeBus(port, 'topicast', 'lonely');
  await assert.rejects(bus.start(new Recorder()), { name: 'BusUnavailableError' });
  assert.equal(bus.state, 'down');
});

test('mqtt upstream bus: a root starting with $ or holding wildcards is refused', () => {
  for (const root of ['$topicast', 'a/+', 'a/#', '']) {
    assert.throws(() => createMqttBus({ url: 'mqtt://127.0.0.1:1', nodeId: 'x', root }), /root/);
  }
  assert.throws(() => createMqttBus({ url: 'mqtt://127.0.0.1:1/%24topicast', nodeId: 'x' }), /root/, 'the root from the URL path is checked too');
  assert.throws(() => createMqttBus({ url: 'mqtt://127.0.0.1:1', nodeId: '' }), /nodeId/);
});

test('mqtt upstream bus: a snapshot of 2,000 retained topics is complete at the marker; concurrent writers of one topic get growing seqs in broker order', { skip: !haveMosquitto }, async () => {
  const root = `tc${randomBytes(4).toString('hex')}`;
  const [a, b] = ['a', 'b'].map((id) => makeBus(mosquittoPort, root, id));
  // c names the root by the URL's path, as `--bus mqtt://host:port/ROOT` does.
  const c = createMqttBus({ url: `mqtt://127.0.0.1:${mosquittoPort}/${root}`, nodeId: 'c' });
  const [ra, rb, rc] = [new Recorder(), new Recorder(), new Recorder()];
  try {
    await Promise.all([a!.start(ra), b!.start(rb), c!.start(rc)]);
    const n = 2000;
    await Promise.all(Array.from({ length: n }, (_, i) => a!.publish(busMessage(`many/${i}`, String(i), { retain: true }))));
    // Held and not held: both paths (re-subscribe with the held identifier, temporary subscription).
    assert.equal((await c!.retained('many/#')).length, n, 'not held: every value before the marker');
    await c!.subscribe('many/#');
    const snap = await c!.retained('many/#');
    assert.equal(snap.length, n, 'held: every value before the marker');
    assert.equal(rc!.messages.length, 0, 'snapshot messages are not delivered live');

    // a and b write one topic concurrently: c sees them in the broker's order, seq growing every time,
    // and its snapshot afterwards holds the last one with the last seq.
    await c!.subscribe('race');
    const writes: Promise<number>[] = [];
    for (let i = 0; i < 300; i++) {
      writes.push(a!.publish(busMessage('race', `a${i}`, { retain: true })));
      writes.push(b!.publish(busMessage('race', `b${i}`, { retain: true })));
    }
    await Promise.all(writes);
    await rc!.until(() => rc!.topics('race').length === 600, 5000, '600 live writes');
    const live = rc!.messages.filter((m) => m.topic === 'race');
    for (let i = 1; i < live.length; i++) assert.ok(live[i]!.seq > live[i - 1]!.seq, `seq grows in arrival order at ${i}`);
    const [last] = await c!.retained('race');
    assert.equal(new TextDecoder().decode(last!.payload), new TextDecoder().decode(live.at(-1)!.payload));
    assert.equal(last!.seq, live.at(-1)!.seq, 'the snapshot names the same message with the same seq');
  } finally {
    await Promise.all([a!.close(), b!.close(), c!.close()]);
  }
});

test('mqtt upstream bus: a broker whose ACL refuses the root makes start() reject with the refusal', { skip: !haveMosquitto }, async () => {
  const refusing = await startMosquitto({ acl: 'topic readwrite elsewhere/#\n' });
  try {
    const bus = makeBus(refusing.port, 'topicast', 'refused');
    await assert.rejects(bus.start(new Recorder()), (err: Error) => err.name === 'BusUnavailableError' && /refused|Not authorized|0x87/i.test(err.message));
    assert.equal(bus.state, 'down');
  } finally {
    refusing.stop();
  }
});
