/**
 * A real full disk: the log store on a 256 KiB tmpfs. Writes past the end reject with a
 * StoreError naming ENOSPC, reads keep working, writes succeed again once space is freed,
 * and a reopen finds every acknowledged write and nothing torn.
 * Needs `mount -t tmpfs` (root in a container that allows it); otherwise it skips and says
 * why — the same behaviour is covered with an injected ENOSPC in test/unit/broker/store/log.test.ts.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createMessage } from '@topicast/broker';
import { logModule } from '../unit/broker/store/load.js';

const { openLogRetainedStore, StoreError } = logModule;

function mountTmpfs(dir: string): string | undefined {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir], { stdio: 'pipe' });
    return undefined;
  } catch (err) {
    return `mount -t tmpfs is not permitted here (${String((err as { stderr?: Buffer }).stderr ?? err).trim()})`;
  }
}

test('store: a full disk rejects writes with ENOSPC; reads and live service go on; freeing space recovers', async (t) => {
  const mnt = mkdtempSync(join(tmpdir(), 'topicast-full-'));
  const why = mountTmpfs(mnt);
  if (why) {
    console.log(`# skipped: ${why}`);
    rmSync(mnt, { recursive: true, force: true });
    t.skip(why);
    return;
  }
  const opened: { close(): Promise<void> }[] = [];
  try {
    const filler = join(mnt, 'filler');
    writeFileSync(filler, Buffer.alloc(64 * 1024, 1)); // space to give back later
    const dir = join(mnt, 'data');
    const store = await openLogRetainedStore(dir);
    opened.push(store);
    const value = Buffer.alloc(4096, 7);
    const acked: string[] = [];
    let failure: unknown;
    let failedTopic = '';
    for (let i = 0; i < 200 && failure === undefined; i++) {
      const topic = `big/${i}`;
      try {
        await store.set(createMessage(topic, value, true));
        acked.push(topic);
      } catch (err) {
        failure = err;
        failedTopic = topic;
      }
    }
    assert.ok(failure instanceof StoreError, `a write failed once the disk was full (${acked.length} acknowledged)`);
    assert.equal(failure.code, 'ENOSPC');
    assert.match(failure.message, /no space left on device \(ENOSPC\)/);
    assert.ok(acked.length > 10);
    assert.equal(store.get(acked[0]!)?.payload.length, 4096, 'reads keep working');
    assert.equal(store.stats.writeErrors, 1);

    unlinkSync(filler);
    await store.set(createMessage('after/freed', Buffer.from('ok'), true));
    await store.close();

    const again = await openLogRetainedStore(dir);
    opened.push(again);
    for (const topic of acked) assert.ok(again.get(topic), `${topic} survived`);
    assert.equal(again.get(failedTopic), undefined, 'the rejected write was cut off');
    assert.equal(new TextDecoder().decode(again.get('after/freed')?.payload), 'ok');
    assert.equal(again.stats.truncatedBytes, 0);
  } finally {
    for (const s of opened) await s.close(); // idempotent; the mount cannot go while a file is open
    execFileSync('umount', [mnt]);
    rmSync(mnt, { recursive: true, force: true });
  }
});
