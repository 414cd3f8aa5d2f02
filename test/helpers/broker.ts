/**
 * Starts the real broker process (broker/dist/main.js) on 127.0.0.1 with
 * ephemeral ports and stops it at the end of the test file. The broker logs
 * a JSON line `{"msg":"listening","port":…,"mqttPort":…}` once it serves.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after } from 'node:test';

export const BROKER_MAIN = fileURLToPath(new URL('../../../broker/dist/main.js', import.meta.url));

export interface BrokerProcess {
  port: number;
  mqttPort: number;
  /** ws://127.0.0.1:PORT/ws */
  url: string;
  /** http://127.0.0.1:PORT */
  httpUrl: string;
  proc: ChildProcess;
  /** Every stdout/stderr line so far. */
  logs: string[];
  /** SIGTERM, then SIGKILL after 5 s; resolves when the process has exited. */
  stop(): Promise<void>;
  kill(signal: NodeJS.Signals): void;
  /** Resolves with the exit code (or the signal) once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const running = new Set<BrokerProcess>();
// Registered when the test file imports this module, so it is the file's hook (an `after` called
// inside a test would attach to that test only): every broker still running stops at the end of the file.
after(async () => {
  await Promise.all([...running].map((b) => b.stop()));
});
// Last resort: whatever is left dies with the test process.
process.on('exit', () => {
  for (const b of running) b.proc.kill('SIGKILL');
});

export interface StartOptions {
  args?: string[];
  env?: Record<string, string>;
  /** Fixed port (e.g. to restart on the same port); default 0 (ephemeral). */
  port?: number;
  /** Turn the MQTT TCP listener off; by default it listens on a free port (`mqttPort`). */
  mqttOff?: boolean;
  timeoutMs?: number;
  /** Start under `ulimit -n` this many file descriptors (through `sh -c`, as an operator would). */
  maxOpenFiles?: number;
  /** The Node binary to run it with (default: the one running the tests), e.g. Node 18 for the engines test. */
  node?: string;
  /** Arguments before the broker's own, e.g. the script of a release package (default: broker/dist/main.js). */
  command?: string[];
  /** Working directory (default: the test process's), for relative paths in `args`. */
  cwd?: string;
}

export async function startBroker(options: StartOptions = {}): Promise<BrokerProcess> {
  for (let attempt = 1; ; attempt++) {
    const args = [...(options.command ?? [BROKER_MAIN]), '--host', '127.0.0.1', '--port', String(options.port ?? 0), ...(options.args ?? [])];
    // For the broker, --mqtt-port 0 turns MQTT off (DESIGN.md). Tests mean "any free port" by it,
    // unless they ask for `mqttOff`; the TCP listener has no ephemeral mode of its own.
    const i = args.indexOf('--mqtt-port');
    let picked = false;
    if (options.mqttOff) {
      if (i >= 0) args.splice(i, 2);
      args.push('--mqtt-port', '0');
    } else if (i < 0 || args[i + 1] === '0') {
      if (i >= 0) args.splice(i, 2);
      args.push('--mqtt-port', String(await freePort()));
      picked = true;
    }
    try {
      return await startWith(args, options);
    } catch (err) {
      // The port freePort() picked can be taken by another process before the broker binds it
      // (tests of other files run meanwhile): pick again rather than fail the file.
      if (!picked || attempt === 3 || !/\(--mqtt-port \d+\): the port is in use/.test((err as Error).message)) throw err;
    }
  }
}

async function startWith(args: string[], options: StartOptions): Promise<BrokerProcess> {
  if (!args.includes('--log-level')) args.push('--log-level', 'info');
  const node = options.node ?? process.execPath;
  const [file, argv] = options.maxOpenFiles === undefined
    ? [node, args]
    : ['sh', ['-c', `ulimit -n ${options.maxOpenFiles} && exec "$0" "$@"`, node, ...args]];
  const proc = spawn(file, argv, {
    ...(options.cwd !== undefined ? { cwd: options.cwd } : {}),
    env: { ...process.env, ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.on('exit', (code, signal) => resolve({ code, signal }));
  });
  const ready = new Promise<{ port: number; mqttPort: number }>((resolve, reject) => {
    const onLine = (line: string): void => {
      logs.push(line);
      if (!line.includes('"listening"')) return;
      try {
        const j = JSON.parse(line) as { port: number; mqttPort: number };
        resolve({ port: j.port, mqttPort: j.mqttPort });
      } catch {
        /* not our JSON line */
      }
    };
    for (const stream of [proc.stdout!, proc.stderr!]) {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n')) >= 0) {
          onLine(buf.slice(0, i));
          buf = buf.slice(i + 1);
        }
      });
    }
    void exited.then(({ code, signal }) => reject(new Error(`broker exited before listening (code ${code}, signal ${signal}):\n${logs.join('\n')}`)));
  });
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`broker did not start within ${options.timeoutMs ?? 10000} ms:\n${logs.join('\n')}`)), options.timeoutMs ?? 10000);
  });
  let ports: { port: number; mqttPort: number };
  try {
    ports = await Promise.race([ready, timeout]);
  } catch (err) {
    proc.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
  const broker: BrokerProcess = {
    ...ports,
    url: `ws://127.0.0.1:${ports.port}/ws`,
    httpUrl: `http://127.0.0.1:${ports.port}`,
    proc,
    logs,
    exited,
    kill(signal) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
    async stop() {
      running.delete(broker);
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGCONT'); // in case a test froze it
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
  running.add(broker);
  return broker;
}

/** A TCP port free right now on 127.0.0.1 (the kernel's pick, released at once). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Waits for `predicate` to hold, polling; fails after `timeoutMs` with `what`. */
export async function waitFor(predicate: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** `promise`, or a rejection naming `what` once `timeoutMs` pass first (a step that must not hang a test silently). */
export async function within<T>(promise: Promise<T>, what: string, timeoutMs: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

export { once };
