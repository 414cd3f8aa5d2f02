/**
 * In-process MQTT listener for unit tests: a real BrokerContext (createContext),
 * the MQTT protocol and the TCP transport on 127.0.0.1:0, plus an in-memory
 * Connection for packet-level tests. Modules not exported from the broker's
 * package entry are loaded from broker/dist by URL.
 */
import { after } from 'node:test';
import mqttPacket from 'mqtt-packet';
import { createContext, loadConfig, SendResult, type Connection } from '@topicast/broker';
import type * as MqttModule from '../../../../../broker/src/protocol/mqtt/index.js';
import type * as TcpModule from '../../../../../broker/src/transport/tcp.js';

const dist = new URL('../../../../../../broker/dist/', import.meta.url);
const mqttModule = (await import(new URL('protocol/mqtt/index.js', dist).href)) as typeof MqttModule;
const tcpModule = (await import(new URL('transport/tcp.js', dist).href)) as typeof TcpModule;

export type MqttProtocol = MqttModule.MqttProtocol;
export type Context = ReturnType<typeof createContext>;

export interface Harness {
  ctx: Context;
  protocol: MqttProtocol;
  port: number;
  url: string;
  close(): Promise<void>;
}

const silent = { level: 'silent', info() {}, warn() {}, error() {}, debug() {}, trace() {}, fatal() {}, child() { return silent; } };

export function testContext(args: string[] = [], now?: () => number): Context {
  const config = loadConfig(['--mqtt-port', '0', '--log-level', 'silent', ...args], {});
  const ctx = createContext(config, silent as unknown as Parameters<typeof createContext>[1]);
  if (now) (ctx as { now: () => number }).now = now;
  return ctx;
}

const open: Harness[] = [];
// Registered at module load: an `after` called inside a test would bind to that test only.
after(async () => {
  await Promise.all(open.map((h) => h.close()));
});

/** Starts the MQTT listener on an ephemeral TCP port; closed at the end of the test file. */
export async function startMqtt(args: string[] = [], options: MqttModule.MqttOptions = {}): Promise<Harness> {
  const ctx = testContext(args);
  const protocol = mqttModule.createMqttProtocol(ctx, options);
  const tcp = await tcpModule.listenTcp(protocol, '127.0.0.1', 0);
  let closed: Promise<void> | undefined;
  const h: Harness = {
    ctx, protocol, port: tcp.port, url: `mqtt://127.0.0.1:${tcp.port}`,
    close() {
      closed ??= (async () => {
        protocol.closeAll();
        await tcp.close();
      })();
      return closed;
    },
  };
  open.push(h);
  return h;
}

export function createProtocol(ctx: Context, options: MqttModule.MqttOptions = {}): MqttProtocol {
  return mqttModule.createMqttProtocol(ctx, options);
}

/** An in-memory Connection that parses what the broker sends back into packets. */
export class MemoryConnection implements Connection {
  readonly remoteAddress = 'memory';
  readonly packets: mqttPacket.Packet[] = [];
  closed: { code: number; reason: string } | undefined;
  buffered = 0;
  private readonly parser;

  constructor(version: 3 | 4 | 5 = 4) {
    this.parser = mqttPacket.parser({ protocolVersion: version });
    this.parser.on('packet', (p: mqttPacket.Packet) => this.packets.push(p));
    this.parser.on('error', (err: Error) => this.packets.push({ cmd: 'auth', reasonCode: -1, properties: { reasonString: err.message } } as mqttPacket.Packet));
  }

  send(bytes: Uint8Array): SendResult {
    this.parser.parse(Buffer.from(bytes));
    return SendResult.sent;
  }
  bufferedBytes(): number {
    return this.buffered;
  }
  cork(fn: () => void): void {
    fn();
  }
  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
  }
  /** Packets of one kind received so far. */
  of<C extends mqttPacket.Packet['cmd']>(cmd: C): Extract<mqttPacket.Packet, { cmd: C }>[] {
    return this.packets.filter((p) => p.cmd === cmd) as Extract<mqttPacket.Packet, { cmd: C }>[];
  }
}

export function encode(packet: mqttPacket.Packet, version: 3 | 4 | 5 = 4): Buffer {
  return mqttPacket.generate(packet, { protocolVersion: version });
}

/** Lets queued microtasks, the flusher's setImmediate and the auth promise run. */
export async function settle(rounds = 3): Promise<void> {
  for (let i = 0; i < rounds; i++) await new Promise((r) => setImmediate(r));
}

/** A raw MQTT client over TCP: sends any packet (or bytes), waits for packets by kind. */
export class RawClient {
  readonly packets: mqttPacket.Packet[] = [];
  closed = false;
  readonly closedPromise: Promise<void>;
  private waiters: (() => void)[] = [];
  private readonly parser;

  private constructor(readonly socket: import('node:net').Socket, readonly version: 3 | 4 | 5) {
    this.parser = mqttPacket.parser({ protocolVersion: version });
    this.parser.on('packet', (p: mqttPacket.Packet) => {
      this.packets.push(p);
      this.wake();
    });
    this.parser.on('error', () => socket.destroy());
    socket.on('data', (b) => this.parser.parse(b));
    socket.on('error', () => {});
    this.closedPromise = new Promise((r) => socket.once('close', () => {
      this.closed = true;
      this.wake();
      r();
    }));
  }

  static async open(port: number, version: 3 | 4 | 5 = 4): Promise<RawClient> {
    const net = await import('node:net');
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    rawClients.push(socket);
    return new RawClient(socket, version);
  }

  /** Opens, sends CONNECT and waits for CONNACK. */
  static async connect(port: number, connect: Partial<mqttPacket.IConnectPacket> = {}, version: 3 | 4 | 5 = 4): Promise<{ client: RawClient; connack: mqttPacket.IConnackPacket }> {
    const client = await RawClient.open(port, version);
    client.send({ cmd: 'connect', protocolId: version === 3 ? 'MQIsdp' : 'MQTT', protocolVersion: version, clean: true, keepalive: 0, clientId: '', ...connect });
    const connack = await client.next('connack');
    return { client, connack };
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(packet: mqttPacket.Packet): void {
    this.socket.write(mqttPacket.generate(packet, { protocolVersion: this.version }));
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** The next not-yet-taken packet of kind `cmd` (waits up to `timeoutMs`). */
  async next<C extends mqttPacket.Packet['cmd']>(cmd: C, timeoutMs = 3000): Promise<Extract<mqttPacket.Packet, { cmd: C }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const i = this.packets.findIndex((p) => p.cmd === cmd);
      if (i >= 0) return this.packets.splice(i, 1)[0] as Extract<mqttPacket.Packet, { cmd: C }>;
      if (this.closed) throw new Error(`connection closed while waiting for ${cmd}; got ${this.packets.map((p) => p.cmd).join(',')}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${cmd}; got ${this.packets.map((p) => p.cmd).join(',')}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Resolves true once the server closed the connection within `timeoutMs`. */
  async waitClosed(timeoutMs = 3000): Promise<boolean> {
    await Promise.race([this.closedPromise, new Promise((r) => setTimeout(r, timeoutMs))]);
    return this.closed;
  }

  /** Whether no packet of kind `cmd` arrives within `ms`. */
  async none(cmd: mqttPacket.Packet['cmd'], ms = 200): Promise<boolean> {
    await new Promise((r) => setTimeout(r, ms));
    return !this.packets.some((p) => p.cmd === cmd);
  }

  destroy(): void {
    this.socket.destroy();
  }
}

const rawClients: import('node:net').Socket[] = [];
after(() => {
  for (const s of rawClients) s.destroy();
});
