/**
 * Peer: Aedes (npm) over TCP and over WebSocket (ws + createWebSocketStream) on /mqtt.
 * Prints `READY {"tcpPort":T,"wsPort":W}` once both listen on ephemeral ports.
 */
import { createServer } from 'node:net';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Aedes } from 'aedes';
import { WebSocketServer, createWebSocketStream } from 'ws';

const aedes = await Aedes.createBroker();
const tcp = createServer(aedes.handle);
const http = createHttpServer();
const wss = new WebSocketServer({ server: http, path: '/mqtt' });
wss.on('connection', (socket, req) => {
  aedes.handle(createWebSocketStream(socket) as never, req as never);
});
await new Promise<void>((r) => tcp.listen(0, '127.0.0.1', r));
await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
console.log(`READY ${JSON.stringify({ tcpPort: (tcp.address() as AddressInfo).port, wsPort: (http.address() as AddressInfo).port })}`);
process.on('SIGTERM', () => process.exit(0));
