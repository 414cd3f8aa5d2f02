/**
 * Peer: a bare Node `net` server, the floor for bytes per MQTT TCP connection in Node (issue 20).
 * It holds every socket and answers just enough MQTT for the bench's client to count as connected
 * and subscribed: CONNACK for a CONNECT, SUBACK for a SUBSCRIBE (the fixed bytes, no parsing beyond
 * the packet type). Nothing else is kept per connection. Prints `READY {"port":P}` once listening.
 */
import { createServer, type Socket } from 'node:net';

const CONNACK = Buffer.from([0x20, 2, 0, 0]);
const sockets = new Set<Socket>();

const server = createServer({ noDelay: true }, (socket) => {
  sockets.add(socket);
  socket.on('data', (chunk: Buffer) => {
    const type = chunk[0]! >> 4;
    if (type === 1) socket.write(CONNACK);
    else if (type === 8) socket.write(Buffer.from([0x90, 3, chunk[2]!, chunk[3]!, 0])); // same packet id, QoS 0 granted
  });
  socket.on('error', () => undefined);
  socket.on('close', () => sockets.delete(socket));
});
server.listen(0, '127.0.0.1', () => {
  const address = server.address();
  console.log(`READY ${JSON.stringify({ port: typeof address === 'object' && address ? address.port : 0 })}`);
});
