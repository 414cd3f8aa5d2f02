/**
 * Starts real `nats-server` processes (Debian's, with JetStream in a temp store dir) on 127.0.0.1
 * for the NATS bus tests: a single server, or a cluster of servers routed to each other, whose
 * members can be killed (`kill -9`) and restarted on the same ports. Everything started here is
 * stopped, and its store removed, at the end of the test file.
 *
 * `haveNatsServer` is false when the binary is missing; callers skip with a printed reason, except
 * under CI (`requireNatsServer`), where a missing engine is an error.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { connect } from 'nats';
import { freePort, waitFor } from './broker.js';

const NATS_SERVER = ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find((p) => spawnSync(p, ['--version']).status === 0);

/** Whether `nats-server` is installed (Debian package `nats-server`). */
export const haveNatsServer = NATS_SERVER !== undefined;

/** Throws under CI when nats-server is missing; otherwise returns whether tests can run (printing why not). */
export function requireNatsServer(): boolean {
  if (haveNatsServer) return true;
  if (process.env.CI) throw new Error('nats-server is required under CI (apt-get install nats-server)');
  console.log('# skipping NATS tests: nats-server is not installed (apt-get install nats-server)');
  return false;
}

export interface NatsServer {
  readonly name: string;
  readonly port: number;
  /** nats://127.0.0.1:PORT */
  readonly url: string;
  /** The running process, or undefined while killed/stopped. */
  readonly proc: ChildProcess | undefined;
  /** Every log line so far (all runs). */
  readonly logs: string[];
  /** Sends `signal` (SIGKILL for kill -9) and resolves once the process has exited. */
  kill(signal?: NodeJS.Signals): Promise<void>;
  /** Starts it again on the same ports and store; resolves once it accepts clients. */
  restart(): Promise<void>;
  /** SIGTERM (then SIGKILL after 5 s). */
  stop(): Promise<void>;
}

export interface NatsServerOptions {
  /** Enable JetStream (store in a temp dir). Default true. */
  jetstream?: boolean;
  /** `--user`/`--pass` required of clients. */
  user?: string;
  pass?: string;
}

const running = new Set<ServerImpl>();
const storeDirs: string[] = [];
after(async () => {
  await Promise.all([...running].map((s) => s.stop()));
  for (const dir of storeDirs) rmSync(dir, { recursive: true, force: true });
});
process.on('exit', () => {
  for (const s of running) s.proc?.kill('SIGKILL');
});

class ServerImpl implements NatsServer {
  proc: ChildProcess | undefined;
  readonly logs: string[] = [];
  readonly url: string;
  private exited: Promise<void> = Promise.resolve();

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly args: string[],
  ) {
    this.url = `nats://127.0.0.1:${port}`;
  }

  async restart(): Promise<void> {
    if (this.proc) throw new Error(`nats-server ${this.name} is already running`);
    if (!NATS_SERVER) throw new Error('nats-server is not installed');
    const proc = spawn(NATS_SERVER, this.args, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    running.add(this);
    let ready = false;
    let buf = '';
    const onData = (chunk: string): void => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        this.logs.push(line);
        if (line.includes('Server is ready')) ready = true;
      }
    };
    proc.stdout!.setEncoding('utf8').on('data', onData);
    proc.stderr!.setEncoding('utf8').on('data', onData);
    this.exited = new Promise((resolve) =>
      proc.on('exit', () => {
        if (this.proc === proc) this.proc = undefined;
        running.delete(this);
        resolve();
      }),
    );
    await waitFor(() => ready || this.proc !== proc, `nats-server ${this.name} to be ready`, 10000);
    if (this.proc !== proc) throw new Error(`nats-server ${this.name} exited at start:\n${this.logs.join('\n')}`);
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    proc.kill(signal);
    await this.exited;
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc) return;
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await this.exited;
    clearTimeout(t);
  }
}

function newStoreDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'topicast-nats-'));
  storeDirs.push(dir);
  return dir;
}

function authArgs(options: NatsServerOptions): string[] {
  return [...(options.user ? ['--user', options.user] : []), ...(options.pass ? ['--pass', options.pass] : [])];
}

/** One standalone nats-server on a free port, JetStream on unless `jetstream: false`. */
export async function startNatsServer(options: NatsServerOptions = {}): Promise<NatsServer> {
  const port = await freePort();
  const name = `n-${port}`;
  const js = options.jetstream !== false ? ['-js', '-sd', newStoreDir()] : [];
  const server = new ServerImpl(name, port, ['-a', '127.0.0.1', '-p', String(port), '-n', name, ...js, ...authArgs(options)]);
  await server.restart();
  return server;
}

export interface NatsCluster {
  readonly servers: NatsServer[];
  /** Every member's client URL, comma-separated (the form `--bus` takes). */
  readonly urls: string;
  /**
   * Resolves once JetStream answers again (a replicated stream can be made and deleted), e.g.
   * after a member was killed and restarted: the meta group may need seconds to elect a leader.
   */
  settled(): Promise<void>;
  stop(): Promise<void>;
}

/**
 * `size` nats-servers routed to each other (cluster name, routes on 127.0.0.1), each with
 * JetStream in its own temp store. Resolves once every member is ready and the JetStream meta
 * group has a leader (streams can be created).
 */
export async function startNatsCluster(size = 3, options: NatsServerOptions = {}): Promise<NatsCluster> {
  const ports = await Promise.all(Array.from({ length: size }, () => freePort()));
  const clusterPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const clusterName = `topicast-test-${ports[0]}`;
  const routes = clusterPorts.map((p) => `nats://127.0.0.1:${p}`).join(',');
  const servers = ports.map((port, i) => {
    const args = ['-a', '127.0.0.1', '-p', String(port), '-n', `${clusterName}-${i}`, '-js', '-sd', newStoreDir(), '--cluster_name', clusterName, '--cluster', `nats://127.0.0.1:${clusterPorts[i]}`, '--routes', routes, ...authArgs(options)];
    return new ServerImpl(`${clusterName}-${i}`, port, args);
  });
  await Promise.all(servers.map((s) => s.restart()));
  await waitFor(() => servers.some((s) => s.logs.some((l) => l.includes('JetStream cluster new metadata leader') || l.includes('Self is new JetStream cluster metadata leader'))), 'a JetStream meta leader', 20000);
  await jetStreamUsable(servers, options);
  return {
    servers,
    urls: servers.map((s) => s.url).join(','),
    settled: () => jetStreamUsable(servers, options),
    stop: async () => {
      await Promise.all(servers.map((s) => s.stop()));
    },
  };
}

/** Waits (up to 30 s) until a stream with one replica per running member can be made and deleted. */
async function jetStreamUsable(servers: ServerImpl[], options: NatsServerOptions): Promise<void> {
  const up = servers.filter((s) => s.proc !== undefined);
  const nc = await connect({ servers: up.map((s) => s.url), user: options.user, pass: options.pass });
  try {
    const deadline = Date.now() + 30000;
    for (;;) {
      try {
        const jsm = await nc.jetstreamManager({ timeout: 5000 }); // asks for the account: no meta leader, no answer
        await jsm.streams.add({ name: 'WARMUP', subjects: ['warmup.>'], num_replicas: Math.min(3, up.length) });
        await jsm.streams.delete('WARMUP');
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`JetStream cluster not usable after 30 s: ${(err as Error).message}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  } finally {
    await nc.close();
  }
}
