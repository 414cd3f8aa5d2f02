/**
 * Peer: raw uWebSockets.js pub/sub, the ceiling. Speaks the bench's raw protocol
 * (wire/raw.ts) on /raw. `--mode inline` calls app.publish inside the publisher's
 * message handler; `--mode deferred` copies the message and publishes from one
 * setImmediate per batch, which lets uWS cork many deliveries per send().
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

app.ws('/raw', {
  maxPayloadLength: 1 << 20,
  idleTimeout: 0,
  maxBackpressure,
  sendPingsAutomatically: false,
  message: mode === 'inline'
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
