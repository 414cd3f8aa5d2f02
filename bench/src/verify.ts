/**
 * One-time byte-for-byte check of each minimal client against an independent one:
 * on a fresh target, a minimal subscriber and a reference subscriber (mqtt.js,
 * socket.io-client, or `ws` with the SDK's frame decoder) both subscribe; the
 * minimal publisher and then the reference publisher publish; both subscribers
 * must receive exactly the published (topic, payload) sequence.
 */
import mqtt from 'mqtt';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { decodeServerFrame, encodeFrame, Op, SUBPROTOCOL } from 'topicast/protocol';
import { openLink, type Endpoint } from './wire/index.js';
import { waitFor } from './proc.js';
import type { Target } from './peers.js';

interface Got {
  topic: string;
  payload: Buffer;
}

interface Reference {
  got: Got[];
  publish(topic: string, payload: Buffer): void;
  close(): void;
}

function url(ep: Endpoint, scheme: string): string {
  return `${scheme}://${ep.host}:${ep.port}${ep.path ?? ''}`;
}

async function reference(ep: Endpoint, topic: string): Promise<Reference> {
  const got: Got[] = [];
  if (ep.wire === 'mqtt') {
    const client = await mqtt.connectAsync(ep.transport === 'ws' ? url(ep, 'ws') : `mqtt://${ep.host}:${ep.port}`, { reconnectPeriod: 0, protocolVersion: 4 });
    client.on('message', (t, p) => got.push({ topic: t, payload: Buffer.from(p) }));
    await client.subscribeAsync(topic, { qos: 0 });
    return { got, publish: (t, p) => void client.publish(t, p, { qos: 0 }), close: () => void client.end(true) };
  }
  if (ep.wire === 'sio') {
    const socket = io(`http://${ep.host}:${ep.port}`, { transports: ['websocket'], reconnection: false });
    socket.on('m', (t: string, p: string) => got.push({ topic: t, payload: Buffer.from(p, 'latin1') }));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect_error', reject);
      socket.once('connect', () => socket.emit('sub', topic, () => resolve()));
    });
    return { got, publish: (t, p) => void socket.emit('pub', t, p.toString('latin1')), close: () => void socket.close() };
  }
  if (ep.wire === 'native' || ep.wire === 'raw') {
    const native = ep.wire === 'native';
    const ws = new WebSocket(url(ep, 'ws'), native ? SUBPROTOCOL : undefined);
    let acked = false;
    ws.on('message', (data: Buffer) => {
      if (!native) {
        if (data[0] === 0x73) acked = true;
        else got.push({ topic: data.subarray(2, 2 + data[1]!).toString(), payload: Buffer.from(data.subarray(2 + data[1]!)) });
        return;
      }
      const f = decodeServerFrame(new Uint8Array(data));
      if (f.op === Op.ack) acked = true;
      else if (f.op === Op.delivery) got.push({ topic: f.topic, payload: Buffer.from(f.payload) });
    });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    ws.send(native ? encodeFrame({ op: Op.subscribe, id: 7, filters: [topic], options: {} }) : Buffer.concat([Buffer.of(0x73), Buffer.from(topic)]));
    await waitFor('reference subscribe ack', () => acked, 5000, 10);
    const publish = (t: string, p: Buffer): void => {
      const tb = Buffer.from(t);
      ws.send(native ? encodeFrame({ op: Op.publish, id: 0, topic: t, payload: p, flags: 0 }) : Buffer.concat([Buffer.of(0x70, tb.length), tb, p]));
    };
    return { got, publish, close: () => ws.close() };
  }
  throw new Error(`no independent reference client for ${ep.wire}`);
}

/**
 * HTTP streaming reference: fetch()'s body read as text, split into events on blank lines, values
 * decoded back to bytes (`sseBytes`); publishes go through a native reference on `pubEp`.
 */
async function sseReference(ep: Endpoint, topic: string, pubEp: Endpoint): Promise<Reference> {
  const got: Got[] = [];
  const abort = new AbortController();
  const res = await fetch(`http://${ep.host}:${ep.port}/api/subscribe?filter=${encodeURIComponent(topic)}`, { signal: abort.signal });
  if (res.status !== 200 || !res.body) throw new Error(`sse reference: HTTP ${res.status}`);
  let text = '';
  let started = false;
  void (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
      text += decoder.decode(chunk, { stream: true });
      let end: number;
      while ((end = text.indexOf('\n\n')) >= 0) {
        const lines = text.slice(0, end).split('\n');
        text = text.slice(end + 2);
        if (lines.some((l) => l === 'event: snapshot-end')) started = true;
        const data = lines.find((l) => l.startsWith('data: '));
        if (data === undefined || lines.some((l) => l.startsWith('event: '))) continue;
        const m = JSON.parse(data.slice(6)) as { topic: string; value?: unknown; encoding?: string };
        got.push({ topic: m.topic, payload: sseBytes(m) });
      }
    }
  })().catch(() => undefined);
  await waitFor('sse reference snapshot end', () => started, 5000, 10);
  const publisher = await reference(pubEp, `${topic}/unused`);
  return { got, publish: publisher.publish, close: () => { abort.abort(); publisher.close(); } };
}

/** The payload bytes an SSE message stands for (PROTOCOL.md §10.3): base64, a string's UTF-8, or a JSON value's text. */
function sseBytes(m: { value?: unknown; encoding?: string }): Buffer {
  if (m.value === undefined) return Buffer.alloc(0);
  if (m.encoding === 'base64') return Buffer.from(m.value as string, 'base64');
  return Buffer.from(typeof m.value === 'string' ? m.value : JSON.stringify(m.value));
}

export interface VerifyResult {
  target: string;
  ok: boolean;
  checked: number;
  detail: string;
}

/** Payloads that exercise every byte value (binary wires) or printable ASCII (Socket.IO text). */
function payloads(wire: string): Buffer[] {
  const stamp = Buffer.from(process.hrtime.bigint().toString().padStart(20, '0') + 'x'.repeat(44));
  if (wire === 'sio') return [Buffer.from('a'.repeat(64)), stamp, Buffer.from('~ ascii 0123456789 {}[]:;,.<>?/|!@#$%^&*()_+-= '.repeat(10))];
  const all = Buffer.alloc(256);
  for (let i = 0; i < 256; i++) all[i] = i;
  return [Buffer.alloc(64, 0), stamp, Buffer.concat([all, all, Buffer.alloc(300, 0xff)])];
}

export async function verifyTarget(t: Target): Promise<VerifyResult> {
  const running = await t.start();
  const topic = 'bench/verify/t1';
  const closers: (() => void)[] = [];
  try {
    const ep = running.ep;
    const mine: Got[] = [];
    const sub = await openLink(ep);
    closers.push(() => sub.close());
    const sse = ep.wire === 'sse';
    // The SSE client reports the value's JSON text (and its encoding field): decoded back to bytes here.
    sub.onDelivery = (buf, ts, te, ps, pe) => mine.push({ topic: buf.toString('utf8', ts, te), payload: sse ? sseBytes(JSON.parse(`{"value":${buf.toString('utf8', ps, pe)}}`) as { value?: unknown }) : Buffer.from(buf.subarray(ps, pe)) });
    await sub.subscribe(topic);
    // No independent NATS client is installed: the NATS clients are checked against the bytes sent only.
    const noRef = ep.wire === 'nats';
    const pubEp = running.pubEp ?? ep;
    const ref: Reference = noRef ? { got: [], publish: () => undefined, close: () => undefined } : sse ? await sseReference(ep, topic, pubEp) : await reference(ep, topic);
    closers.push(() => ref.close());
    const pub = await openLink(pubEp);
    closers.push(() => pub.close());
    const sent = payloads(ep.wire);
    for (const p of sent) pub.publishBatch(topic, p.length, 1, (buf, at) => void p.copy(buf, at));
    // Order holds per publisher only: let the minimal publisher's messages arrive before the reference publishes.
    await waitFor('the minimal publisher\'s messages', () => mine.length >= sent.length && (noRef || ref.got.length >= sent.length), 5000, 10).catch(() => undefined);
    const fromRef = Buffer.from('published by the reference client');
    ref.publish(topic, fromRef);
    const expected = noRef ? sent : [...sent, fromRef];
    const natsTopic = ep.wire === 'nats' ? topic.replace(/\//g, '.') : topic;
    await waitFor('both subscribers to receive every message', () => mine.length >= expected.length && (noRef || ref.got.length >= expected.length), 5000, 10).catch(() => undefined);
    const problems: string[] = [];
    const lists = noRef ? ([['minimal', mine]] as const) : ([['minimal', mine], ['reference', ref.got]] as const);
    for (const [who, list] of lists) {
      if (list.length !== expected.length) problems.push(`${who} got ${list.length}/${expected.length}`);
      list.forEach((g, i) => {
        if (g.topic !== natsTopic) problems.push(`${who} #${i} topic ${g.topic}`);
        if (expected[i] && !g.payload.equals(expected[i]!)) problems.push(`${who} #${i} payload differs (${g.payload.length} vs ${expected[i]!.length} bytes)`);
      });
    }
    mine.forEach((g, i) => {
      const r = ref.got[i];
      if (r && (r.topic !== g.topic || !r.payload.equals(g.payload))) problems.push(`#${i} minimal != reference`);
    });
    const same = noRef ? 'identical to the bytes sent (no independent NATS client installed)' : 'identical';
    return { target: t.id, ok: problems.length === 0, checked: expected.length, detail: problems.join('; ') || same };
  } finally {
    for (const c of closers) c();
    await running.stop();
  }
}
