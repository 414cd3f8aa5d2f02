/**
 * Start-up checks of what the configuration points at: the --data directory, the --static
 * directory, and the ports. Each failure is a ConfigError whose one-line message names the
 * setting to change, so `topicast` exits 2 with that line instead of a stack trace or a hang.
 */
import { accessSync, constants, mkdirSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, resolve } from 'node:path';
import { ConfigError } from './config.js';

function reason(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOTDIR': return 'a part of the path is a file, not a directory';
    case 'EACCES': case 'EPERM': return 'permission denied';
    case 'EROFS': return 'the file system is read-only';
    case 'ENOSPC': return 'the disk is full';
    case 'ENOENT': return 'no such directory';
    default: return (err as Error).message;
  }
}

/**
 * Creates --data DIR (and its parents) if needed and proves it writable with a probe file.
 * Parents are created one level at a time: Node's recursive mkdir loops forever under /proc.
 * @throws ConfigError naming --data.
 */
export function ensureDataDir(dir: string): void {
  const fail = (why: string): never => {
    throw new ConfigError(`invalid setting --data: cannot use ${dir} (${why}); give a writable directory`);
  };
  const missing: string[] = [];
  for (let p = resolve(dir); ; p = dirname(p)) {
    let isDir: boolean;
    try {
      isDir = statSync(p).isDirectory();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') return fail(reason(err));
      missing.push(p);
      if (dirname(p) === p) break;
      continue;
    }
    if (!isDir) return fail(p === resolve(dir) ? 'it is a file, not a directory' : `${p} is a file, not a directory`);
    break;
  }
  for (const p of missing.reverse()) {
    try {
      mkdirSync(p);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') return fail(reason(err));
    }
  }
  const probe = `${resolve(dir)}/.topicast-write-test-${process.pid}`;
  try {
    writeFileSync(probe, '');
    unlinkSync(probe);
  } catch (err) {
    fail(reason(err));
  }
}

/** --static DIR must be a readable directory. @throws ConfigError naming --static. */
export function checkStaticDir(dir: string): void {
  try {
    if (!statSync(dir).isDirectory()) throw new ConfigError(`invalid setting --static: ${dir} is a file; give the directory to serve`);
    accessSync(dir, constants.R_OK | constants.X_OK);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`invalid setting --static: cannot serve ${dir} (${reason(err)}); give a readable directory`);
  }
}

/** Why `host:port` cannot be listened on, learnt by trying it with node:net (uWebSockets.js gives no errno). */
function probeListen(host: string, port: number): Promise<string | undefined> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', (err: NodeJS.ErrnoException) => done(err.code ?? err.message));
    server.listen({ host, port, exclusive: true }, () => server.close(() => done(undefined)));
  });
}

/**
 * The start-up error for a listener that failed: which address, why (in use, not permitted,
 * not this machine's address), and which setting to change (`--port`, `--mqtt-port`, ...).
 */
export async function listenFailure(err: unknown, flag: string, host: string, port: number): Promise<ConfigError> {
  const code = (err as NodeJS.ErrnoException).code ?? (await probeListen(host, port));
  const where = `cannot listen on ${host}:${port} (${flag} ${port})`;
  switch (code) {
    case 'EADDRINUSE':
      return new ConfigError(`${where}: the port is in use by another process; choose another ${flag}, or stop that process`);
    case 'EACCES':
    case 'EPERM':
      return new ConfigError(`${where}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); choose another ${flag}`);
    case 'EADDRNOTAVAIL':
      return new ConfigError(`${where}: ${host} is not an address of this machine; change --host`);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new ConfigError(`${where}: --host ${host} does not resolve; change --host`);
    default:
      return new ConfigError(`${where}: ${code ?? (err as Error).message}; choose another ${flag} or --host`);
  }
}
