/**
 * Damage on disk in the store engine (broker/src/store/append-log.ts, STORAGE.md "Damage"; issue 15):
 * a byte flipped in a snapshot or in a segment that is not the last, a segment cut short or
 * deleted, a zeroed snapshot, a bad record in the middle of the newest segment: the store refuses
 * to open with a DataCorruptionError naming the file and the byte offset. With `recoverInto` the
 * damaged files move there, what is intact is loaded (records after a damaged stretch too) and kept
 * as a new snapshot, and the loss is reported. A torn write at the very end of the newest segment
 * is still cut off, and reported with its byte count. Files written before file marks existed load.
 */
import assert from 'node:assert/strict';
import { appendFileSync, cpSync, existsSync, readFileSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import { bytes, files, retained, retainedStoreFixture, text, type LogRetainedStore } from './fixture.js';
import { logModule, recordModule } from './load.js';

const { openLogRetainedStore, DataCorruptionError } = logModule;

const { freshDir, openStore, keep } = retainedStoreFixture('topicast-damage-');
const pad = (n: number): string => String(n).padStart(12, '0');

/** Refusal: one DataCorruptionError naming the file (and the offset when given). */
async function refused(dir: string, file: string, offset?: number): Promise<InstanceType<typeof DataCorruptionError>> {
  const err = await openLogRetainedStore(dir).then(
    (s) => {
      keep(s);
      assert.fail(`opened a damaged store (${file})`);
    },
    (e: unknown) => e as Error,
  );
  assert.ok(err instanceof DataCorruptionError, String(err));
  assert.equal(err.file, join(dir, file));
  if (offset !== undefined) assert.equal(err.offset, offset, err.message);
  assert.ok(!err.message.includes('\n'), 'one line');
  assert.match(err.message, new RegExp(`${file.replace(/\./g, '\\.')} is damaged at byte \\d+`));
  return err;
}

/** A store with `n` topics compacted into a snapshot, then one segment of later writes. */
async function withSnapshot(n: number): Promise<{ dir: string; snapshot: string }> {
  const dir = freshDir();
  const s = await openStore(dir, { compactMinBytes: 1024 });
  const writes: Promise<void>[] = [];
  for (let i = 0; i < n; i++) writes.push(s.set(retained(`snap/${i}`, `value ${i}`)));
  await Promise.all(writes);
  for (let i = 0; i < 500 && s.stats.compactions === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(s.stats.compactions >= 1);
  await s.close();
  // One segment after the snapshot: a restart and one write.
  const t = await openStore(dir);
  await t.set(retained('after/snapshot', 'later'));
  await t.close();
  return { dir, snapshot: files(dir, '.tcs').at(-1)! };
}

/** Three segments (one per run), `per` topics each: seg/<run>/<i>. */
async function threeSegments(per: number): Promise<{ dir: string; segments: string[] }> {
  const dir = freshDir();
  for (let run = 0; run < 3; run++) {
    const s = await openStore(dir);
    await Promise.all(Array.from({ length: per }, (_, i) => s.set(retained(`seg/${run}/${i}`, `v${run}.${i}`))));
    await s.close();
  }
  const segments = files(dir, '.tcl');
  assert.equal(segments.length, 3);
  return { dir, segments };
}

function flip(path: string, offset: number): void {
  const buf = readFileSync(path);
  buf[offset] = buf[offset]! ^ 0x5a;
  writeFileSync(path, buf);
}

test('a byte flipped in the snapshot at several offsets: refused, naming the snapshot; recovery loads every intact topic', async () => {
  for (const where of [0, 1000, 0.5, -3] as const) {
    const { dir, snapshot } = await withSnapshot(2000);
    const path = join(dir, snapshot);
    const size = statSync(path).size;
    const offset = where === 0.5 ? Math.floor(size / 2) : where < 0 ? size + where : where;
    flip(path, offset);
    await refused(dir, snapshot);
    // Nothing was changed by the refusal.
    assert.deepEqual(files(dir, '.tcs'), [snapshot]);

    const quarantine = join(freshDir(), 'q');
    const r = await openStore(dir, { recoverInto: quarantine });
    const report = r.loadReport.recovered!;
    assert.ok(report, `recovered (flip at ${offset})`);
    assert.ok(existsSync(join(quarantine, snapshot)), 'the damaged snapshot is in quarantine');
    assert.equal(readFileSync(join(quarantine, snapshot)).length, size, 'moved untouched');
    assert.match(readFileSync(join(quarantine, 'DAMAGE.txt'), 'utf8'), new RegExp(snapshot));
    assert.equal(report.damage[0]!.file, snapshot);
    // A flip damages one record (or only the header / end mark): everything else is there.
    assert.ok(r.size >= 2000 && r.size <= 2001, `${r.size} topics loaded after a flip at ${offset}`);
    assert.equal(text(r.get('after/snapshot')), 'later');
    await r.close();
    // The recovered state is a clean store: it opens without the flag, and takes writes.
    const again = await openStore(dir);
    assert.equal(again.size, r.size);
    assert.equal(again.loadReport.recovered, undefined);
    await again.set(retained('snap/new', 'x'));
    await again.close();
    assert.equal((await openStore(dir)).size, r.size + 1);
  }
});

test('a zeroed snapshot is refused; recovery keeps the segments after it', async () => {
  const { dir, snapshot } = await withSnapshot(500);
  writeFileSync(join(dir, snapshot), Buffer.alloc(statSync(join(dir, snapshot)).size));
  await refused(dir, snapshot, 0);
  const quarantine = join(freshDir(), 'q');
  const r = await openStore(dir, { recoverInto: quarantine });
  assert.equal(r.size, 1, 'only the write after the snapshot survives');
  assert.equal(text(r.get('after/snapshot')), 'later');
  assert.ok(r.loadReport.recovered!.lostBytes > 0);
  assert.ok(existsSync(join(quarantine, snapshot)));
});

test('a deleted snapshot is noticed: the segment after it names what is missing', async () => {
  const { dir, snapshot } = await withSnapshot(300);
  unlinkSync(join(dir, snapshot));
  const err = await refused(dir, `log-${pad(0)}.tcl`, 0);
  assert.match(err.message, /missing/);
});

test('a byte flipped in segment 0 (not the last): refused; recovery loads the records before and after the damage', async () => {
  const { dir, segments } = await threeSegments(300);
  const path = join(dir, segments[0]!);
  const offset = Math.floor(statSync(path).size / 2);
  flip(path, offset);
  const err = await refused(dir, segments[0]!);
  assert.ok(err.offset <= offset && err.offset > offset - 100, `the damaged record starts near the flip (${err.offset}, flip at ${offset})`);
  const r = await openStore(dir, { recoverInto: join(freshDir(), 'q') });
  assert.ok(r.size >= 899 && r.size < 900, `one record lost, ${r.size} of 900 topics loaded`);
  assert.equal(text(r.get('seg/0/299')), 'v0.299', 'records after the damage in the same file are loaded');
  assert.equal(text(r.get('seg/2/0')), 'v2.0');
  assert.equal(r.loadReport.recovered!.damage.length, 1);
});

test('a middle segment cut short (inside a record, or at a record boundary) is refused', async () => {
  for (const cut of ['inside', 'boundary'] as const) {
    const { dir, segments } = await threeSegments(200);
    const path = join(dir, segments[1]!);
    const size = statSync(path).size;
    const record = recordModule.encodeRecord(retained('seg/1/199', 'v1.199')).length;
    truncateSync(path, cut === 'inside' ? size - 5 : size - record);
    const err = await refused(dir, segments[1]!);
    if (cut === 'boundary') assert.match(err.message, /cut short/);
    const r = await openStore(dir, { recoverInto: join(freshDir(), 'q') });
    assert.equal(r.size, 599);
    assert.equal(r.get('seg/1/199'), undefined);
    assert.ok(r.loadReport.recovered!.lostBytes >= 5);
  }
});

test('a deleted middle segment is refused, naming it; recovery loads the others', async () => {
  const { dir, segments } = await threeSegments(100);
  unlinkSync(join(dir, segments[1]!));
  const err = await refused(dir, segments[1]!, 0);
  assert.match(err.message, /missing/);
  const quarantine = join(freshDir(), 'q');
  const r = await openStore(dir, { recoverInto: quarantine });
  assert.equal(r.size, 200);
  assert.ok(r.loadReport.recovered!.lostBytes > 0, 'the size of the missing segment is known from the next one');
  assert.deepEqual(files(quarantine, '.tcl'), [segments[0], segments[2]], 'the old files are kept, untouched');
});

test('a deleted first segment (no snapshot) is refused', async () => {
  const { dir, segments } = await threeSegments(50);
  unlinkSync(join(dir, segments[0]!));
  await refused(dir, segments[0]!, 0);
});

test('a bad record in the middle of the newest segment is damage, not a torn tail', async () => {
  const { dir, segments } = await threeSegments(100);
  const path = join(dir, segments[2]!);
  flip(path, Math.floor(statSync(path).size / 3));
  await refused(dir, segments[2]!);
});

test('a torn write at the very end of the newest segment is cut off and reported with its byte count', async () => {
  const cases: [string, (path: string) => void, number][] = [
    ['half a record', (p) => appendFileSync(p, recordModule.encodeRecord(retained('torn', 'x'.repeat(40))).subarray(0, 30)), 30],
    ['a zero-filled page', (p) => appendFileSync(p, Buffer.alloc(4096)), 4096],
    ['a last record whose checksum fails', (p) => {
      const rec = recordModule.encodeRecord(retained('torn', 'never acknowledged'));
      rec[rec.length - 1] = rec[rec.length - 1]! ^ 1;
      appendFileSync(p, rec);
    }, recordModule.encodeRecord(retained('torn', 'never acknowledged')).length],
  ];
  for (const [what, tear, torn] of cases) {
    const { dir, segments } = await threeSegments(20);
    const path = join(dir, segments[2]!);
    const intact = statSync(path).size;
    tear(path);
    const r = await openStore(dir);
    assert.equal(r.size, 60, what);
    assert.equal(r.get('torn'), undefined);
    assert.equal(r.stats.truncatedBytes, torn, what);
    assert.deepEqual(r.loadReport.torn, { file: path, offset: intact, bytes: torn });
    assert.equal(statSync(path).size, intact, 'cut on disk');
    await r.set(retained('after', 'ok'));
    await r.close();
    assert.equal((await openStore(dir)).size, 61, `writes after the cut append cleanly (${what})`);
  }
});

test('--data-recover on an intact store changes nothing', async () => {
  const { dir, segments } = await threeSegments(10);
  const quarantine = join(freshDir(), 'q');
  const r = await openStore(dir, { recoverInto: quarantine });
  assert.equal(r.size, 30);
  assert.equal(r.loadReport.recovered, undefined);
  assert.equal(existsSync(quarantine), false);
  await r.close();
  assert.deepEqual(files(dir, '.tcl').slice(0, 3), segments);
});

test('files written before file marks existed (no header, no end mark) still load', async () => {
  const dir = freshDir();
  writeFileSync(join(dir, `snapshot-${pad(0)}.tcs`), Buffer.concat([recordModule.encodeRecord(retained('old/a', '1')), recordModule.encodeRecord(retained('old/b', '2'))]));
  writeFileSync(join(dir, `log-${pad(1)}.tcl`), recordModule.encodeRecord(retained('old/c', '3')));
  const r = await openStore(dir);
  assert.deepEqual(r.match('old/#').sort(), ['old/a', 'old/b', 'old/c']);
  await r.close();
  // A byte flipped in such a snapshot is still damage (a snapshot is never torn).
  const dir2 = freshDir();
  const legacy = Buffer.concat([recordModule.encodeRecord(retained('old/a', '1')), recordModule.encodeRecord(retained('old/b', '2'))]);
  legacy[10] = legacy[10]! ^ 0xff;
  writeFileSync(join(dir2, `snapshot-${pad(0)}.tcs`), legacy);
  await refused(dir2, `snapshot-${pad(0)}.tcs`, 0);
});

test('property: a byte flipped anywhere in any file is refused at or before it, or is a torn write of the newest segment\'s last record; nothing else is lost', async () => {
  const { dir: pristine } = await withSnapshot(300);
  const model = await openStore(pristine);
  const expected = new Map(model.match('#').map((t) => [t, text(model.get(t))]));
  await model.close();
  const names = [...files(pristine, '.tcs'), ...files(pristine, '.tcl')];
  const newest = files(pristine, '.tcl').at(-1)!;
  // The newest segment's last frame (a record, or only its header mark): the one place a flip may look like a torn write.
  const newestBuf = readFileSync(join(pristine, newest));
  let lastRecordAt = 0;
  for (let at = 0; at < newestBuf.length; at += 8 + newestBuf.readUInt32LE(at)) lastRecordAt = at;
  const decoded = recordModule.decodeRecordAt(newestBuf, lastRecordAt);
  const tornTopic = typeof decoded === 'object' ? (decoded.entry.kind === 1 ? decoded.entry.message.topic : decoded.entry.topic) : undefined;
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 0, max: names.length - 1 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), fc.integer({ min: 1, max: 255 }), async (f, at, mask) => {
      const dir = freshDir();
      cpSync(pristine, dir, { recursive: true });
      const name = names[f]!;
      const path = join(dir, name);
      const buf = readFileSync(path);
      const offset = Math.floor(at * buf.length);
      buf[offset] = buf[offset]! ^ mask;
      writeFileSync(path, buf);
      const outcome = await openLogRetainedStore(dir).then((s) => s, (e: unknown) => e as Error);
      if (outcome instanceof Error) {
        assert.ok(outcome instanceof DataCorruptionError, String(outcome));
        assert.equal(outcome.file, path);
        assert.ok(outcome.offset <= offset, `reported at ${outcome.offset}, flipped at ${offset}`);
        return;
      }
      keep(outcome);
      assert.equal(name, newest, `a flip at ${offset} of ${name} was not noticed`);
      assert.ok(offset >= lastRecordAt, `only the last record can look torn (flip at ${offset}, last record at ${lastRecordAt})`);
      assert.deepEqual(outcome.loadReport.torn?.offset, lastRecordAt);
      const got = new Map(outcome.match('#').map((t) => [t, text(outcome.get(t))]));
      assert.deepEqual(got, new Map([...expected].filter(([t]) => t !== tornTopic)));
      await outcome.close();
    }),
    { numRuns: 60 },
  );
});
