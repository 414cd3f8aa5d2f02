/**
 * Resume with the SDK against the real broker process (issue 10, PROTOCOL.md §4.6): the link of
 * a client with exact and wildcard subscriptions is cut (its socket terminated, new attempts
 * refused as if the network were down) while another client publishes; once the network is
 * back, each subscription gets exactly the messages it missed, in order, flagged replayed, then
 * live ones, and learns `recovered: true` — also across restarts (graceful and kill -9) of a
 * broker with `--data`. A filter without history, a gap beyond the history window and a broker
 * restarted without `--data` (a new epoch) each give `recovered: false` with the fresh retained
 * snapshot instead.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Client, type MessageMeta, type ResumeOutcome, type Transport, type TransportSocket } from 'topicast';
import { freePort, startBroker, waitFor } from '../helpers/broker.js';

const { transport: nodeTransport } = (await import(new URL('../../../sdk/dist/transport/node.js', import.meta.url).href)) as { transport: Transport };

const HISTORY = ['--history-filters', 'devices/#', '--sys-interval-sec', '0'];

/** The network between the client and the broker, with a switch. */
class Link {
  private readonly sockets: TransportSocket[] = [];
  private down = false;
  readonly transport: Transport = (url, protocols, on) => {
    if (this.down) {
      // The attempt fails as a connection refused would.
      setTimeout(() => {
        on.error(new Error('network down (test)'));
        on.close(1006, '');
      }, 1);
      return { send() {}, close() {}, terminate() {}, bufferedAmount: 0 };
    }
    const socket = nodeTransport(url, protocols, on);
    this.sockets.push(socket);
    return socket;
  };

  /** The link breaks: the open socket dies without a close handshake, and stays down until `restore`. */
  cut(): void {
    this.down = true;
    this.sockets.at(-1)!.terminate();
  }

  restore(): void {
    this.down = false;
  }
}

/** What one subscription received, as `topic=value`, with ` replayed` / ` retained` marks. */
function recorder(): { seen: string[]; offsets: number[]; handler: (v: unknown, m: MessageMeta) => void } {
  const seen: string[] = [];
  const offsets: number[] = [];
  return {
    seen,
    offsets,
    handler: (v, m) => {
      seen.push(`${m.topic}=${String(v)}${m.replayed ? ' replayed' : ''}${m.retained ? ' retained' : ''}`);
      if (m.offset !== undefined) offsets.push(m.offset);
    },
  };
}

const increasing = (xs: number[]): boolean => xs.every((x, i) => i === 0 || x > xs[i - 1]!);

async function withClients(fn: (track: (c: Client) => Client) => Promise<void>): Promise<void> {
  const clients: Client[] = [];
  try {
    await fn((c) => {
      clients.push(c);
      return c;
    });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

test('a cut link: exact and wildcard subscriptions get exactly the missed messages in order, recovered:true, then live; a filter without history is not recovered', async () => {
  const broker = await startBroker({ args: HISTORY, mqttOff: true });
  await withClients(async (track) => {
    const link = new Link();
    const client = track(await connect(broker.url, { transport: link.transport, codec: 'json', reconnect: { minDelayMs: 20, maxDelayMs: 50 } }));
    const publisher = track(await connect(broker.url, { codec: 'json' }));
    const exact = recorder();
    const wild = recorder();
    const plain = recorder();
    const subExact = await client.subscribe('devices/a/temp', exact.handler);
    const subWild = await client.subscribe('devices/+/temp', wild.handler);
    const subPlain = await client.subscribe('plain/#', plain.handler);
    assert.equal(typeof subWild.position?.epoch, 'string', 'a broker with history gives a position');
    const outcomes: Record<string, ResumeOutcome[]> = { exact: [], wild: [], plain: [] };
    subExact.on('resumed', (o) => outcomes.exact!.push(o));
    subWild.on('resumed', (o) => outcomes.wild!.push(o));
    subPlain.on('resumed', (o) => outcomes.plain!.push(o));

    await publisher.publish('devices/a/temp', 'a1', { ack: true });
    await publisher.publish('plain/x', 'p1', { ack: true });
    await waitFor(() => exact.seen.length === 1 && wild.seen.length === 1 && plain.seen.length === 1, 'live before the cut');
    const before = subWild.position!;

    link.cut();
    await waitFor(() => client.state === 'reconnecting', 'the client noticed the cut');
    for (const [topic, value] of [['devices/a/temp', 'a2'], ['devices/a/hum', 'h1'], ['devices/b/temp', 'b2'], ['plain/x', 'p2'], ['devices/a/temp', 'a3']] as const) {
      await publisher.publish(topic, value, { ack: true });
    }
    link.restore();
    await waitFor(() => client.state === 'open' && outcomes.exact!.length + outcomes.wild!.length + outcomes.plain!.length === 3, 'resubscribed', 10_000);
    await waitFor(() => wild.seen.length === 4 && exact.seen.length === 3, 'the replays');
    await publisher.publish('devices/a/temp', 'a4', { ack: true });
    await publisher.publish('plain/x', 'p3', { ack: true });
    await waitFor(() => wild.seen.length === 5 && exact.seen.length === 4 && plain.seen.length === 2, 'live after the resume');

    assert.deepEqual(exact.seen, ['devices/a/temp=a1', 'devices/a/temp=a2 replayed', 'devices/a/temp=a3 replayed', 'devices/a/temp=a4']);
    assert.deepEqual(wild.seen, ['devices/a/temp=a1', 'devices/a/temp=a2 replayed', 'devices/b/temp=b2 replayed', 'devices/a/temp=a3 replayed', 'devices/a/temp=a4']);
    assert.ok(increasing(exact.offsets) && increasing(wild.offsets), `offsets in order: ${exact.offsets} / ${wild.offsets}`);
    assert.deepEqual(outcomes.exact, [{ recovered: true, replayed: 2 }]);
    assert.deepEqual(outcomes.wild, [{ recovered: true, replayed: 3 }]);
    assert.equal(subExact.recovered, true);
    // plain/# has no history: p2 is lost to it, and it says so.
    assert.deepEqual(plain.seen, ['plain/x=p1', 'plain/x=p3']);
    assert.deepEqual(outcomes.plain, [{ recovered: false, replayed: 0 }]);
    assert.equal(subPlain.position?.epoch, before.epoch, 'the broker has history: a position even for a filter without it');
    // Both history subscriptions end at a4's offset, in the same epoch.
    assert.deepEqual(subExact.position, { epoch: before.epoch, offset: exact.offsets.at(-1) });
    assert.deepEqual(subWild.position, subExact.position);
    // Nothing more arrives (no late duplicate).
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(wild.seen.length, 5);
    assert.equal(exact.seen.length, 4);
  });
});

test('a gap beyond the history window: recovered:false, the fresh retained snapshot, a new position', async () => {
  const broker = await startBroker({ args: [...HISTORY, '--history-max-messages', '2'], mqttOff: true });
  await withClients(async (track) => {
    const link = new Link();
    const client = track(await connect(broker.url, { transport: link.transport, codec: 'json', reconnect: { minDelayMs: 20, maxDelayMs: 50 } }));
    const publisher = track(await connect(broker.url, { codec: 'json' }));
    await publisher.publish('devices/a/temp', 'r0', { retain: true, ack: true });
    const rec = recorder();
    const sub = await client.subscribe('devices/+/temp', rec.handler);
    await sub.snapshot;
    const outcomes: ResumeOutcome[] = [];
    sub.on('resumed', (o) => outcomes.push(o));
    link.cut();
    await waitFor(() => client.state === 'reconnecting', 'the client noticed the cut');
    // Five messages on one topic; it keeps two.
    for (let i = 1; i <= 5; i++) await publisher.publish('devices/a/temp', `a${i}`, { retain: true, ack: true });
    link.restore();
    await waitFor(() => outcomes.length === 1 && sub.state === 'live', 'resubscribed', 10_000);
    assert.deepEqual(outcomes, [{ recovered: false, replayed: 0 }]);
    assert.equal(sub.recovered, false);
    assert.deepEqual(rec.seen, ['devices/a/temp=r0 retained', 'devices/a/temp=a5 retained'], 'the latest value instead of the missed ones');
    await publisher.publish('devices/a/temp', 'a6', { ack: true });
    await waitFor(() => rec.seen.length === 3, 'live again');
    assert.equal(rec.seen[2], 'devices/a/temp=a6');
    assert.equal(sub.position?.offset, rec.offsets.at(-1));
  });
});

test('a broker restarted without --data starts a new epoch: recovered:false, the position moves to the new epoch', async () => {
  const port = await freePort(); // fixed, so the restarted broker has the same URL (see sdk-reconnect.test.ts for why not 0)
  let broker = await startBroker({ args: HISTORY, mqttOff: true, port });
  await withClients(async (track) => {
    const client = track(await connect(broker.url, { codec: 'json', reconnect: { minDelayMs: 20, maxDelayMs: 100 } }));
    const rec = recorder();
    const sub = await client.subscribe('devices/#', rec.handler);
    const outcomes: ResumeOutcome[] = [];
    sub.on('resumed', (o) => outcomes.push(o));
    const publisher = track(await connect(broker.url, { codec: 'json' }));
    await publisher.publish('devices/x', 1, { ack: true });
    await waitFor(() => rec.seen.length === 1, 'live');
    const old = sub.position!;
    await broker.stop();
    broker = await startBroker({ args: HISTORY, mqttOff: true, port });
    await waitFor(() => outcomes.length === 1 && sub.state === 'live', 'resubscribed after the restart', 10_000);
    assert.deepEqual(outcomes, [{ recovered: false, replayed: 0 }]);
    assert.notEqual(sub.position?.epoch, old.epoch);
    await publisher.publish('devices/x', 2, { ack: true });
    await waitFor(() => rec.seen.length === 2, 'live in the new epoch');
    assert.deepEqual(sub.position, { epoch: sub.position!.epoch, offset: rec.offsets.at(-1) });
  });
  await broker.stop();
});

test('a broker with --data restarted (gracefully, then with kill -9) while the client is away: same epoch, recovered:true, exactly the missed messages', async () => {
  const port = await freePort();
  const data = mkdtempSync(join(tmpdir(), 'topicast-sdk-resume-'));
  after(() => rmSync(data, { recursive: true, force: true }));
  const args = [...HISTORY, '--data', data];
  let broker = await startBroker({ args, mqttOff: true, port });
  await withClients(async (track) => {
    const link = new Link();
    const client = track(await connect(broker.url, { transport: link.transport, codec: 'json', reconnect: { minDelayMs: 20, maxDelayMs: 50 } }));
    const publisher = track(await connect(broker.url, { codec: 'json', reconnect: { minDelayMs: 20, maxDelayMs: 100 } }));
    const rec = recorder();
    const sub = await client.subscribe(['devices/+/temp', 'devices/+/status'], rec.handler);
    const outcomes: ResumeOutcome[] = [];
    sub.on('resumed', (o) => outcomes.push(o));
    await publisher.publish('devices/a/temp', 't1', { ack: true });
    await waitFor(() => rec.seen.length === 1, 'live before');
    const epoch = sub.position!.epoch;

    link.cut();
    await waitFor(() => client.state === 'reconnecting', 'the client noticed the cut');
    await publisher.publish('devices/a/temp', 't2', { ack: true });
    for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
      if (signal === 'SIGTERM') await broker.stop();
      else {
        broker.kill('SIGKILL');
        await broker.exited;
      }
      broker = await startBroker({ args, mqttOff: true, port });
      await waitFor(() => publisher.state === 'open', `the publisher is back after ${signal}`, 10_000);
      await publisher.publish('devices/b/status', `up after ${signal}`, { ack: true });
      await publisher.publish('devices/a/temp', `t after ${signal}`, { ack: true });
    }
    link.restore();
    await waitFor(() => outcomes.length === 1 && sub.state === 'live', 'resubscribed', 10_000);
    assert.deepEqual(outcomes, [{ recovered: true, replayed: 5 }]);
    await publisher.publish('devices/a/temp', 'live', { ack: true });
    await waitFor(() => rec.seen.length === 7, 'the replay and a live message');
    assert.deepEqual(rec.seen, [
      'devices/a/temp=t1',
      'devices/a/temp=t2 replayed',
      'devices/b/status=up after SIGTERM replayed',
      'devices/a/temp=t after SIGTERM replayed',
      'devices/b/status=up after SIGKILL replayed',
      'devices/a/temp=t after SIGKILL replayed',
      'devices/a/temp=live',
    ]);
    assert.ok(increasing(rec.offsets), `offsets in order: ${rec.offsets}`);
    assert.equal(sub.position?.epoch, epoch, 'history survived both restarts: the same epoch');
  });
  await broker.stop();
});
