/**
 * Idle-connection client process for the scale scenario (scale.ts): holds tens of
 * thousands of subscribed connections as cheaply as Node allows, so the client side
 * does not dominate. Per connection: one `net.Socket` reading through `onread` into
 * one buffer shared by every socket of the process (no per-read allocation), a few
 * numbers in typed arrays, and no closure. Wires, written by hand over raw sockets:
 *   mqtt     MQTT 3.1.1 over TCP: CONNECT (clean session, keepalive K) and SUBSCRIBE
 *            pipelined in one write; subscribed when the SUBACK arrives.
 *   mqtt-ws  the same bytes in masked WebSocket frames (subprotocol `mqtt`).
 *   native   Topicast's protocol over WebSocket: upgrade, then SUBSCRIBE; subscribed on its ACK.
 * Keepalive: one process-wide timer walks the connections round robin so that every
 * connection sends one ping per K seconds (MQTT PINGREQ; a native PING frame, as the
 * SDK does with `heartbeatMs`), evenly spread; replies are counted.
 * Connections come from several loopback source addresses (`addrs`), so a client
 * process is not limited to one address's ~28,000 ephemeral ports.
 * Driven over IPC by scale.ts; every command gets one reply.
 */
import { connect, type Socket } from 'node:net';
import { encodeFrame, Op, SUBPROTOCOL } from 'topicast/protocol';

export type ScaleWire = 'mqtt' | 'mqtt-ws' | 'native';

export type ScaleCommand =
  | { t: 'connect'; wire: ScaleWire; host: string; port: number; path: string; count: number; first: number; addrs: string[]; concurrency: number; keepaliveSec: number; timeoutMs: number }
  | { t: 'keepalive'; on: boolean }
  | { t: 'stats' }
  | { t: 'close' };

const SHARED = Buffer.allocUnsafe(64 * 1024);
const MASK = [0x37, 0xfa, 0x21, 0x3d];

let wire: ScaleWire = 'mqtt';
let socks: Socket[] = [];
/** 0 connecting, 1 upgrade sent (ws), 2 subscribe sent, 3 subscribed, 4 closed/failed. */
let state = new Uint8Array(0);
let headBytes: string[] = [];
let subscribed = 0;
let failed = 0;
let closedAfter = 0;
let firstError = '';
let pingsSent = 0;
let replies = 0;
let replyBytes = 0;
let pingTimer: NodeJS.Timeout | null = null;
let pingNext = 0;
let pingPacket: Buffer = Buffer.alloc(0);
let pingCarry = 0;
/** Index of this process's first connection among all client processes (topics `idle/<first + i>`). */
let firstIndex = 0;
let keepalive = 60;
/** Handshakes in flight, connections started, connections this process opens. */
let pending = 0;
let started = 0;
let target = 0;
let finish: (() => void) | null = null;
let opts: Extract<ScaleCommand, { t: 'connect' }> | null = null;

/** A masked client WebSocket frame (binary) carrying `payload`; the fixed mask is allowed by RFC 6455 for a test client. */
function wsFrame(payload: Uint8Array): Buffer {
  const len = payload.length;
  const h = len < 126 ? 2 : 4;
  const out = Buffer.allocUnsafe(h + 4 + len);
  out[0] = 0x82;
  if (len < 126) out[1] = 0x80 | len;
  else {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  }
  for (let k = 0; k < 4; k++) out[h + k] = MASK[k]!;
  for (let j = 0; j < len; j++) out[h + 4 + j] = payload[j]! ^ MASK[j & 3]!;
  return out;
}

function str(s: string): Buffer {
  const b = Buffer.from(s);
  const out = Buffer.allocUnsafe(2 + b.length);
  out.writeUInt16BE(b.length, 0);
  b.copy(out, 2);
  return out;
}

function mqttPacket(first: number, body: Buffer): Buffer {
  const head: number[] = [first];
  let n = body.length;
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    head.push(b);
  } while (n > 0);
  return Buffer.concat([Buffer.from(head), body]);
}

/** CONNECT + SUBSCRIBE to `idle/<i>`, pipelined. */
function mqttHello(i: number, keepaliveSec: number): Buffer {
  const vh = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, keepaliveSec >> 8, keepaliveSec & 0xff]);
  const conn = mqttPacket(0x10, Buffer.concat([vh, str(`s${i}`)]));
  const sub = mqttPacket(0x82, Buffer.concat([Buffer.from([0, 1]), str(`idle/${i}`), Buffer.from([0])]));
  return Buffer.concat([conn, sub]);
}

function upgradeRequest(host: string, port: number, path: string, protocol: string): string {
  // A fixed key: the server's accept value is not checked by this client (status 101 is).
  return `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: ${protocol}\r\n\r\n`;
}

function subscribePacket(i: number, keepaliveSec: number): Buffer {
  if (wire === 'native') return wsFrame(encodeFrame({ op: Op.subscribe, id: 1, filters: [`idle/${i}`], options: {} }));
  return wsFrame(mqttHello(i, keepaliveSec));
}

/** MQTT control packets in `buf[s..e)`: CONNACK must accept, SUBACK ends the handshake. Returns 1 subscribed, -1 refused, 0 not yet. */
function mqttHandshake(buf: Buffer, s: number, e: number): number {
  let i = s;
  let out = 0;
  while (i + 1 < e) {
    const type = buf[i]! >> 4;
    const len = buf[i + 1]!; // CONNACK, SUBACK and PINGRESP are all < 128 bytes
    if (type === 2 && buf[i + 3] !== 0) return -1;
    if (type === 9) out = buf[i + 4] === 0x80 ? -1 : 1;
    i += 2 + len;
  }
  return out;
}

/** WebSocket frames in `buf[s..e)` (server frames: unmasked, small); calls back per payload; returns the bytes consumed. */
function eachFrame(buf: Buffer, s: number, e: number, i: number): number {
  let at = s;
  let result = 0;
  while (at + 2 <= e) {
    let len = buf[at + 1]! & 0x7f;
    let h = 2;
    if (len === 126) {
      len = buf.readUInt16BE(at + 2);
      h = 4;
    }
    const ps = at + h;
    const op = buf[at]! & 0x0f;
    if (op === 2 && state[i] === 2) {
      if (wire === 'native') {
        // [op, id, ...]: a fixarray whose second byte is the op.
        const f = buf[ps + 1];
        if (f === Op.ack) result = 1;
        else if (f === Op.error) result = -1;
      } else {
        const r = mqttHandshake(buf, ps, ps + len);
        if (r !== 0) result = r;
      }
    } else if (op === 2 && state[i] === 3) replies++;
    at = ps + len;
  }
  return result;
}

function onRead(this: Socket, n: number, buf: Buffer): boolean {
  const i = (this as Socket & { idx: number }).idx;
  const st = state[i]!;
  if (st === 3) {
    replyBytes += n;
    if (wire === 'mqtt') replies += n >> 1; // PINGRESP: 2 bytes
    else eachFrame(buf, 0, n, i);
    return true;
  }
  if (st === 1) {
    const head = (headBytes[i] ?? '') + buf.toString('latin1', 0, n);
    const end = head.indexOf('\r\n\r\n');
    if (end < 0) {
      headBytes[i] = head;
      return true;
    }
    headBytes[i] = '';
    if (!head.startsWith('HTTP/1.1 101')) return fail(i, `upgrade refused: ${head.slice(0, head.indexOf('\r\n'))}`);
    state[i] = 2;
    this.write(subscribePacket(i + firstIndex, keepalive));
    const rest = Buffer.from(head.slice(end + 4), 'latin1');
    if (rest.length === 0) return true;
    rest.copy(buf, 0);
    n = rest.length;
  }
  const r = wire === 'mqtt' ? mqttHandshake(buf, 0, n) : eachFrame(buf, 0, n, i);
  if (r === 1) {
    state[i] = 3;
    subscribed++;
    done();
  } else if (r === -1) fail(i, 'subscription refused');
  return true;
}

function fail(i: number, why: string): boolean {
  if (state[i] !== 4) {
    if (state[i] === 3) closedAfter++;
    else {
      failed++;
      firstError ||= why;
      done();
    }
    state[i] = 4;
  }
  socks[i]?.destroy();
  return false;
}

function done(): void {
  pending--;
  openMore();
  if (subscribed + failed === target) finish?.();
}

function onClose(this: Socket): void {
  const i = (this as Socket & { idx: number }).idx;
  if (state[i] !== 4) fail(i, 'closed by the broker');
}

function onError(this: Socket, err: Error): void {
  const i = (this as Socket & { idx: number }).idx;
  fail(i, err.message);
}

function onConnect(this: Socket): void {
  const i = (this as Socket & { idx: number }).idx;
  const o = opts!;
  if (wire === 'mqtt') {
    state[i] = 2;
    this.write(mqttHello(i + firstIndex, keepalive));
  } else {
    state[i] = 1;
    this.write(upgradeRequest(o.host, o.port, o.path, wire === 'native' ? SUBPROTOCOL : 'mqtt'));
  }
}

function openMore(): void {
  const o = opts!;
  while (pending < o.concurrency && started < target) {
    const i = started++;
    pending++;
    const s = connect({
      host: o.host,
      port: o.port,
      localAddress: o.addrs[i % o.addrs.length],
      noDelay: true,
      onread: { buffer: SHARED, callback: onRead },
    }) as Socket & { idx: number };
    s.idx = i;
    socks[i] = s;
    s.on('connect', onConnect);
    s.on('error', onError);
    s.on('close', onClose);
  }
}

/** Sends pings so that each subscribed connection pings once per keepalive period, evenly spread over it. */
function pingTick(): void {
  const perTick = (socks.length * 50) / (keepalive * 1000);
  // Carry fractions: with 100,000 connections and 60 s, 83.3 pings per 50 ms tick.
  pingCarry += perTick;
  let k = Math.floor(pingCarry);
  pingCarry -= k;
  while (k-- > 0) {
    const i = pingNext;
    pingNext = (pingNext + 1) % socks.length;
    if (state[i] !== 3) continue;
    socks[i]!.write(pingPacket);
    pingsSent++;
  }
}

function reply(m: object): void {
  process.send!(m);
}

async function handle(c: ScaleCommand): Promise<void> {
  switch (c.t) {
    case 'connect': {
      opts = c;
      wire = c.wire;
      keepalive = c.keepaliveSec;
      firstIndex = c.first;
      target = c.count;
      socks = new Array(c.count);
      state = new Uint8Array(c.count);
      headBytes = [];
      pingPacket = wire === 'mqtt' ? Buffer.from([0xc0, 0]) : wire === 'mqtt-ws' ? wsFrame(Buffer.from([0xc0, 0])) : wsFrame(encodeFrame({ op: Op.ping, id: 2 }));
      const t0 = performance.now();
      await new Promise<void>((resolve) => {
        finish = resolve;
        const timer = setTimeout(resolve, c.timeoutMs);
        timer.unref();
        openMore();
      });
      finish = null;
      return reply({ t: 'connected', subscribed, failed, ms: performance.now() - t0, error: firstError });
    }
    case 'keepalive':
      if (c.on && !pingTimer) pingTimer = setInterval(pingTick, 50);
      if (!c.on && pingTimer) {
        clearInterval(pingTimer);
        pingTimer = null;
      }
      return reply({ t: 'keepalive' });
    case 'stats':
      return reply({ t: 'stats', subscribed, failed, closedAfter, pingsSent, replies, replyBytes });
    case 'close':
      if (pingTimer) clearInterval(pingTimer);
      for (const s of socks) s?.destroy();
      reply({ t: 'closed' });
      setTimeout(() => process.exit(0), 100);
      return;
  }
}

process.on('message', (c: ScaleCommand) => {
  handle(c).catch((err: Error) => reply({ t: 'error', message: err.message }));
});
process.on('disconnect', () => process.exit(0));
