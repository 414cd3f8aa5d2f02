/**
 * A small tmpfs for full-disk tests: a real ENOSPC from the kernel, not an injected one.
 * Mounting needs privileges; where it is not permitted the test is skipped with the reason.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

/** Mounts a tmpfs of `size` (e.g. `256k`) at `parent/name`, runs `fn` with its path, then unmounts it. */
export async function withTmpfs(t: TestContext, parent: string, name: string, size: string, fn: (mnt: string) => Promise<void>): Promise<void> {
  const mnt = join(parent, name);
  mkdirSync(mnt, { recursive: true });
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', mnt], { stdio: 'pipe' });
  } catch (err) {
    const why = `mount -t tmpfs is not permitted here (${String((err as { stderr?: Buffer }).stderr ?? err).trim()})`;
    console.log(`# skipped: ${why}`);
    t.skip(why);
    return;
  }
  try {
    await fn(mnt);
  } finally {
    execFileSync('umount', [mnt]);
  }
}
