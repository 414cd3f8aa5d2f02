/**
 * Peer: Socket.IO 4, rooms as topics. Event `sub` (with ack) joins the room named
 * by the topic; event `pub` (topic, payload) emits `m` (topic, payload) to the room.
 * WebSocket transport only. Prints `READY {"port":P}`.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Server } from 'socket.io';

const http = createServer();
const io = new Server(http, { transports: ['websocket'], serveClient: false, maxHttpBufferSize: 1 << 20, pingInterval: 60_000, pingTimeout: 60_000 });
io.on('connection', (socket) => {
  socket.on('sub', (topic: string, ack?: () => void) => {
    void socket.join(topic);
    if (typeof ack === 'function') ack();
  });
  socket.on('pub', function onSioPublish(topic: string, payload: string) {
    io.to(topic).emit('m', topic, payload);
  });
});
await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
console.log(`READY ${JSON.stringify({ port: (http.address() as AddressInfo).port })}`);
process.on('SIGTERM', () => process.exit(0));
