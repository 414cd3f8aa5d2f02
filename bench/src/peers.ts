/**
 * The systems under test ("targets"): one broker process per measurement, started
 * here on 127.0.0.1, pinned to the broker core, and stopped by PID. A target is a
 * broker plus the endpoint the load generator speaks to it (e.g. Mosquitto over
 * TCP and Mosquitto over WebSocket are two targets of one broker program).
 */
import { existsSync, mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { freePort, spawnChild, waitFor, type Child } from './proc.js';
import type { Endpoint } from './wire/index.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** The Topicast broker measured; TOPICAST_BENCH_BROKER=path/to/main.js measures another build (e.g. main's, for a before/after in one sitting). */
export const BROKER_MAIN = process.env.TOPICAST_BENCH_BROKER ?? join(ROOT, 'broker/dist/main.js');
/** TOPICAST_BENCH_BASE=path/to/main.js adds the targets `topicast-base` and `topicast-mqtt-base`: that build next to this one in the same run. */
const BROKER_BASE = process.env.TOPICAST_BENCH_BASE;
const PEER_DIR = fileURLToPath(new URL('./peer/', import.meta.url));

export const BROKER_CPU = 0;
export const GEN_CPU = 1;

export interface Running {
  child: Child;
  ep: Endpoint;
  /** Where publishers connect when subscribers use a subscribe-only wire (SSE); else `ep`. */
  pubEp?: Endpoint;
  /** Every endpoint this broker process serves, by wire/transport (e.g. `mqtt/tcp`, `native/ws`): the device mix mixes them. */
  eps: Record<string, Endpoint>;
  /** Topicast only: its HTTP port (for /metrics). */
  httpPort?: number;
  stop(): Promise<void>;
}

export interface StartOptions {
  /** Extra broker flags (Topicast only), e.g. a slow-consumer policy. */
  args?: string[];
  /** Node flags for Node-based targets, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** Listen on this port instead of a fresh free one (Topicast; the reconnect storm restarts on the same port). */
  port?: number;
  /** Raise the process's descriptor limit to this (`ulimit -n`; the scale scenario's 100,000 connections). */
  nofile?: number;
  /** Every line the broker writes to stdout/stderr (Topicast: e.g. its --trace-gc lines). */
  onLine?: (line: string) => void;
}

export interface Target {
  id: string;
  label: string;
  /** Supports `+` wildcards (fan-in scenario). */
  wildcard: boolean;
  /** Keeps retained messages (snapshot scenario). */
  retained: boolean;
  available(): string | null; // null = available, else the reason it is skipped
  start(o?: StartOptions): Promise<Running>;
}

export function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function readyLine(child: Child, timeoutMs: number): Promise<Record<string, number>> {
  let line: string | undefined;
  await waitFor(`READY from pid ${child.pid} (${child.logs.slice(-3).join(' | ')})`, () => {
    line = child.logs.find((l) => l.startsWith('READY '));
    return line !== undefined || child.proc.exitCode !== null;
  }, timeoutMs, 20);
  if (!line) throw new Error(`peer exited: ${child.logs.join(' | ')}`);
  return JSON.parse(line.slice(6)) as Record<string, number>;
}

function has(bin: string): boolean {
  try {
    execFileSync('which', [bin], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function nodePeer(id: string, label: string, script: string, args: string[], ep: (ports: Record<string, number>) => Endpoint, caps: { wildcard: boolean; retained: boolean }): Target {
  return {
    id,
    label,
    ...caps,
    available: () => null,
    async start(o = {}) {
      const child = spawnChild(process.execPath, [...(o.nodeArgs ?? []), join(PEER_DIR, script), ...args], { cpu: BROKER_CPU, ...(o.nofile !== undefined && { nofile: o.nofile }), ...(o.onLine && { onLine: o.onLine }) });
      const ports = await readyLine(child, 10_000);
      const e = ep(ports);
      return { child, ep: e, eps: { [`${e.wire}/${e.transport}`]: e }, stop: () => child.stop() };
    },
  };
}

const topicast = (id: string, label: string, transport: 'ws' | 'tcp' | 'sse' | 'mqtt-ws', main = BROKER_MAIN): Target => ({
  id,
  label,
  wildcard: true,
  retained: true,
  available: () => (existsSync(main) ? null : `${main} not built`),
  async start(o = {}) {
    const port = o.port ?? (await freePort());
    const mqttPort = transport === 'tcp' ? await freePort() : 0;
    const child = spawnChild(
      process.execPath,
      [
        ...(o.nodeArgs ?? []),
        main,
        '--host', '127.0.0.1', '--port', String(port), '--mqtt-port', String(mqttPort), '--log-level', 'warn',
        // Bench traffic is far above a device's: lift the per-connection rate limit and the connection cap.
        '--max-publishes-per-sec', '0', '--max-connections', '200000',
        ...(o.args ?? []),
      ],
      { cpu: BROKER_CPU, cwd: ROOT, ...(o.nofile !== undefined && { nofile: o.nofile }), ...(o.onLine && { onLine: o.onLine }) },
    );
    await waitFor(`topicast on ${port} (${child.logs.slice(-3).join(' | ')})`, async () => {
      if (child.proc.exitCode !== null) throw new Error(`topicast exited: ${child.logs.join(' | ')}`);
      return (await tcpOpen(port)) && (mqttPort === 0 || (await tcpOpen(mqttPort)));
    }, 15_000);
    const native: Endpoint = { wire: 'native', transport: 'ws', host: '127.0.0.1', port, path: '/ws' };
    const ep: Endpoint = transport === 'ws' ? native
      : transport === 'sse' ? { wire: 'sse', transport: 'tcp', host: '127.0.0.1', port }
      : transport === 'mqtt-ws' ? { wire: 'mqtt', transport: 'ws', host: '127.0.0.1', port, path: '/mqtt' }
      : { wire: 'mqtt', transport: 'tcp', host: '127.0.0.1', port: mqttPort };
    // SSE streams only subscribe: the publisher speaks the native protocol to the same broker.
    const eps: Record<string, Endpoint> = { 'native/ws': native };
    if (mqttPort) eps['mqtt/tcp'] = { wire: 'mqtt', transport: 'tcp', host: '127.0.0.1', port: mqttPort };
    return { child, ep, eps, httpPort: port, ...(transport === 'sse' && { pubEp: native }), stop: () => child.stop(o.nodeArgs?.length ? 10_000 : 3000) };
  },
});

const mosquitto = (id: string, label: string, transport: 'ws' | 'tcp'): Target => ({
  id,
  label,
  wildcard: true,
  retained: true,
  available: () => (has('mosquitto') ? null : 'mosquitto not installed (apt-get install mosquitto)'),
  async start(o = {}) {
    const tcpPort = await freePort();
    const wsPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'bench-mosquitto-'));
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(conf, [
      'per_listener_settings false',
      'allow_anonymous true',
      'persistence false',
      'log_dest none',
      'max_connections -1',
      'set_tcp_nodelay true',
      'max_queued_messages 0', // QoS 0 only here; no offline queue limits in play
      `listener ${tcpPort} 127.0.0.1`,
      `listener ${wsPort} 127.0.0.1`,
      'protocol websockets',
      '',
    ].join('\n'));
    const child = spawnChild('mosquitto', ['-c', conf], { cpu: BROKER_CPU, ...(o.nofile !== undefined && { nofile: o.nofile }) });
    await waitFor('mosquitto listening', async () => {
      if (child.proc.exitCode !== null) throw new Error(`mosquitto exited: ${child.logs.join(' | ')}`);
      return (await tcpOpen(tcpPort)) && (await tcpOpen(wsPort));
    }, 10_000);
    const eps: Record<string, Endpoint> = {
      'mqtt/ws': { wire: 'mqtt', transport: 'ws', host: '127.0.0.1', port: wsPort, path: '/mqtt' },
      'mqtt/tcp': { wire: 'mqtt', transport: 'tcp', host: '127.0.0.1', port: tcpPort },
    };
    return {
      child,
      ep: eps[`mqtt/${transport}`]!,
      eps,
      async stop() {
        await child.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
});

const nats = (id: string, label: string, transport: 'ws' | 'tcp'): Target => ({
  id,
  label,
  wildcard: true,
  retained: false,
  available: () => (has('nats-server') ? null : 'nats-server not installed (apt-get install nats-server)'),
  async start(o = {}) {
    const tcpPort = await freePort();
    const wsPort = await freePort();
    const dir = mkdtempSync(join(tmpdir(), 'bench-nats-'));
    const conf = join(dir, 'nats.conf');
    writeFileSync(conf, `listen: "127.0.0.1:${tcpPort}"\nmax_connections: 200000\nwebsocket {\n  listen: "127.0.0.1:${wsPort}"\n  no_tls: true\n}\n`);
    const child = spawnChild('nats-server', ['-c', conf], { cpu: BROKER_CPU, ...(o.nofile !== undefined && { nofile: o.nofile }) });
    await waitFor('nats-server listening', async () => {
      if (child.proc.exitCode !== null) throw new Error(`nats-server exited: ${child.logs.join(' | ')}`);
      return (await tcpOpen(tcpPort)) && (await tcpOpen(wsPort));
    }, 10_000);
    const eps: Record<string, Endpoint> = {
      'nats/ws': { wire: 'nats', transport: 'ws', host: '127.0.0.1', port: wsPort, path: '/' },
      'nats/tcp': { wire: 'nats', transport: 'tcp', host: '127.0.0.1', port: tcpPort },
    };
    return {
      child,
      ep: eps[`nats/${transport}`]!,
      eps,
      async stop() {
        await child.stop();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  },
});

export const TARGETS: Target[] = [
  nodePeer('uws-deferred', 'raw uWS (deferred publish)', 'uws.js', ['--mode', 'deferred'], (p) => ({ wire: 'raw', transport: 'ws', host: '127.0.0.1', port: p.port!, path: '/raw' }), { wildcard: false, retained: false }),
  // The floor of any fan-out written in JavaScript over this binding: one `ws.send` per delivery, corked per socket per turn, nothing else.
  nodePeer('uws-jsloop', 'uWS JavaScript fan-out floor', 'uws.js', ['--mode', 'jsloop'], (p) => ({ wire: 'raw', transport: 'ws', host: '127.0.0.1', port: p.port!, path: '/raw' }), { wildcard: false, retained: false }),
  nodePeer('uws-inline', 'raw uWS (publish in handler)', 'uws.js', ['--mode', 'inline'], (p) => ({ wire: 'raw', transport: 'ws', host: '127.0.0.1', port: p.port!, path: '/raw' }), { wildcard: false, retained: false }),
  topicast('topicast', 'Topicast (native WS)', 'ws'),
  topicast('topicast-mqtt', 'Topicast (MQTT TCP)', 'tcp'),
  topicast('topicast-mqtt-ws', 'Topicast (MQTT WS)', 'mqtt-ws'),
  // Subscribers over HTTP streaming (SSE), the publisher over native WS: fan-out only (run.ts).
  topicast('topicast-sse', 'Topicast (SSE, native publisher)', 'sse'),
  mosquitto('mosquitto-ws', 'Mosquitto (WS)', 'ws'),
  mosquitto('mosquitto-tcp', 'Mosquitto (TCP)', 'tcp'),
  // The floor for bytes per MQTT TCP connection in Node: a bare net server answering CONNECT and SUBSCRIBE (conn-memory.ts only).
  nodePeer('bare-net', 'bare Node net server', 'bare-net.js', [], (p) => ({ wire: 'mqtt', transport: 'tcp', host: '127.0.0.1', port: p.port! }), { wildcard: false, retained: false }),
  // The floor of Node's read path for MQTT TCP fan-in: frames and forwards every PUBLISH unchanged, one write per subscriber per turn (peer/bare-fanin.ts).
  nodePeer('bare-net-fanin', 'bare Node net forwarder (read-path floor)', 'bare-fanin.js', [], (p) => ({ wire: 'mqtt', transport: 'tcp', host: '127.0.0.1', port: p.port! }), { wildcard: true, retained: false }),
  nodePeer('aedes-tcp', 'Aedes (TCP)', 'aedes.js', [], (p) => ({ wire: 'mqtt', transport: 'tcp', host: '127.0.0.1', port: p.tcpPort! }), { wildcard: true, retained: true }),
  nodePeer('aedes-ws', 'Aedes (WS)', 'aedes.js', [], (p) => ({ wire: 'mqtt', transport: 'ws', host: '127.0.0.1', port: p.wsPort!, path: '/mqtt' }), { wildcard: true, retained: true }),
  nodePeer('socketio', 'Socket.IO 4 (rooms)', 'socketio.js', [], (p) => ({ wire: 'sio', transport: 'ws', host: '127.0.0.1', port: p.port!, path: '/socket.io/?EIO=4&transport=websocket' }), { wildcard: false, retained: false }),
  nats('nats-tcp', 'NATS (TCP)', 'tcp'),
  nats('nats-ws', 'NATS (WS)', 'ws'),
  ...(BROKER_BASE === undefined ? [] : [
    topicast('topicast-base', 'Topicast base build (native WS)', 'ws', BROKER_BASE),
    topicast('topicast-mqtt-base', 'Topicast base build (MQTT TCP)', 'tcp', BROKER_BASE),
  ]),
];

export function target(id: string): Target {
  const t = TARGETS.find((x) => x.id === id);
  if (!t) throw new Error(`unknown target ${id}; known: ${TARGETS.map((x) => x.id).join(', ')}`);
  return t;
}
