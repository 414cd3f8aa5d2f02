/**
 * Drain with the SDK against real broker processes (issue 8, PROTOCOL.md §4.7): two brokers, a
 * client given both URLs; broker A gets SIGTERM with a drain window. The client hears DRAIN, moves
 * to B within the window with no 'error', its subscription works there and the publish it made
 * while moving arrives; it left A cleanly, so A never published its will (a raw observer that
 * stays on A until the end of the window would have seen it). Both keep history, each its own
 * stream: the subscription resumes on B and is told `recovered: false` (another epoch).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Client, type DrainNotice, type ResumeOutcome, type TopicastError } from 'topicast';
import { Op } from 'topicast/protocol';
import { startBroker, waitFor } from '../helpers/broker.js';
import { NativeClient } from '../helpers/native-client.js';

const DRAIN_MS = 1500;

test('SIGTERM with a drain window: the client moves to the other URL with its subscription and queue, no error, no will', async () => {
  const env = { TOPICAST_DRAIN_MS: String(DRAIN_MS), TOPICAST_SHUTDOWN_TIMEOUT_MS: '2000' };
  const args = ['--history-filters', 'drain/#', '--sys-interval-sec', '0'];
  const a = await startBroker({ env, args, mqttOff: true });
  const b = await startBroker({ env, args, mqttOff: true });
  const clients: Client[] = [];
  try {
    const client = await connect([a.url, b.url], {
      codec: 'json',
      will: { topic: 'drain/will', value: 'offline', retain: false },
      reconnect: { minDelayMs: 5000, maxDelayMs: 5000 }, // a move within the window cannot be a backoff retry
    });
    clients.push(client);
    assert.equal(client.url, a.url);
    // A raw native client on A that does not leave when drained: it records every frame until A closes it.
    const watcher = await NativeClient.connect(a.url);
    await watcher.subscribe(['drain/#']);
    const errors: TopicastError[] = [];
    const drains: DrainNotice[] = [];
    const states: string[] = [];
    client.on('error', (e) => errors.push(e));
    client.on('drain', (d) => drains.push(d));
    client.on('state', (s) => {
      states.push(s);
      // Published while moving: waits in the queue, goes out on B.
      if (s === 'reconnecting') void client.publish('drain/moving', 'queued');
    });
    const got: string[] = [];
    const sub = await client.subscribe('drain/#', (v, m) => got.push(`${m.topic}=${String(v)}`));
    const subStates: string[] = [];
    sub.on('state', (s) => subStates.push(s));
    const outcomes: ResumeOutcome[] = [];
    sub.on('resumed', (o) => outcomes.push(o));
    const epochA = sub.position?.epoch;
    assert.equal(typeof epochA, 'string');

    const t0 = Date.now();
    a.kill('SIGTERM');
    await waitFor(() => drains.length === 1, 'DRAIN received', 3000);
    assert.equal(drains[0]!.url, a.url);
    assert.ok(drains[0]!.reconnectAfterMs >= 0 && drains[0]!.reconnectAfterMs < DRAIN_MS, `delay ${drains[0]!.reconnectAfterMs} within the window`);
    await waitFor(() => client.state === 'open' && client.url === b.url, 'on B', DRAIN_MS + 2000);
    const movedMs = Date.now() - t0;
    assert.ok(movedMs < DRAIN_MS + 1000, `moved after ${movedMs} ms, within the window (plus slack)`);
    await waitFor(() => sub.state === 'live', 'subscription live on B');

    const other = await connect(b.url, { codec: 'json' });
    clients.push(other);
    await other.publish('drain/after', 'on b', { ack: true });
    await waitFor(() => got.includes('drain/after=on b') && got.includes('drain/moving=queued'), 'the queued publish and a live one, on B');
    assert.deepEqual(states, ['reconnecting', 'open']);
    assert.deepEqual(subStates, ['subscribing', 'snapshot', 'live']);
    assert.deepEqual(outcomes, [{ recovered: false, replayed: 0 }], "B's history is another stream: the app is told to reload");
    assert.notEqual(sub.position?.epoch, epochA);
    assert.deepEqual(errors, [], 'a drain is no error');

    // A finishes its window and exits; its last frames to the observer hold no will of our client.
    const exit = await a.exited;
    assert.equal(exit.code, 0);
    await watcher.closed;
    const wills = watcher.frames.filter((f) => f.op === Op.delivery && f.topic === 'drain/will');
    assert.deepEqual(wills, [], 'the client left cleanly: no will');
    assert.ok(watcher.frames.some((f) => f.op === Op.drain), 'the observer was drained too');
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await Promise.all([a.stop(), b.stop()]);
  }
});
