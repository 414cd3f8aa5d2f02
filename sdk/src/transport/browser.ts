/**
 * Browser transport: the platform's native WebSocket. Selected by `#transport`
 * under the `browser` condition (bundlers), so the browser build never contains `ws`.
 */
import type { Transport, TransportSocket } from './types.js';

/**
 * Opens a native WebSocket (binary messages as ArrayBuffer).
 * @example
 * const client = await connect(url, { transport: browserTransport });
 */
export const transport: Transport = function openBrowserSocket(url, protocols, on): TransportSocket {
  const ws = new WebSocket(url, protocols);
  ws.binaryType = 'arraybuffer';
  let closed = false;
  function finish(code: number, reason: string): void {
    if (closed) return;
    closed = true;
    ws.onopen = ws.onmessage = ws.onerror = ws.onclose = null;
    on.close(code, reason);
  }
  ws.onopen = () => on.open();
  ws.onmessage = (e: MessageEvent) => {
    if (typeof e.data === 'string') {
      on.error(new Error('text message on a binary protocol'));
      ws.close();
      finish(1002, 'text message');
      return;
    }
    on.message(new Uint8Array(e.data as ArrayBuffer));
  };
  // Browsers hide the cause of a failed WebSocket on purpose; the close event follows.
  ws.onerror = () => on.error(new Error(`WebSocket error on ${url}`));
  ws.onclose = (e: CloseEvent) => finish(e.code, e.reason);
  return {
    send: (data) => ws.send(data),
    close: (code, reason) => {
      try {
        ws.close(code, reason);
      } catch {
        // Browsers only let pages send 1000 and 3000–4999, with a reason of at most 123 bytes.
        ws.close();
      }
    },
    // Browsers cannot drop a socket without a handshake: start one, and report the
    // socket gone now instead of waiting for a close frame that a dead peer never sends.
    terminate: () => {
      ws.close();
      setTimeout(() => finish(1006, 'terminated'), 0);
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
  };
};
