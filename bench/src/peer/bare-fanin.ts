/**
 * Peer: the floor of Node's read path for MQTT TCP fan-in (issue 16). A bare Node `net` server
 * doing the least any Node broker must do with the fan-in traffic: read every publisher's socket
 * through Node's stream ('data'), frame the packets (a packet cut by a read is carried to the
 * next), and hand each PUBLISH's bytes, unchanged, to every subscriber, in one write per
 * subscriber per event-loop turn (what Topicast's outbox does). No topic matching (every PUBLISH
 * goes to every subscriber, which is what the fan-in's one `devices/+/temp` subscriber asks),
 * no decoding, no validation, no message object.
 * CONNACK for a CONNECT, SUBACK (QoS 0 granted) for a SUBSCRIBE. Prints `READY {"port":P}`.
 */
import { createServer, type Socket } from 'node:net';

const CONNACK = Buffer.from([0x20, 2, 0, 0]);
const subscribers: Socket[] = [];
/** Per subscriber, the PUBLISH packets of this turn (written at its end). */
const pending = new Map<Socket, Buffer[]>();
let scheduled = false;

function flush(): void {
  scheduled = false;
  for (const [socket, packets] of pending) {
    if (!socket.destroyed) socket.write(packets.length === 1 ? packets[0]! : Buffer.concat(packets));
  }
  pending.clear();
}

function forward(packet: Buffer): void {
  for (const s of subscribers) {
    const list = pending.get(s);
    if (list) list.push(packet);
    else pending.set(s, [packet]);
  }
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}

function onPacket(socket: Socket, buf: Buffer, start: number, body: number, end: number): void {
  const type = buf[start]! >> 4;
  if (type === 3) forward(buf.subarray(start, end));
  else if (type === 1) socket.write(CONNACK);
  else if (type === 8) {
    subscribers.push(socket);
    socket.write(Buffer.from([0x90, 3, buf[body]!, buf[body + 1]!, 0]));
  } else if (type === 12) socket.write(Buffer.from([0xd0, 0]));
}

const server = createServer({ noDelay: true }, (socket) => {
  let carry: Buffer | undefined;
  socket.on('data', (chunk: Buffer) => {
    const buf = carry ? Buffer.concat([carry, chunk]) : chunk;
    carry = undefined;
    let at = 0;
    const n = buf.length;
    while (at < n) {
      let remaining = 0;
      let mul = 1;
      let body = -1;
      for (let i = at + 1; i < n && i < at + 5; i++) {
        const b = buf[i]!;
        remaining += (b & 0x7f) * mul;
        if ((b & 0x80) === 0) {
          body = i + 1;
          break;
        }
        mul *= 128;
      }
      if (body === -1 || body + remaining > n) break;
      onPacket(socket, buf, at, body, body + remaining);
      at = body + remaining;
    }
    if (at < n) carry = buf.subarray(at);
  });
  socket.on('error', () => undefined);
  socket.on('close', () => {
    const i = subscribers.indexOf(socket);
    if (i >= 0) subscribers.splice(i, 1);
    pending.delete(socket);
  });
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(`READY ${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}`);
});
// A clean exit on SIGTERM (the bench's stop), so `--cpu-prof fanin-floor` gets its profile written.
process.on('SIGTERM', () => process.exit(0));
