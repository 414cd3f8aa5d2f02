/**
 * A QoS 0 flood that the readers keep up with reaches MQTT subscribers whole (issue 20), over
 * TCP and over WebSocket, as it does native ones: every message counted at every subscriber,
 * and the slow-consumer policy never fired (`topicast_conflated_total` and
 * `topicast_dropped_total` stay 0).
 *
 * The publisher sends bursts of BURST messages, each burst in one write and followed by one
 * message on a marker topic, and sends the next only once every subscriber has the marker: at
 * most one burst is in flight, and the readers keep up by construction. (The marker is on its
 * own topic so that the conflate policy, if it fired, could not supersede it: the test then
 * fails on the count instead of waiting forever.) A burst of 6-byte PUBLISH packets is far more packets
 * than one write system call takes as separate buffers (IOV_MAX, 1,024): before the TCP
 * transport wrote each flush as one buffer, most of every burst waited in Node's write queue,
 * past the outbox's bound (lowered here to 16 KiB), and was conflated to the latest value.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import WebSocket from 'ws';
import { startBroker } from '../helpers/broker.js';
import { scrapeMetrics } from '../helpers/native-client.js';

const BURST = 20_000;
const BURSTS = 10;
const SUBSCRIBERS = 3;
const TOPIC = 'f';
const MARKER = 'm';

/** MQTT 3.1.1 packets, by hand: the test counts bytes on the wire, nothing in between. */
function packet(first: number, body: number[]): Buffer {
  const len: number[] = [];
  let n = body.length;
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    len.push(b);
  } while (n > 0);
  return Buffer.from([first, ...len, ...body]);
}
const str = (s: string): number[] => [s.length >> 8, s.length & 0xff, ...Buffer.from(s)];
const connectPacket = (id: string): Buffer => packet(0x10, [...str('MQTT'), 4, 0x02, 0, 0, ...str(id)]);
const subscribePacket = (...filters: string[]): Buffer => packet(0x82, [0, 1, ...filters.flatMap((f) => [...str(f), 0])]);
/** One burst: BURST QoS 0 PUBLISH packets of one payload byte, in one buffer. */
const burst = Buffer.concat([...Array.from({ length: BURST }, () => packet(0x30, [...str(TOPIC), 0x78])), packet(0x30, [...str(MARKER), 0x78])]);

/** A byte-stream MQTT reader that counts PUBLISH packets (flood and marker apart) and resolves CONNACK / SUBACK waiters in order. */
class Counter {
  publishes = 0;
  markers = 0;
  private rest = Buffer.alloc(0);
  private readonly acks: (() => void)[] = [];
  private readonly progress: (() => void)[] = [];

  read(chunk: Buffer): void {
    const buf = this.rest.length > 0 ? Buffer.concat([this.rest, chunk]) : chunk;
    let i = 0;
    for (;;) {
      let len = 0;
      let mul = 1;
      let j = i + 1;
      let complete = false;
      while (j < buf.length && j < i + 5) {
        const b = buf[j++]!;
        len += (b & 0x7f) * mul;
        mul *= 128;
        if ((b & 0x80) === 0) {
          complete = true;
          break;
        }
      }
      if (!complete || buf.length - j < len) break;
      const type = buf[i]! >> 4;
      if (type === 3) {
        // Topic of one byte: a marker or a flood message.
        if (buf[j + 2] === MARKER.charCodeAt(0)) this.markers++;
        else this.publishes++;
      }
      else if (type === 2 || type === 9) this.acks.shift()?.();
      i = j + len;
    }
    this.rest = Buffer.from(buf.subarray(i));
    for (const w of this.progress.splice(0)) w();
  }

  ack(): Promise<void> {
    return new Promise((resolve) => this.acks.push(resolve));
  }

  /** Resolves once `n` markers were counted (rejects on close, so a broken connection cannot hang the test). */
  async markersAtLeast(n: number, closed: Promise<never>): Promise<void> {
    while (this.markers < n) await Promise.race([new Promise<void>((r) => this.progress.push(r)), closed]);
  }
}

interface Client {
  counter: Counter;
  send(b: Buffer): void;
  closed: Promise<never>;
  close(): void;
}

async function tcpClient(port: number, id: string): Promise<Client> {
  const socket: Socket = connect({ host: '127.0.0.1', port, noDelay: true });
  const counter = new Counter();
  socket.on('data', (c: Buffer) => counter.read(c));
  const closed = new Promise<never>((_, reject) => socket.once('close', () => reject(new Error(`${id}: connection closed`))));
  closed.catch(() => undefined);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  const client = { counter, send: (b: Buffer) => void socket.write(b), closed, close: () => socket.destroy() };
  const acked = counter.ack();
  client.send(connectPacket(id));
  await acked;
  return client;
}

async function wsClient(httpPort: number, id: string): Promise<Client> {
  const ws = new WebSocket(`ws://127.0.0.1:${httpPort}/mqtt`, 'mqtt');
  const counter = new Counter();
  ws.on('message', (data: Buffer) => counter.read(data));
  const closed = new Promise<never>((_, reject) => ws.once('close', () => reject(new Error(`${id}: connection closed`))));
  closed.catch(() => undefined);
  await new Promise<void>((resolve, reject) => ws.once('open', resolve).once('error', reject));
  const client = { counter, send: (b: Buffer) => ws.send(b), closed, close: () => ws.terminate() };
  const acked = client.counter.ack();
  client.send(connectPacket(id));
  await acked;
  return client;
}

for (const transport of ['tcp', 'ws'] as const) {
  test(`MQTT ${transport.toUpperCase()}: a QoS 0 flood the readers keep up with is delivered whole, nothing conflated or dropped`, async () => {
    const broker = await startBroker({
      args: ['--max-buffered-bytes', String(16 * 1024), '--max-publishes-per-sec', '0', '--sys-interval-sec', '0'],
    });
    const open = (id: string): Promise<Client> => (transport === 'tcp' ? tcpClient(broker.mqttPort, id) : wsClient(broker.port, id));
    const subscribers: Client[] = [];
    const publisher = await open('flood-pub');
    try {
      for (let i = 0; i < SUBSCRIBERS; i++) {
        const sub = await open(`flood-sub-${i}`);
        subscribers.push(sub);
        const acked = sub.counter.ack();
        sub.send(subscribePacket(TOPIC, MARKER));
        await acked;
      }
      let sent = 0;
      for (let b = 0; b < BURSTS; b++) {
        publisher.send(burst);
        sent += BURST;
        await Promise.all(subscribers.map((s) => s.counter.markersAtLeast(b + 1, s.closed)));
        for (const [i, s] of subscribers.entries()) assert.equal(s.counter.publishes, sent, `subscriber ${i} received every message of burst ${b}`);
      }
      const metrics = await scrapeMetrics(broker.httpUrl);
      assert.equal(metrics.get('topicast_conflated_total'), 0);
      assert.equal(metrics.get('topicast_dropped_total'), 0);
      assert.equal(metrics.get('topicast_slow_consumer_disconnects_total'), 0);
    } finally {
      for (const c of [publisher, ...subscribers]) c.close();
      await broker.stop();
    }
  });
}
