/**
 * A fake WebSocket transport for SDK unit tests: records every client frame
 * (decoded), lets the test play the broker frame by frame, and can answer
 * requests by itself (`auto`) like a well-behaved broker with no retained values.
 */
import { afterEach } from 'node:test';
import { decodeClientFrame, encodeAnyFrame as encodeFrame, Op, type ClientFrame, type ServerFrame, type WelcomeInfo } from 'topicast/protocol';
import type { Transport, TransportHandlers, TransportSocket } from 'topicast';

export const WELCOME: WelcomeInfo = { version: 1, server: 'fake/0', maxPayloadBytes: 1 << 20, idleTimeoutSec: 0 };

export class FakeSocket implements TransportSocket {
  readonly sent: ClientFrame[] = [];
  closedWith: { code: number; reason: string } | undefined;
  terminated = false;
  finished = false;
  bufferedAmount = 0;
  /** Answer SUBSCRIBE/UNSUBSCRIBE/PUBLISH(id>0)/WILL/PING like a broker with no retained values. */
  auto = false;

  constructor(readonly url: string, readonly protocols: string[], private readonly on: TransportHandlers) {}

  /** The socket opens and the broker says WELCOME. */
  accept(info: Partial<WelcomeInfo> = {}): void {
    this.on.open();
    this.push({ op: Op.welcome, info: { ...WELCOME, ...info } });
  }

  push(frame: ServerFrame): void {
    if (this.finished) throw new Error('push on a finished socket');
    this.on.message(encodeFrame(frame));
  }

  pushBytes(bytes: Uint8Array): void {
    this.on.message(bytes);
  }

  /** The broker side closes or the link breaks. */
  drop(code = 1006, reason = ''): void {
    this.finish(code, reason);
  }

  fail(message: string, code = 1006): void {
    this.on.error(new Error(message));
    this.finish(code, '');
  }

  send(data: Uint8Array): void {
    if (this.finished) throw new Error('send on a finished socket');
    const frame = decodeClientFrame(data);
    this.sent.push(frame);
    if (this.auto) queueMicrotask(() => this.answer(frame));
  }

  close(code: number, reason: string): void {
    this.closedWith = { code, reason };
    queueMicrotask(() => this.finish(code, reason));
  }

  terminate(): void {
    this.terminated = true;
    queueMicrotask(() => this.finish(1006, ''));
  }

  framesOf<K extends ClientFrame['op']>(op: K): Extract<ClientFrame, { op: K }>[] {
    return this.sent.filter((f): f is Extract<ClientFrame, { op: K }> => f.op === op);
  }

  private answer(frame: ClientFrame): void {
    if (this.finished) return;
    switch (frame.op) {
      case Op.subscribe:
        this.push({ op: Op.ack, id: frame.id, result: { retained: 0 } });
        this.push({ op: Op.snapshotEnd, id: frame.id });
        return;
      case Op.unsubscribe:
      case Op.will:
        return this.push({ op: Op.ack, id: frame.id, result: null });
      case Op.publish:
        if (frame.id > 0) this.push({ op: Op.ack, id: frame.id, result: null });
        return;
      case Op.ping:
        return this.push({ op: Op.pong, id: frame.id });
    }
  }

  private finish(code: number, reason: string): void {
    if (this.finished) return;
    this.finished = true;
    this.on.close(code, reason);
  }
}

const nets = new Set<FakeNet>();

/**
 * After each test, end every client a failed test left behind: open sockets close with
 * 4003 (not retried) and later attempts fail the same way, so no heartbeat or reconnect
 * timer keeps the test process alive.
 */
afterEach(() => {
  for (const net of nets) {
    net.disposed = true;
    for (const socket of net.sockets) if (!socket.finished) socket.drop(4003, 'test over');
  }
  nets.clear();
});

export class FakeNet {
  readonly sockets: FakeSocket[] = [];
  /** New sockets answer requests by themselves and open at once (on a microtask). */
  autoOpen = false;
  disposed = false;
  constructor() {
    nets.add(this);
  }
  readonly transport: Transport = (url, protocols, on) => {
    const socket = new FakeSocket(url, protocols, on);
    this.sockets.push(socket);
    if (this.disposed) {
      queueMicrotask(() => socket.drop(4003, 'test over'));
    } else if (this.autoOpen) {
      socket.auto = true;
      queueMicrotask(() => socket.accept());
    }
    return socket;
  };

  get last(): FakeSocket {
    const s = this.sockets[this.sockets.length - 1];
    if (!s) throw new Error('no socket opened yet');
    return s;
  }
}

/** Lets queued microtasks and promise callbacks run (a few rounds). */
export async function flush(rounds = 20): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}
