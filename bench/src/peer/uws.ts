/**
 * Peer: raw uWebSockets.js pub/sub, the ceiling. Speaks the bench's raw protocol
 * (wire/raw.ts) on /raw. `--mode inline` calls app.publish inside the publisher's
 * message handler; `--mode deferred` copies the message and publishes from one
 * setImmediate per batch, which lets uWS cork many deliveries per send().
 * `--mode jsloop` is the floor of a fan-out written in JavaScript over this binding: each topic's
 * sockets in an array and, once per setImmediate, every socket sent its topic's messages of the
 * batch (copied into a shared slab) by `ws.send` inside one `ws.cork` — no routing, no
 * per-delivery bookkeeping, nothing a broker must do, only the one native `send` per delivery
 * that any JavaScript fan-out pays (a socket subscribed to several topics gets each topic's
 * messages in turn, not interleaved in publish order: a floor, not a broker).
 * Prints `READY {"port":P}` once listening.
 */
import uWS from 'uWebSockets.js';

const mode = process.argv.includes('--mode') ? process.argv[process.argv.indexOf('--mode') + 1] : 'deferred';
const maxBackpressure = 1 << 20; // like Topicast's maxBufferedBytes: a stalled socket is skipped beyond 1 MiB
const S = 0x73;
const P = 0x70;

const app = uWS.App();
const queue: ArrayBuffer[] = [];
let scheduled = false;

function flushPublishes(): void {
  scheduled = false;
  for (let i = 0; i < queue.length; i++) {
    const m = new Uint8Array(queue[i]!);
    app.publish(m.subarray(2, 2 + m[1]!), m, true);
  }
  queue.length = 0;
}

/** jsloop: the sockets of each topic, and each topic's messages of the current batch. */
const sockets = new Map<string, uWS.WebSocket<unknown>[]>();
const batch = new Map<string, Uint8Array[]>();

function sendBatch(): void {
  scheduled = false;
  for (const [topic, frames] of batch) {
    for (const ws of sockets.get(topic) ?? []) {
      ws.cork(() => {
        for (let i = 0; i < frames.length; i++) ws.send(frames[i]!, true);
      });
    }
  }
  batch.clear();
}

/** jsloop: messages are copied into a shared 64 KB slab (no allocation per publish), as Topicast's frames are. */
const SLAB_BYTES = 64 * 1024;
let slab = new Uint8Array(SLAB_BYTES);
let slabUsed = 0;
function copied(m: Uint8Array): Uint8Array {
  if (slabUsed + m.length > SLAB_BYTES) {
    slab = new Uint8Array(Math.max(SLAB_BYTES, m.length)); // the old slab lives on in the views sent from it
    slabUsed = 0;
  }
  const view = slab.subarray(slabUsed, slabUsed + m.length);
  view.set(m);
  slabUsed += m.length;
  return view;
}

/** jsloop: the last topic's bytes and string (a publisher repeats its topic: no string made per publish). */
let lastTopicBytes = new Uint8Array(0);
let lastTopic = '';
function topicOf(m: Uint8Array, start: number, end: number): string {
  const n = end - start;
  let same = n === lastTopicBytes.length;
  for (let i = 0; same && i < n; i++) same = m[start + i] === lastTopicBytes[i];
  if (!same) {
    lastTopicBytes = m.slice(start, end);
    lastTopic = Buffer.from(lastTopicBytes).toString('latin1');
  }
  return lastTopic;
}

function onRawMessageJsLoop(ws: uWS.WebSocket<unknown>, message: ArrayBuffer): void {
  const m = new Uint8Array(message);
  const topic = m[0] === P ? topicOf(m, 2, 2 + m[1]!) : topicOf(m, 1, m.length);
  if (m[0] === P) {
    let frames = batch.get(topic);
    if (frames === undefined) batch.set(topic, (frames = []));
    frames.push(copied(m)); // the ArrayBuffer is neutered when the handler returns
    if (!scheduled) {
      scheduled = true;
      setImmediate(sendBatch);
    }
  } else if (m[0] === S) {
    let list = sockets.get(topic);
    if (list === undefined) sockets.set(topic, (list = []));
    list.push(ws);
    ws.send(message, true);
  }
}

app.ws('/raw', {
  maxPayloadLength: 1 << 20,
  idleTimeout: 0,
  maxBackpressure,
  sendPingsAutomatically: false,
  close: (ws) => {
    for (const list of sockets.values()) {
      const i = list.indexOf(ws);
      if (i >= 0) list.splice(i, 1);
    }
  },
  message: mode === 'jsloop'
    ? onRawMessageJsLoop
    : mode === 'inline'
    ? function onRawMessageInline(ws, message) {
        const m = new Uint8Array(message);
        if (m[0] === P) app.publish(m.subarray(2, 2 + m[1]!), message, true);
        else if (m[0] === S) {
          ws.subscribe(m.subarray(1));
          ws.send(message, true);
        }
      }
    : function onRawMessageDeferred(ws, message) {
        const m = new Uint8Array(message);
        if (m[0] === P) {
          queue.push(message.slice(0)); // the ArrayBuffer is neutered when the handler returns
          if (!scheduled) {
            scheduled = true;
            setImmediate(flushPublishes);
          }
        } else if (m[0] === S) {
          ws.subscribe(m.subarray(1));
          ws.send(message, true);
        }
      },
});

app.listen('127.0.0.1', 0, (token) => {
  if (!token) {
    console.error('uws peer: listen failed');
    process.exit(1);
  }
  console.log(`READY ${JSON.stringify({ port: uWS.us_socket_local_port(token), mode })}`);
});
process.on('SIGTERM', () => process.exit(0));
