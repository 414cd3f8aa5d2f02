/**
 * Time-driven client behaviour on a fake clock (node:test mock timers) and a
 * fake transport: heartbeat and dead-link detection, connect timeout, backoff.
 */
import { afterEach, beforeEach, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClientErrorCode, connect, type ClientState, type TopicastError } from 'topicast';
import { Op } from 'topicast/protocol';
import { FakeNet, flush } from './fake-transport.js';

beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'setInterval'] }));
afterEach(() => {
  mock.timers.reset();
  mock.restoreAll();
});

async function tick(ms: number): Promise<void> {
  mock.timers.tick(ms);
  await flush();
}

test('heartbeat: a PING every interval; a link silent for a whole interval after a PING is dropped', async () => {
  const net = new FakeNet();
  const p = connect('ws://fake/ws', { transport: net.transport, heartbeatMs: 1000, reconnect: { minDelayMs: 10_000, maxDelayMs: 10_000 } });
  await flush();
  const sock = net.last;
  sock.accept();
  const client = await p;
  const states: ClientState[] = [];
  const errors: TopicastError[] = [];
  client.on('state', (s) => states.push(s));
  client.on('error', (e) => errors.push(e));

  await tick(999);
  assert.equal(sock.framesOf(Op.ping).length, 0);
  await tick(1);
  assert.equal(sock.framesOf(Op.ping).length, 1);
  // Answered pings keep the link: 10 intervals with pongs.
  for (let i = 0; i < 10; i++) {
    const ping = sock.framesOf(Op.ping).at(-1)!;
    sock.push({ op: Op.pong, id: ping.id });
    await tick(1000);
  }
  assert.equal(client.state, 'open');
  assert.equal(sock.framesOf(Op.ping).length, 11);
  // Any frame proves liveness, not only PONG.
  sock.push({ op: Op.delivery, topic: 'x', payload: new Uint8Array([0xc0]), flags: 0 });
  await tick(1000);
  assert.equal(client.state, 'open');
  // Now the broker goes silent: last frame at T; dropped no later than T + 2 intervals.
  await tick(999);
  assert.equal(client.state, 'open');
  await tick(1);
  assert.equal(client.state, 'reconnecting');
  assert.equal(sock.terminated, true);
  assert.deepEqual(states, ['reconnecting']);
  assert.equal(errors[0]?.code, ClientErrorCode.connectionLost);
  assert.match(errors[0]!.message, /heartbeat/);
  await client.close();
});

test("heartbeat pings at least twice per the broker's idle timeout", async () => {
  const net = new FakeNet();
  const p = connect('ws://fake/ws', { transport: net.transport, heartbeatMs: 60_000 });
  await flush();
  net.last.accept({ idleTimeoutSec: 2 });
  const client = await p;
  await tick(1000);
  assert.equal(net.last.framesOf(Op.ping).length, 1);
  await client.close();
});

test('connect timeout: no WELCOME within connectTimeoutMs is a failed attempt', async () => {
  const net = new FakeNet();
  const client = await connect(['ws://a/ws', 'ws://b/ws'], { transport: net.transport, wait: false, connectTimeoutMs: 500 });
  await flush();
  await tick(499);
  assert.equal(net.sockets.length, 1);
  await tick(1);
  assert.equal(net.sockets[0]!.terminated, true);
  await tick(0);
  assert.equal(net.sockets.length, 2); // the next URL is tried at once
  assert.equal(net.last.url, 'ws://b/ws');
  await client.close();
});

test('backoff: exponential with full jitter between rounds, bounded by maxDelayMs', async () => {
  mock.method(Math, 'random', () => 0.5);
  const net = new FakeNet();
  const p = connect('ws://fake/ws', { transport: net.transport, reconnect: { minDelayMs: 100, maxDelayMs: 1000 } });
  await flush();
  net.last.accept();
  const client = await p;
  net.last.drop(1006);
  // Expected delays with random = 0.5: 50, 100, 200, 400, 500, 500 (ceiling min*2^n capped at 1000).
  const expected = [50, 100, 200, 400, 500, 500];
  for (const delay of expected) {
    const before = net.sockets.length;
    await tick(delay - 1);
    assert.equal(net.sockets.length, before, `not before ${delay} ms`);
    await tick(1);
    assert.equal(net.sockets.length, before + 1, `at ${delay} ms`);
    net.last.fail('ECONNREFUSED');
    await flush();
  }
  assert.equal(client.state, 'reconnecting');
  await tick(500);
  net.last.accept();
  assert.equal(client.state, 'open');
  // A success resets the backoff: the next loss starts at the first delay again.
  net.last.drop(1006);
  const before = net.sockets.length;
  await tick(50);
  assert.equal(net.sockets.length, before + 1);
  await client.close();
});

test('heartbeatMs 0: no pings unless the broker announces an idle timeout', async () => {
  for (const idleTimeoutSec of [0, 8]) {
    const net = new FakeNet();
    const p = connect('ws://fake/ws', { transport: net.transport, heartbeatMs: 0 });
    await flush();
    net.last.accept({ idleTimeoutSec });
    net.last.auto = true; // answers pings
    const client = await p;
    for (let i = 0; i < 15; i++) await tick(4000);
    assert.equal(client.state, 'open');
    assert.equal(net.last.framesOf(Op.ping).length, idleTimeoutSec === 0 ? 0 : 60_000 / 4000, `idle ${idleTimeoutSec}`);
    await client.close();
  }
});
