/**
 * The SDK's resilience against real broker processes: reconnect after the broker
 * is killed and restarted on the same port, failover between two brokers, and
 * dead-link detection when the broker process is frozen (SIGSTOP).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { connect, type Client, type ClientState } from 'topicast';
import { startBroker, waitFor } from '../helpers/broker.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * A free port to start the first broker on. Not port 0: uSockets sets SO_REUSEADDR
 * only when listening on an explicit port, and the TIME_WAIT sockets a killed broker
 * leaves behind inherit that flag — after a broker on port 0 dies, nothing can listen
 * on its port for 60 s. With an explicit port (as in production), a restart binds at once.
 */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function withClients<T>(fn: (track: (c: Client) => Client) => Promise<T>): Promise<T> {
  const clients: Client[] = [];
  try {
    return await fn((c) => {
      clients.push(c);
      return c;
    });
  } finally {
    await Promise.all(clients.map((c) => c.close()));
  }
}

test('broker killed and restarted on the same port: state events in order, subscriptions restored, queued publishes delivered', async () => {
  await withClients(async (track) => {
    const port = await freePort();
    let broker = await startBroker({ port });
    const client = track(await connect(broker.url, { reconnect: { minDelayMs: 50, maxDelayMs: 200 }, heartbeatMs: 1000 }));
    const states: ClientState[] = [];
    client.on('state', (s) => states.push(s));
    const got: [string, unknown][] = [];
    const sub = await client.subscribe('rc/#', (v, m) => got.push([m.topic, v]));
    const subStates: string[] = [];
    sub.on('state', (s) => subStates.push(s));

    broker.kill('SIGKILL');
    await broker.exited;
    await waitFor(() => client.state === 'reconnecting', 'reconnecting state');
    // Publishes while the broker is down wait in the offline queue.
    const queued = [client.publish('rc/queued/1', 1), client.publish('rc/queued/2', 2, { ack: true }), client.publish('rc/queued/3', 3)];
    for (const p of queued) p.catch(() => {}); // awaited below; only observed here in case the restart fails
    await sleep(300); // a few failed attempts against the closed port

    broker = await startBroker({ port });
    await Promise.all(queued);
    await waitFor(() => client.state === 'open', 'reopened', 5000);
    await waitFor(() => got.length === 3, 'queued publishes delivered to the restored subscription', 5000);
    assert.deepEqual(got, [['rc/queued/1', 1], ['rc/queued/2', 2], ['rc/queued/3', 3]]);
    assert.deepEqual(states, ['reconnecting', 'open']);
    assert.deepEqual(subStates, ['subscribing', 'snapshot', 'live']);

    // The restored subscription receives what others publish.
    const other = track(await connect(broker.url));
    await other.publish('rc/live', 'after restart', { ack: true });
    await waitFor(() => got.length === 4, 'live delivery after restart');
    assert.deepEqual(got[3], ['rc/live', 'after restart']);
    await broker.stop();
  });
});

test('failover: with two URLs the client moves to the second broker when the first dies', async () => {
  await withClients(async (track) => {
    const a = await startBroker();
    const b = await startBroker();
    const client = track(await connect([a.url, b.url], { reconnect: { minDelayMs: 50, maxDelayMs: 200 } }));
    assert.equal(client.url, a.url);
    const got: unknown[] = [];
    await client.subscribe('fo/t', (v) => got.push(v));
    a.kill('SIGKILL');
    await waitFor(() => client.state === 'open' && client.url === b.url, 'failed over to b', 5000);
    const onB = track(await connect(b.url));
    await waitFor(async () => {
      await onB.publish('fo/t', 'from b', { ack: true });
      return got.length > 0;
    }, 'delivery through b');
    assert.equal(got[0], 'from b');
    await b.stop();
  });
});

test('a frozen broker (SIGSTOP) is detected within 2 heartbeats, and the client recovers after SIGCONT', async () => {
  const broker = await startBroker();
  try {
    await withClients(async (track) => {
      const heartbeatMs = 400;
      const client = track(await connect(broker.url, { heartbeatMs, connectTimeoutMs: 500, reconnect: { minDelayMs: 50, maxDelayMs: 200 } }));
      const got: unknown[] = [];
      await client.subscribe('fz/t', (v) => got.push(v));
      await sleep(heartbeatMs * 1.5); // let the heartbeat run normally first
      assert.equal(client.state, 'open');
      const frozenAt = Date.now();
      broker.kill('SIGSTOP');
      await waitFor(() => client.state === 'reconnecting', 'dead link detected', 5000);
      const detectedMs = Date.now() - frozenAt;
      // Bound: 2 intervals after the last frame received (which came before the freeze), plus
      // timer slack on a loaded 2-core CI machine; a 3rd interval would already exceed it.
      assert.ok(detectedMs <= 2 * heartbeatMs + 350, `detected after ${detectedMs} ms`);
      broker.kill('SIGCONT');
      await waitFor(() => client.state === 'open', 'reconnected after SIGCONT', 10_000);
      const other = track(await connect(broker.url));
      await waitFor(async () => {
        await other.publish('fz/t', 'thawed', { ack: true });
        return got.length > 0;
      }, 'delivery after thaw');
    });
  } finally {
    broker.kill('SIGCONT');
    await broker.stop();
  }
});
