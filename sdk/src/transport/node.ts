/**
 * Node transport: the `ws` package. Selected by `#transport` outside browsers.
 * Per-message deflate is off: payloads are small and mostly incompressible
 * sensor values, and deflate costs memory per connection on both ends.
 */
import { webcrypto } from 'node:crypto';
import WebSocket from 'ws';
import type { Transport, TransportSocket } from './types.js';

// The client draws random ids from the global WebCrypto `crypto`, a global from Node 19 on; Node 18
// (Debian 12, Raspberry Pi OS bookworm: `engines`) has it only as node:crypto's `webcrypto`.
if ((globalThis as { crypto?: unknown }).crypto === undefined) {
  Object.defineProperty(globalThis, 'crypto', { value: webcrypto, writable: true, configurable: true, enumerable: false });
}

/**
 * Opens a WebSocket with the `ws` package.
 * @example
 * const client = await connect(url, { transport: nodeTransport });
 */
export const transport: Transport = function openNodeSocket(url, protocols, on): TransportSocket {
  const ws = new WebSocket(url, protocols, { perMessageDeflate: false });
  let closed = false;
  ws.on('open', () => on.open());
  ws.on('message', (data: Buffer | ArrayBuffer | Buffer[], isBinary: boolean) => {
    if (!isBinary) {
      // Not our protocol: a protocol error (1002, not retried), as in the browser transport.
      on.error(new Error('text message on a binary protocol'));
      ws.terminate();
      if (!closed) {
        closed = true;
        on.close(1002, 'text message');
      }
      return;
    }
    on.message(Array.isArray(data) ? Buffer.concat(data) : data instanceof ArrayBuffer ? new Uint8Array(data) : data);
  });
  ws.on('error', (err: Error) => on.error(err));
  ws.on('close', (code: number, reason: Buffer) => {
    if (closed) return;
    closed = true;
    on.close(code, reason.toString());
  });
  return {
    send: (data) => ws.send(data),
    close: (code, reason) => {
      try {
        ws.close(code, reason);
      } catch {
        ws.terminate(); // an invalid code or a reason over 123 bytes: drop instead of throwing
      }
    },
    terminate: () => ws.terminate(),
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
  };
};
