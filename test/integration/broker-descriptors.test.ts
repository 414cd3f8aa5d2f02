/**
 * File descriptors and half-open connections (transport/admission.ts, docs/SECURITY.md) against
 * the real broker process: started under a low `ulimit -n` it refuses new connections once its
 * descriptors run short, stays up, serves the clients it has and admits again once some leave;
 * a flood of sockets that never complete an upgrade or CONNECT is capped per IP and globally.
 * Flood sockets come from other loopback addresses (127.0.0.2, .3) so the checks from 127.0.0.1
 * stay outside the caps.
 */
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import { SUBPROTOCOL } from 'topicast/protocol';
import { startBroker, waitFor } from '../helpers/broker.js';
import { bytes, isDelivery, NativeClient, scrapeMetrics } from '../helpers/native-client.js';

/** Opens a native connection; the HTTP status of a refused upgrade, or the client. */
async function tryNative(url: string, localAddress?: string): Promise<NativeClient | number | Error> {
  try {
    return await NativeClient.connect(url, { protocols: [SUBPROTOCOL], awaitWelcome: false, ...(localAddress === undefined ? {} : { localAddress }) });
  } catch (err) {
    const e = err as { status?: number };
    return e.status ?? (err as Error);
  }
}

test('out of file descriptors: the broker stays up, serves its clients, refuses new ones with 503 and admits them once some leave', async () => {
  const broker = await startBroker({ maxOpenFiles: 256, args: ['--sys-interval-sec', '1'] });
  const sub = await NativeClient.connect(broker.url);
  await sub.subscribe(['fd/#', '$SYS/broker/uptime']);
  const pub = await NativeClient.connect(broker.url);
  const held: NativeClient[] = [];
  const refusals: unknown[] = [];
  // 256 descriptors cannot hold 300 sockets: the broker must refuse before it runs out.
  for (let i = 0; i < 300 && refusals.length < 5; i++) {
    const r = await tryNative(broker.url);
    if (r instanceof NativeClient) held.push(r);
    else refusals.push(r);
  }
  assert.deepEqual(refusals, [503, 503, 503, 503, 503], 'new connections are answered 503 once descriptors run short');
  assert.ok(held.length > 100, `only ${held.length} connections held before refusing`);
  const metrics = await scrapeMetrics(broker.httpUrl); // a short HTTP request still gets through
  assert.equal(metrics.get('topicast_connections_admission_refused_total{reason="descriptors"}'), 5);
  // The $SYS tick (process.memoryUsage.rss() among its figures) keeps running, and the clients held are served.
  const uptimeSeen = sub.deliveries('$SYS/broker/uptime').length;
  await pub.publish('fd/after', bytes('still served'), { ack: true });
  await sub.expect(isDelivery('fd/after', 'still served'));
  await waitFor(() => sub.deliveries('$SYS/broker/uptime').length > uptimeSeen, 'a $SYS tick after the refusals');
  assert.equal(broker.proc.exitCode, null, 'the broker is still running');
  assert.ok(broker.logs.some((l) => l.includes('connections refused or accepts failing')), 'the refusals are logged');
  // Descriptors freed: new connections are admitted again.
  await Promise.all(held.splice(0, 40).map((c) => c.close()));
  let again: unknown;
  await waitFor(async () => (again = await tryNative(broker.url)) instanceof NativeClient, 'a connection admitted after others left');
  assert.ok(again instanceof NativeClient);
  for (const c of held) c.terminate();
});

/** Opens `n` TCP sockets from `localAddress` that never send a byte; resolves once all connected. */
async function halfOpen(port: number, localAddress: string, n: number): Promise<{ destroyAll(): void; closedByBroker: () => number }> {
  const sockets: Socket[] = [];
  let closed = 0;
  let destroyedByUs = false;
  await Promise.all(Array.from({ length: n }, () => new Promise<void>((resolve, reject) => {
    const s = netConnect({ port, host: '127.0.0.1', localAddress });
    sockets.push(s);
    s.once('connect', () => resolve());
    s.once('error', (err) => (s.connecting ? reject(err) : undefined));
    s.once('close', () => {
      if (!destroyedByUs) closed++;
    });
  })));
  return {
    destroyAll() {
      destroyedByUs = true;
      for (const s of sockets) s.destroy();
    },
    closedByBroker: () => closed,
  };
}

test('half-open connections are capped per IP, on the HTTP port and on MQTT TCP together', async () => {
  const broker = await startBroker({ args: ['--limits-exempt-ips', '', '--max-pending-connections-per-ip', '20'] });
  // 127.0.0.2: 15 HTTP requests that never send a byte and 10 MQTT sockets that never CONNECT; 20 are admitted.
  const http = await halfOpen(broker.port, '127.0.0.2', 15);
  const mqtt = await halfOpen(broker.mqttPort, '127.0.0.2', 10);
  await waitFor(() => http.closedByBroker() + mqtt.closedByBroker() === 5, 'the 5 sockets beyond the cap closed by the broker');
  const metrics = await scrapeMetrics(broker.httpUrl);
  assert.equal(metrics.get('topicast_connections_admission_refused_total{reason="pending-per-ip"}'), 5);
  // The address is at its cap: even a real WebSocket from it is refused; from another address it opens.
  assert.ok(!((await tryNative(broker.url, '127.0.0.2')) instanceof NativeClient), 'a further connection from 127.0.0.2 is refused');
  const other = await tryNative(broker.url, '127.0.0.3');
  assert.ok(other instanceof NativeClient, `127.0.0.3 connects: ${String(other)}`);
  // The flood goes: 127.0.0.2 connects again.
  http.destroyAll();
  mqtt.destroyAll();
  let again: unknown;
  await waitFor(async () => (again = await tryNative(broker.url, '127.0.0.2')) instanceof NativeClient, '127.0.0.2 admitted after its sockets closed');
  assert.ok(again instanceof NativeClient);
  assert.equal(broker.proc.exitCode, null);
});

test('half-open connections are capped over all addresses (maxPendingConnections)', async () => {
  const broker = await startBroker({ args: ['--max-pending-connections', '30'] });
  const flood = await halfOpen(broker.port, '127.0.0.2', 40);
  await waitFor(() => flood.closedByBroker() === 10, 'the 10 sockets beyond the global cap closed by the broker');
  flood.destroyAll();
  let metrics = new Map<string, number>();
  await waitFor(async () => {
    metrics = await scrapeMetrics(broker.httpUrl).catch(() => new Map<string, number>());
    return metrics.has('topicast_connections_pending');
  }, 'a scrape once the flood is gone');
  assert.equal(metrics.get('topicast_connections_admission_refused_total{reason="pending"}'), 10);
  assert.ok(await tryNative(broker.url) instanceof NativeClient);
});

test('an MQTT socket that never sends CONNECT is closed after connectTimeoutMs', async () => {
  const broker = await startBroker({ args: ['--connect-timeout-ms', '300'] });
  const socket = netConnect({ port: broker.mqttPort, host: '127.0.0.1' });
  socket.on('error', () => {});
  await new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const metrics = await scrapeMetrics(broker.httpUrl);
  assert.equal(metrics.get('topicast_connections_pending'), 1, 'only the scrape itself is pending');
});
