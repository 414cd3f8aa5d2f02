import assert from 'node:assert/strict';
import { appendFileSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { createMessage, Router, type Message, type Subscriber } from '@topicast/broker';
import { retainedContract } from '../core/retained-contract.js';
import { bytes, files, retained, retainedStoreFixture, text, type LogRetainedStore } from './fixture.js';
import { logModule, recordModule } from './load.js';

const { openLogRetainedStore, nodeAppendIo, StoreError } = logModule;
type AppendIo = typeof nodeAppendIo;

const { freshDir, openStore } = retainedStoreFixture('topicast-store-');
const newestSegment = (dir: string): string => join(dir, files(dir, '.tcl').at(-1)!);

retainedContract('LogRetainedStore', () => openStore(freshDir()));

test('LogRetainedStore: reopen after close keeps values, qos, properties, $ topics and deletes', async () => {
  const dir = freshDir();
  const s = await openStore(dir);
  const properties = { contentType: 'text/plain', userProperties: { unit: 'C' }, correlationData: new Uint8Array([9]) };
  await Promise.all([
    s.set(createMessage('devices/a/temp', bytes('21.5'), true, undefined, 1, properties)),
    s.set(retained('devices/b/temp', 'gone')),
    s.set(retained('$SYS/broker/version', '1')),
    s.set(retained('devices/a/temp', '22.0', 2)),
  ]);
  await s.set(createMessage('devices/b/temp', new Uint8Array(0), true));
  await s.set(createMessage('devices/c/info', bytes('x'), true, undefined, 0, properties));
  await s.close();

  const r = await openStore(dir);
  assert.equal(r.size, 3);
  assert.equal(text(r.get('devices/a/temp')), '22.0');
  assert.equal(r.get('devices/a/temp')?.qos, 2);
  assert.equal(r.get('devices/a/temp')?.properties, undefined, 'a later set without properties replaces them');
  assert.equal(r.get('devices/b/temp'), undefined);
  assert.equal(text(r.get('$SYS/broker/version')), '1');
  assert.deepEqual(r.get('devices/c/info')?.properties?.userProperties, { unit: 'C' });
  assert.equal(r.get('devices/c/info')?.retain, true);
  assert.equal(r.bytes, 4 + 1 + 1);
  assert.deepEqual(r.match('devices/+/temp'), ['devices/a/temp']);
});

test('LogRetainedStore: the writes of one event-loop turn share one batch (one fdatasync)', async () => {
  const s = await openStore(freshDir());
  const before = s.stats.batches;
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 500; i++) writes.push(s.set(retained(`t/${i}`, String(i))));
  await Promise.all(writes);
  assert.equal(s.stats.batches - before, 1);
  assert.equal(s.stats.writes, 500);
});

test('LogRetainedStore: a torn record at the end is cut off at start-up; earlier writes survive', async () => {
  const dir = freshDir();
  const s = await openStore(dir);
  for (let i = 0; i < 20; i++) await s.set(retained(`k/${i}`, `v${i}`));
  await s.close();
  // A crash mid-append: the first bytes of a record, then garbage of a half-written page.
  const partial = recordModule.encodeRecord(retained('k/torn', 'never acknowledged'));
  appendFileSync(newestSegment(dir), Buffer.concat([partial.subarray(0, partial.length - 5)]));
  const tornSize = statSync(newestSegment(dir)).size;

  const r = await openStore(dir);
  assert.equal(r.size, 20);
  assert.equal(r.get('k/torn'), undefined);
  assert.equal(r.stats.truncatedBytes, partial.length - 5);
  assert.ok(tornSize > 0);
  await r.set(retained('k/after', 'ok'));
  await r.close();

  appendFileSync(newestSegment(dir), Buffer.from('\x00\x00\x00\x00garbage'));
  const again = await openStore(dir);
  assert.equal(again.size, 21, 'writes after a recovery append cleanly');
  assert.equal(text(again.get('k/after')), 'ok');
  assert.equal(again.stats.truncatedBytes, 11);
});

test('LogRetainedStore: a last record that fails its CRC is a torn write and is cut; a bad one before others is damage (damage.test.ts)', async () => {
  const dir = freshDir();
  const s = await openStore(dir);
  await s.set(retained('a', '1'));
  await s.set(retained('b', '2'));
  await s.close();
  const seg = newestSegment(dir);
  const buf = Buffer.from(readFileSync(seg));
  buf[buf.length - 3]! ^= 0xff; // inside the last record's body
  writeFileSync(seg, buf);
  const r = await openStore(dir);
  assert.deepEqual(r.match('#'), ['a']);
  assert.equal(r.stats.truncatedBytes, recordModule.encodeRecord(retained('b', '2')).length);
});

test('LogRetainedStore: compaction keeps exactly the live set while writes continue', async () => {
  let compactions = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 40 }), fc.option(fc.string({ minLength: 1, maxLength: 40 }), { nil: undefined })), { minLength: 1, maxLength: 400, size: 'medium' }),
      async (ops) => {
        const dir = freshDir();
        const s = await openStore(dir, { compactMinBytes: 128 });
        const model = new Map<string, string>();
        const pending: Promise<void>[] = [];
        for (const [i, [key, value]] of ops.entries()) {
          const topic = key % 5 === 0 ? `$SYS/k/${key}` : `k/${key % 7}/${key}`;
          pending.push(s.set(createMessage(topic, value === undefined ? new Uint8Array(0) : bytes(value), true)));
          if (value === undefined) model.delete(topic);
          else model.set(topic, value);
          if (i % 25 === 0) await Promise.all(pending.splice(0)); // let batches, rotations and compactions interleave
        }
        await Promise.all(pending);
        await s.close();
        compactions += s.stats.compactions;
        const r = await openStore(dir);
        const got = new Map([...r.match('#'), ...r.match('$SYS/#')].map((t) => [t, text(r.get(t))!]));
        assert.deepEqual(got, model);
        assert.ok(files(dir, '.tcs').length <= 1, 'one snapshot at a time');
        await r.close();
      },
    ),
    { numRuns: 25 },
  );
  assert.ok(compactions > 0, `compactions ran to the end (${compactions})`);
});

test('LogRetainedStore: compaction replaces the log by a snapshot; disk stays near the live size', async () => {
  const dir = freshDir();
  const s = await openStore(dir, { compactMinBytes: 64 * 1024 });
  for (let round = 0; round < 40; round++) {
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) writes.push(s.set(retained(`room/${i}`, `reading ${round}`)));
    await Promise.all(writes);
  }
  for (let i = 0; i < 100 && s.stats.compactions === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(s.stats.compactions >= 1);
  const disk = s.stats.snapshotBytes + s.stats.logBytes;
  assert.ok(disk < 3 * 64 * 1024 + 200 * 64, `disk ${disk} bytes for 200 live topics after 8000 writes`);
  await s.close();
  const r = await openStore(dir);
  assert.equal(r.size, 200);
  assert.equal(text(r.get('room/7')), 'reading 39');
});

test('LogRetainedStore: compaction also runs under sustained writes that never leave the writer idle', async () => {
  const s = await openStore(freshDir(), { compactMinBytes: 16 * 1024 });
  let n = 0;
  const started = Date.now();
  // A write every turn, never awaited: there is always a batch waiting when one is synced.
  while (s.stats.compactions === 0 && Date.now() - started < 5000) {
    for (let j = 0; j < 20; j++, n++) void s.set(retained(`hot/${n % 500}`, String(n)));
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(s.stats.compactions >= 1, `compacted while ${n} writes kept coming (log ${s.stats.logBytes} bytes)`);
});

test('LogRetainedStore: files left by a crash mid-compaction are ignored and removed', async () => {
  const dir = freshDir();
  const s = await openStore(dir, { compactMinBytes: 256 });
  for (let i = 0; i < 50; i++) await s.set(retained(`c/${i % 10}`, `v${i}`));
  for (let i = 0; i < 100 && s.stats.compactions === 0; i++) await new Promise((r) => setTimeout(r, 5));
  await s.close();
  const snapshot = files(dir, '.tcs').at(-1)!;
  const covered = Number(/(\d+)/.exec(snapshot)![1]);
  // A segment the snapshot already covers (crash before cleanup) holding an old value, and an unfinished snapshot.
  const stale = join(dir, `log-${String(covered).padStart(12, '0')}.tcl`);
  writeFileSync(stale, recordModule.encodeRecord(retained('c/3', 'stale')));
  writeFileSync(join(dir, `snapshot-${String(covered + 1).padStart(12, '0')}.tcs.tmp`), 'half a snapshot');
  const r = await openStore(dir);
  assert.equal(text(r.get('c/3')), 'v43', 'a segment covered by the snapshot is not replayed');
  assert.deepEqual(files(dir, '.tmp'), []);
  assert.ok(!files(dir, '.tcl').includes(`log-${String(covered).padStart(12, '0')}.tcl`));
});

test('LogRetainedStore: close during a compaction stops it cleanly; nothing is lost', async () => {
  const dir = freshDir();
  // Writes pass through until `hold`; then they wait for `release` (the snapshot's first slice).
  let hold = false;
  let held = 0;
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const io: AppendIo = {
    ...nodeAppendIo,
    async write(fd, buf, offset, length, position) {
      if (hold) {
        held++;
        await gate;
      }
      return nodeAppendIo.write(fd, buf, offset, length, position);
    },
  };
  const s = await openStore(dir, { compactMinBytes: 1024, io });
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 5000; i++) writes.push(s.set(retained(`bulk/${i % 100}/${i}`, `v${i}`)));
  await Promise.all(writes);
  hold = true; // the compaction this batch started writes its snapshot next
  for (let i = 0; i < 5000 && held === 0; i++) await new Promise((r) => setTimeout(r, 1)); // rotation syncs the directory first
  assert.equal(held, 1, 'the snapshot write is held');
  const closed = s.close();
  release();
  await closed;
  assert.equal(s.stats.compactions, 0, 'stopped, not finished');
  assert.deepEqual(files(dir, '.tmp'), [], 'the unfinished snapshot was removed');
  assert.deepEqual(files(dir, '.tcs'), []);
  const r = await openStore(dir);
  assert.equal(r.size, 5000);
  assert.equal(text(r.get('bulk/7/4907')), 'v4907');
});

test('LogRetainedStore: a topic rewritten during a compaction is left out of the snapshot, unless that write failed', async () => {
  for (const fails of [false, true]) {
    const dir = freshDir();
    let hold = false;
    let held = 0;
    let failNext = false;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const io: AppendIo = {
      ...nodeAppendIo,
      async write(fd, buf, offset, length, position) {
        if (failNext) {
          failNext = false;
          throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
        }
        if (hold && held++ === 0) await gate; // the snapshot's first slice
        return nodeAppendIo.write(fd, buf, offset, length, position);
      },
    };
    const s = await openStore(dir, { compactMinBytes: 1024, io });
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 4000; i++) writes.push(s.set(retained(`many/${i}`, `old ${i}`))); // several 64 KiB slices
    await Promise.all(writes);
    hold = true;
    for (let i = 0; i < 5000 && held === 0; i++) await new Promise((r) => setTimeout(r, 1));
    assert.equal(held, 1, 'the snapshot write is held');
    // Rewrite the last topic in the walk order while the snapshot is still being written.
    failNext = fails;
    const rewrite = s.set(retained('many/3999', 'new'));
    if (fails) await assert.rejects(rewrite, /ENOSPC/);
    else await rewrite;
    release();
    for (let i = 0; i < 5000 && s.stats.compactions + s.stats.compactionErrors === 0; i++) await new Promise((r) => setTimeout(r, 1));
    assert.equal(s.stats.compactions, fails ? 0 : 1);
    assert.equal(s.stats.compactionErrors, fails ? 1 : 0, 'a compaction that relied on a failed write is dropped');
    await s.close();
    if (!fails) assert.deepEqual(snapshotTopics(dir).filter((t) => t === 'many/3999'), [], 'left to the segment after the snapshot');
    const r = await openStore(dir);
    assert.equal(r.size, 4000);
    assert.equal(text(r.get('many/3999')), fails ? 'old 3999' : 'new', 'the acknowledged value survives either way');
    assert.equal(text(r.get('many/0')), 'old 0');
    await r.close();
  }
});

/** Topics of the records in the newest snapshot file, in file order. */
function snapshotTopics(dir: string): string[] {
  const buf = readFileSync(join(dir, files(dir, '.tcs').at(-1)!));
  const out: string[] = [];
  for (let pos = 0; ; ) {
    const r = recordModule.decodeRecordAt(buf, pos);
    if (typeof r !== 'object') break;
    out.push(r.entry.kind === recordModule.RecordKind.set ? r.entry.message.topic : r.entry.topic);
    pos = r.next;
  }
  return out;
}

/** Appends through node:fs until `failAfter` writes, then fails like a full disk; `free()` lifts it. */
function fullDiskIo(failAfter: number): AppendIo & { free(): void; failures: number } {
  let writes = 0;
  let full = false;
  const io = {
    failures: 0,
    free() {
      full = false;
      writes = -Infinity;
    },
    async write(fd: number, buf: Buffer, offset: number, length: number, position: number): Promise<number> {
      if (++writes > failAfter) full = true;
      if (!full) return nodeAppendIo.write(fd, buf, offset, length, position);
      io.failures++;
      // Like a real full disk: the first part of the batch lands, the rest fails.
      if (length > 4) await nodeAppendIo.write(fd, buf, offset, 4, position);
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });
    },
    fdatasync: nodeAppendIo.fdatasync,
    ftruncate: nodeAppendIo.ftruncate,
  };
  return io;
}

test('LogRetainedStore: disk full rejects with a clear error; reads and later writes keep working', async () => {
  const dir = freshDir();
  const io = fullDiskIo(2);
  const errors: Error[] = [];
  const s = await openStore(dir, { io, onError: (e) => errors.push(e) });
  await s.set(retained('a', '1'));
  await s.set(retained('b', '2'));
  const failed = s.set(retained('c', '3'));
  await assert.rejects(failed, (err: Error & { code?: string }) => {
    assert.ok(err instanceof StoreError);
    assert.equal(err.code, 'ENOSPC');
    assert.match(err.message, /no space left on device \(ENOSPC\)/);
    assert.ok(err.message.includes(dir));
    return true;
  });
  assert.equal(errors.length, 1);
  assert.equal(s.stats.writeErrors, 1);
  assert.equal(text(s.get('c')), '3', 'memory keeps serving the value; only its durability failed');
  assert.deepEqual(s.match('+').sort(), ['a', 'b', 'c']);

  io.free();
  await s.set(retained('d', '4'));
  await s.close();
  const r = await openStore(dir);
  assert.deepEqual(r.match('+').sort(), ['a', 'b', 'd'], 'the failed batch was cut off, nothing after it is lost');
  assert.equal(r.stats.truncatedBytes, 0, 'no torn bytes were left behind');
});

test('LogRetainedStore: with a failing store the router still delivers live messages', async () => {
  const io = fullDiskIo(0);
  const s = await openStore(freshDir(), { io });
  const router = new Router(s);
  const got: string[] = [];
  const sub: Subscriber = { routerStamp: 0, deliver: (m) => got.push(text(m)!) };
  router.subscribe(sub, 'live/#', { qos: 0 });
  const first = router.publish(retained('live/x', 'one'));
  const second = router.publish(createMessage('live/y', bytes('two')));
  assert.equal(first.deliveries, 1);
  assert.equal(second.deliveries, 1);
  assert.deepEqual(got, ['one', 'two']);
  await assert.rejects(Promise.resolve(first.durable), /ENOSPC/);
});

test('LogRetainedStore: writes after close are refused; close is idempotent', async () => {
  const s = await openStore(freshDir());
  await s.set(retained('a', '1'));
  await Promise.all([s.close(), s.close()]);
  await assert.rejects(s.set(retained('b', '2')), /closed/);
  assert.equal(text(s.get('a')), '1', 'reads keep working from memory');
  assert.equal(s.get('b'), undefined);
});

test('LogRetainedStore: close waits for pending writes to be durable', async () => {
  const dir = freshDir();
  const s = await openStore(dir);
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 100; i++) writes.push(s.set(retained(`w/${i}`, 'v')));
  await s.close();
  let settled = 0;
  for (const w of writes) await w.then(() => settled++);
  assert.equal(settled, 100);
  const r = await openStore(dir);
  assert.equal(r.size, 100);
});

test('LogRetainedStore: one process per data directory; a dead owner\'s lock is taken over', async () => {
  const dir = freshDir();
  const s = await openStore(dir);
  await assert.rejects(openLogRetainedStore(dir), /already open in this process/);
  await s.close();
  // Left behind by a process that no longer exists (pid far above pid_max).
  writeFileSync(join(dir, 'LOCK'), '4194999 12345\n');
  const r = await openStore(dir);
  assert.equal(r.size, 0);
  await r.close();
  // Held by a live process (pid 1, whose start time we read from /proc like the store does).
  const stat = readFileSync('/proc/1/stat', 'utf8');
  writeFileSync(join(dir, 'LOCK'), `1 ${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]}\n`);
  await assert.rejects(openLogRetainedStore(dir), /in use by process 1/);
});

test('openLogRetainedStore: a directory that cannot be used fails with one line naming it and the cause', async () => {
  const file = join(freshDir(), 'not-a-directory');
  writeFileSync(file, 'x');
  await assert.rejects(openLogRetainedStore(join(file, 'retained')), (err: Error & { code?: string }) => {
    assert.ok(err instanceof StoreError);
    assert.equal(err.code, 'ENOTDIR');
    assert.match(err.message, /^retained store in .*not-a-directory\/retained: open failed: ENOTDIR/);
    assert.ok(!err.message.includes('\n'));
    return true;
  });
});
