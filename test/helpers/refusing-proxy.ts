/**
 * A proxy in front of a broker that forwards HTTP (streamed both ways) and refuses WebSocket
 * upgrades with 403 until `allowUpgrade` is set: a corporate proxy or an embedded HTTP stack that
 * breaks the upgrade, for the HTTP-streaming fallback tests (PROTOCOL.md §10).
 */
import { createServer, request, type Server } from 'node:http';
import { connect as netConnect, type AddressInfo } from 'node:net';

/** Forwards HTTP to the broker, streaming both ways; refuses WebSocket upgrades until `allowUpgrade`. */
export function refusingProxy(brokerPort: number): Promise<{ server: Server; port: number; allowUpgrade: boolean }> {
  const state = { server: undefined as unknown as Server, port: 0, allowUpgrade: false };
  const server = createServer((req, res) => {
    const upstream = request({ host: '127.0.0.1', port: brokerPort, path: req.url, method: req.method, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    res.on('close', () => upstream.destroy());
    req.pipe(upstream);
  });
  server.on('upgrade', (req, socket, head) => {
    if (!state.allowUpgrade) {
      socket.end('HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: 27\r\n\r\nWebSocket blocked by policy');
      return;
    }
    const up = netConnect(brokerPort, '127.0.0.1', () => {
      let raw = `${req.method} ${req.url} HTTP/1.1\r\n`;
      for (let i = 0; i < req.rawHeaders.length; i += 2) raw += `${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}\r\n`;
      up.write(raw + '\r\n');
      up.write(head);
      up.pipe(socket).pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  state.server = server;
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => {
    state.port = (server.address() as AddressInfo).port;
    resolve(state);
  }));
}

