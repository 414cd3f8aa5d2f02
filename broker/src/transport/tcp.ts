/**
 * MQTT over TCP (node:net), or over TLS with `tls` (node:tls, mqtts): one Connection per socket, feeding a ProtocolHandler.
 *
 * - send → socket.write; `false` from write means the kernel buffer is full:
 *   reported as backpressure, and 'drain' calls the handler's onDrain.
 * - cork → the sends it wraps go out as one buffer in one write (see `cork`).
 * - bufferedBytes → socket.writableLength, so the outbox's slow-consumer policy
 *   sees what Node holds for this peer.
 * - close → end() (flushes what is written, then FIN), destroyed after a bound
 *   if the peer does not read; onClose runs once, on the socket's 'close'.
 * Socket errors (ECONNRESET...) are expected on a device network: they end the
 * connection and are logged at debug level only by the caller's protocol.
 * Every accepted socket passes `admission` first (transport/admission.ts): past the
 * descriptor budget or the pending caps it is destroyed before anything is read; it
 * counts as pending until the protocol calls `established` (MQTT CONNECT accepted).
 * A failed accept (EMFILE...) is an 'error' on the server: counted, never thrown.
 */
import { createServer, type Socket } from 'node:net';
import { createRequire } from 'node:module';
import type { Server as TlsServer } from 'node:tls';
import { addressKey } from '../auth/abuse.js';
import { SendResult, type Connection } from '../session/connection.js';
import type { ConnectionHandler, ProtocolHandler } from '../session/handler.js';
import type { Admission, PendingEntry } from './admission.js';

/** How long a closing socket may take to flush before it is destroyed. */
const CLOSE_FLUSH_MS = 2000;

/** A socket's place in the admission counts (admission.ts), from its TCP accept to its close (TLS: found by address). */
interface Admitted {
  entry: PendingEntry | undefined;
  /** Until the protocol's handshake completes. */
  pending: boolean;
}

/** Every socket's connection, per listener: also the set closed stragglers are found in. */
type Sockets = Map<Socket, TcpConnection>;

class TcpConnection implements Connection, Admitted {
  closing = false;
  /** Node gives every read of a socket its own buffer ('data' chunks are never reused). */
  get readsOwned(): boolean {
    return true;
  }
  readonly remoteAddress: string;
  /** Sends made inside `cork`, written together when it ends; undefined outside a cork. */
  private corked: Uint8Array[] | undefined = undefined;
  private corkedBytes = 0;
  /** Plain TCP: this socket's place in the admission counts, held here (no object per socket, issue 20). */
  entry: PendingEntry | undefined = undefined;
  pending = false;

  /** The protocol's handler, set right after the connection is made. */
  handler!: ConnectionHandler;

  constructor(
    private readonly socket: Socket,
    private readonly admission: Admission | undefined,
    /**
     * Where this socket counts in `admission`: `this` when admitted at this accept (plain TCP,
     * which then reports the close too), the TLS accept hook's record (which reports it), or
     * undefined (not counted).
     */
    private admitted: Admitted | undefined,
  ) {
    this.remoteAddress = socket.remoteAddress ?? ''; // the IP alone, like the WebSocket transport: per-IP limits key on it
  }

  /** Plain TCP: admitted at this accept, so this connection holds the record and reports the close. */
  admitHere(entry: PendingEntry | undefined): void {
    this.entry = entry;
    this.pending = true;
    this.admitted = this;
  }

  established(): void {
    const a = this.admitted;
    if (a === undefined || !a.pending) return;
    a.pending = false;
    this.admission?.established(a.entry);
  }

  /** The socket closed: admission told (when admitted here), then the protocol. */
  onSocketClose(hadError: boolean): void {
    if (this.admitted === this) this.admission?.closed(this.entry, this.pending);
    this.handler.onClose(hadError ? 1006 : 1000, hadError ? 'socket error' : 'socket closed', false);
  }

  send(bytes: Uint8Array): SendResult {
    if (this.closing || this.socket.destroyed) return SendResult.dropped;
    const corked = this.corked;
    if (corked !== undefined) {
      corked.push(bytes);
      this.corkedBytes += bytes.length;
      return this.socket.writableLength + this.corkedBytes < this.socket.writableHighWaterMark ? SendResult.sent : SendResult.backpressure;
    }
    return this.socket.write(bytes) ? SendResult.sent : SendResult.backpressure;
  }

  bufferedBytes(): number {
    return this.socket.writableLength + this.corkedBytes;
  }

  /**
   * Everything sent inside `fn` leaves as ONE write of one buffer. Node's own cork would hand
   * libuv one writev of every chunk, and a writev takes at most IOV_MAX (1,024) buffers per
   * system call: a flush of thousands of small PUBLISH packets then trickled out about a
   * thousand packets per event-loop turn, the rest waiting in Node's queue, and the outbox
   * saw a reader that keeps up as a slow consumer (issue 20). One copy into one buffer
   * costs less than the per-chunk bookkeeping of a writev, and the kernel takes it whole.
   */
  cork(fn: () => void): void {
    if (this.socket.destroyed) return;
    if (this.corked !== undefined) return fn(); // nested: the outer cork writes
    const chunks: Uint8Array[] = (this.corked = []);
    try {
      fn();
    } finally {
      const bytes = this.corkedBytes;
      this.corked = undefined;
      this.corkedBytes = 0;
      if (chunks.length > 0 && !this.socket.destroyed) this.socket.write(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, bytes));
    }
  }

  close(): void {
    if (this.closing) return;
    this.closing = true;
    const socket = this.socket;
    if (socket.destroyed) return;
    socket.end();
    const timer = setTimeout(() => socket.destroy(), CLOSE_FLUSH_MS);
    timer.unref();
    socket.once('close', () => clearTimeout(timer));
  }
}

// The socket events of every connection go to these shared functions (`this` is the socket), the
// connection found in the listener's map: no closures per socket (issue 20, bytes per connection).
// Errors (ECONNRESET, EPIPE...) need a listener, and nothing else: the 'close' that follows ends the session.
function ignoreSocketError(): void {}

function connectionOf(socket: Socket, sockets: Sockets): TcpConnection | undefined {
  return sockets.get(socket);
}

export interface TcpListener {
  readonly port: number;
  /** With TLS: new certificate and key for new connections; open ones keep theirs (node:tls setSecureContext). */
  setTls(tls: TcpTls): void;
  /** Stops accepting new connections; open ones stay (drain). */
  stopListening(): void;
  /** Stops accepting; resolves once every socket is closed. */
  close(): Promise<void>;
}

/** PEM certificate (chain) and key: the listener speaks TLS (mqtts://). */
export interface TcpTls {
  cert: Buffer;
  key: Buffer;
}

export function listenTcp(protocol: ProtocolHandler, host: string, port: number, tls?: TcpTls, admission?: Admission): Promise<TcpListener> {
  const sockets: Sockets = new Map();
  // TCP keepalive reaps dead peers of clients that asked for MQTT keepalive 0 (allowed in 3.1.1).
  const socketOptions = { noDelay: true, keepAlive: true, keepAliveInitialDelay: 60_000 };
  // With TLS the callback runs per handshaken socket ('secureConnection'); a failed handshake never reaches the protocol.
  // node:tls only with a certificate: it keeps about 0.2 MiB resident (docs/EMBEDDED.md "Footprint").
  const server = tls ? (createRequire(import.meta.url)('node:tls') as typeof import('node:tls')).createServer({ ...socketOptions, ...tls }, onSocket) : createServer(socketOptions, onSocket);
  // Admission at the TCP accept, before the protocol's own listener. Plain TCP: in onSocket, which
  // runs at the accept. TLS: before the handshake too (a handshake that never completes is a
  // half-open connection as well), so in a 'connection' hook; the TLS socket handed to onSocket
  // later is found by its remote address and port.
  const admittedSockets = new Map<string, Admitted>();
  const socketKey = (socket: Socket): string => `${socket.remoteAddress ?? ''}|${socket.remotePort ?? ''}`;
  if (admission && tls) {
    server.prependListener('connection', (raw: Socket) => {
      const admitted = admission.accept(addressKey(raw.remoteAddress ?? '', false), true);
      raw.on('error', ignoreSocketError); // a reset while it goes is expected; the protocol's socket has its own
      if ('refusal' in admitted) {
        raw.destroy();
        return;
      }
      const state: Admitted = { entry: admitted.entry, pending: true };
      const key = socketKey(raw);
      admittedSockets.set(key, state);
      raw.once('close', () => {
        if (admittedSockets.get(key) === state) admittedSockets.delete(key);
        admission.closed(state.entry, state.pending);
      });
    });
  }
  function onData(this: Socket, chunk: Buffer): void {
    connectionOf(this, sockets)?.handler.onMessage(chunk);
  }
  function onDrain(this: Socket): void {
    connectionOf(this, sockets)?.handler.onDrain();
  }
  function onEnd(this: Socket): void {
    // Half-close from the peer: MQTT has no half-open use, finish the close.
    connectionOf(this, sockets)?.close();
  }
  function onClose(this: Socket, hadError: boolean): void {
    const conn = connectionOf(this, sockets);
    sockets.delete(this);
    conn?.onSocketClose(hadError);
  }
  function onSocket(socket: Socket): void {
    if (socket.destroyed) return; // refused at accept (TLS)
    let conn: TcpConnection;
    if (tls) conn = new TcpConnection(socket, admission, admittedSockets.get(socketKey(socket)));
    else if (admission) {
      const a = admission.accept(addressKey(socket.remoteAddress ?? '', false), true);
      if ('refusal' in a) {
        socket.on('error', ignoreSocketError);
        socket.destroy();
        return;
      }
      conn = new TcpConnection(socket, admission, undefined);
      conn.admitHere(a.entry);
    } else conn = new TcpConnection(socket, undefined, undefined);
    sockets.set(socket, conn);
    conn.handler = protocol.open(conn);
    socket.on('data', onData);
    socket.on('drain', onDrain);
    socket.on('error', ignoreSocketError);
    socket.on('end', onEnd);
    socket.on('close', onClose);
  }
  let closed: Promise<void> | undefined;
  const stopListening = (): void => {
    closed ??= new Promise<void>((done) => server.close(() => done()));
  };
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      // Out of descriptors, accept fails (libuv closes the peer with its reserve descriptor) and the
      // server emits 'error': without this listener that would be an uncaught exception.
      server.on('error', () => admission?.acceptFailed());
      const address = server.address();
      resolve({
        port: typeof address === 'object' && address ? address.port : port,
        setTls(next) {
          if (tls) (server as TlsServer).setSecureContext({ ...next });
        },
        stopListening,
        close() {
          stopListening();
          // Connections still open are closed by the protocol's closeAll; destroy stragglers after the flush bound.
          const timer = setTimeout(() => {
            for (const s of sockets.keys()) s.destroy();
          }, CLOSE_FLUSH_MS);
          timer.unref();
          return closed!;
        },
      });
    });
  });
}
