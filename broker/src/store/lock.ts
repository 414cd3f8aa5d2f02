/**
 * One process per data directory: two brokers appending to the same log would
 * interleave records. The lock is a file holding the owner's pid and, on Linux,
 * its start time from /proc, so a pid reused after `kill -9` (containers restart
 * with the same small pids) is recognised as stale instead of blocking start-up.
 */
import { readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const LOCK_FILE = 'LOCK';
/** Directories locked by this process (a second open in the same process is refused too). */
const held = new Set<string>();

function startTime(pid: number): string {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22 (starttime) counted after the parenthesised command name, which may hold spaces.
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? '';
  } catch {
    return '';
  }
}

function alive(pid: number, started: string): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  return started === '' || startTime(pid) === started;
}

/** Takes the lock on `dir` or throws naming the owner. Returns the release function. */
export function lockDirectory(dir: string): () => void {
  const path = join(dir, LOCK_FILE);
  if (held.has(dir)) throw new Error(`data directory ${dir} is already open in this process`);
  const mine = `${process.pid} ${startTime(process.pid)}\n`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, mine, { flag: 'wx' });
      held.add(dir);
      return function releaseDirectoryLock() {
        held.delete(dir);
        try {
          unlinkSync(path);
        } catch {
          // Already gone (someone removed the directory): nothing left to release.
        }
      };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    const [pidText = '', started = ''] = readFileSync(path, 'utf8').trim().split(' ');
    const pid = Number(pidText);
    if (Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && alive(pid, started)) {
      throw new Error(`data directory ${dir} is in use by process ${pid} (lock file ${path})`);
    }
    unlinkSync(path); // stale: its owner is gone
  }
  throw new Error(`could not take the lock file ${path}`);
}
