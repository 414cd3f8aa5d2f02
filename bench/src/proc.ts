/**
 * Child processes of the bench: every process is spawned through `spawnChild`,
 * registered by PID, and killed by PID when the bench exits for any reason
 * (normal end, exception, SIGINT/SIGTERM). CPU and memory of a PID are read
 * from /proc, which is what the whole method rests on: the broker's utime+stime
 * across a measured window, independent of the load generator.
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const live = new Map<number, ChildProcess>();
let hooked = false;

function killAll(): void {
  for (const [pid] of live) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone: nothing to clean up
    }
  }
  live.clear();
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', killAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      killAll();
      process.exit(130);
    });
  }
  process.on('uncaughtException', (err) => {
    console.error('bench: uncaught', err);
    killAll();
    process.exit(1);
  });
}

export interface Child {
  proc: ChildProcess;
  pid: number;
  /** stdout+stderr lines, last 200 kept for error messages. */
  logs: string[];
  exited: Promise<number | null>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** Spawns `cmd args`, pinned to `cpu` with taskset when given, and registers it for cleanup. */
export function spawnChild(cmd: string, args: string[], opts: SpawnOptions & { cpu?: number; ipc?: boolean; nofile?: number; onLine?: (line: string) => void } = {}): Child {
  hook();
  const { cpu, ipc, nofile, onLine, ...rest } = opts;
  // A raised descriptor limit (`ulimit -n`, hard and soft; root or CAP_SYS_RESOURCE may raise the hard one):
  // bash sets it and execs the program, so the PID stays the program's.
  const limited = nofile === undefined ? [cmd, ...args] : ['bash', '-c', `ulimit -n ${nofile} && exec "$0" "$@"`, cmd, ...args];
  const full = cpu === undefined ? limited : ['taskset', '-c', String(cpu), ...limited];
  const proc = spawn(full[0]!, full.slice(1), {
    stdio: ipc ? ['ignore', 'pipe', 'pipe', 'ipc'] : ['ignore', 'pipe', 'pipe'],
    ...rest,
  });
  if (proc.pid === undefined) throw new Error(`could not spawn ${full.join(' ')}`);
  const pid = proc.pid;
  live.set(pid, proc);
  const logs: string[] = [];
  const keep = (chunk: Buffer): void => {
    for (const line of chunk.toString().split('\n')) {
      if (!line) continue;
      onLine?.(line);
      logs.push(line);
      if (logs.length > 200) logs.shift();
      if (process.env.BENCH_DEBUG) console.error(`[${pid}] ${line}`);
    }
  };
  proc.stdout?.on('data', keep);
  proc.stderr?.on('data', keep);
  const exited = new Promise<number | null>((resolve) => {
    proc.on('exit', (code) => {
      live.delete(pid);
      resolve(code);
    });
  });
  return {
    proc,
    pid,
    logs,
    exited,
    async stop(graceMs = 2000) {
      if (!live.has(pid)) return;
      try {
        process.kill(pid, 'SIGTERM');
      } catch {
        return;
      }
      const timer = setTimeout(() => {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // exited in between
        }
      }, graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Seconds of CPU (user + system, all threads) the process has used so far. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may hold spaces, start after the last ')'.
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // f[0] is field 3 (state); utime is field 14, stime field 15. Clock ticks are 100/s on Linux.
  return (Number(f[11]) + Number(f[12])) / 100;
}

/** Resident set size in bytes (VmRSS). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = /VmRSS:\s+(\d+) kB/.exec(status);
  return m ? Number(m[1]) * 1024 : 0;
}

/** A currently free TCP port on 127.0.0.1 (for peers that cannot report an ephemeral one). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every `everyMs` until it returns true or `timeoutMs` passes (then throws `what`). */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await check()) return;
    await sleep(everyMs);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** Pins this process (all its threads) to `cpu`. */
export function pinSelf(cpu: number): void {
  const p = spawn('taskset', ['-a', '-p', '-c', String(cpu), String(process.pid)], { stdio: 'ignore' });
  p.on('error', () => undefined);
}

/** Busy seconds (everything but idle and iowait) of each CPU since boot, from /proc/stat. */
/** TCP segments this machine has sent so far (/proc/net/snmp OutSegs: every socket, ACKs included). */
export function tcpOutSegments(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Tcp:'));
  const names = lines[0]!.split(/\s+/);
  return Number(lines[1]!.split(/\s+/)[names.indexOf('OutSegs')]);
}

export function coreBusySeconds(): number[] {
  const out: number[] = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = /^cpu(\d+) (.*)$/.exec(line);
    if (!m) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    out[Number(m[1])] = (total - f[3]! - f[4]!) / 100;
  }
  return out;
}
