/**
 * The persistent history stream (broker/src/store/history-log.ts, STORAGE.md "History"):
 * reopening keeps the epoch, the held messages, their offsets and what each topic lost;
 * compaction keeps resume decisions exact; a torn tail is cut off; a full disk rejects the
 * durable promise with a clear error while the router keeps delivering, and the offsets it
 * lost count as lost after a restart; changed patterns or an unreadable STREAM start a new epoch;
 * a record is in the file before any outbox flush sends (Flusher.beforeSend); the clean-stop marker
 * and the boot id decide whether an unclean stop keeps the epoch (same boot) or not (a reboot).
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, test } from 'node:test';
import {
  createMessage, createOutboxStats, Flusher, loadConfig, Outbox, Router, type Connection, type Message, type SendResult, type Subscriber,
} from '@topicast/broker';
import type * as HistoryLogModule from '../../../../broker/src/store/history-log.js';
import type * as HistoryModule from '../../../../broker/src/core/history.js';
import { logModule } from './load.js';

const dist = new URL('../../../../../broker/dist/', import.meta.url);
const { openHistory } = (await import(new URL('store/history-log.js', dist).href)) as typeof HistoryLogModule;
const { ReplayMerge } = (await import(new URL('core/history.js', dist).href)) as typeof HistoryModule;
const { nodeAppendIo, StoreError } = logModule;
type AppendIo = typeof nodeAppendIo;
type Opened = NonNullable<Awaited<ReturnType<typeof openHistory>>>;

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);
const text = (m: Message): string => new TextDecoder().decode(m.payload);

const dirs: string[] = [];
const opened: Opened[] = [];
function freshDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'topicast-history-'));
  dirs.push(d);
  return d;
}
after(async () => {
  for (const o of opened) await o.close();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function open(data: string, args: string[] = [], extra: Partial<HistoryLogModule.OpenHistoryOptions> = {}): Promise<Opened & { infos: string[]; errors: Error[] }> {
  const config = loadConfig(['--history-filters', 'devices/#', ...args]);
  const infos: string[] = [];
  const errors: Error[] = [];
  const o = await openHistory(config, { data, onInfo: (f) => infos.push(String(f.reason)), onError: (e) => errors.push(e), ...extra });
  assert.ok(o);
  opened.push(o);
  return Object.assign(o, { infos, errors });
}

function publish(o: Opened, topic: string, value: string): { message: Message; durable: Promise<void> | undefined } {
  const message = createMessage(topic, bytes(value));
  return { message, durable: o.history.append(message) };
}

function replay(o: Opened, filters: string[], offset: number): string[] | undefined {
  const slices = o.history.resume(filters, { epoch: o.history.epoch, offset });
  if (!slices) return undefined;
  const out: string[] = [];
  const merge = new ReplayMerge(slices);
  for (let m = merge.next(); m; m = merge.next()) out.push(`${m.offset}:${m.topic}=${text(m)}`);
  return out;
}

const logDir = (data: string): string => join(data, 'history', 'log');
const segments = (data: string): string[] => readdirSync(logDir(data)).filter((n) => n.endsWith('.tcl')).sort();

test('reopen after a clean close keeps the epoch, the messages, their offsets, and continues the stream', async () => {
  const data = freshDir();
  const a = await open(data);
  assert.deepEqual(a.infos, ['no stream file'], 'a fresh directory starts a new epoch, logged with the reason');
  const writes = [publish(a, 'devices/a/t', '1'), publish(a, 'other', 'x'), publish(a, 'devices/b/t', '2'), publish(a, 'devices/a/t', '3')];
  assert.equal(writes[1]!.durable, undefined, 'no history topic, nothing to store');
  await Promise.all(writes.map((w) => w.durable));
  const epoch = a.history.epoch;
  await a.close();

  const b = await open(data);
  assert.deepEqual(b.infos, []);
  assert.equal(b.history.epoch, epoch);
  assert.equal(b.history.last, 3);
  assert.deepEqual(replay(b, ['devices/#'], 0), ['1:devices/a/t=1', '2:devices/b/t=2', '3:devices/a/t=3']);
  const next = publish(b, 'devices/a/t', '4');
  assert.equal(next.message.offset, 4, 'a clean shutdown continues the stream without a jump');
  await next.durable;
});

test('compaction keeps exactly what is held and what each topic lost, so resume decisions survive a restart', async () => {
  const data = freshDir();
  const args = ['--history-max-messages', '3'];
  const a = await open(data, args, { compactMinBytes: 4096 });
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 3000; i++) {
    const w = publish(a, `devices/${i % 7}/t`, `v${i}`.padEnd(40, '.'));
    writes.push(w.durable!);
    if (i % 100 === 99) await Promise.all(writes.splice(0)); // let batches and compactions run
  }
  await Promise.all(writes);
  for (let i = 0; i < 2000 && a.storeStats!.compactions < 2; i++) await new Promise((r) => setTimeout(r, 2));
  assert.ok(a.storeStats!.compactions >= 1, 'compactions ran');
  const positions = [0, 2970, 2978, 2979, 2985, 2999, 3000];
  const before = positions.map((p) => replay(a, ['devices/#'], p));
  const beforeOne = positions.map((p) => replay(a, ['devices/3/t'], p));
  await a.close();
  assert.ok(readdirSync(logDir(data)).some((n) => n.endsWith('.tcs')), 'a snapshot holds the history');

  const b = await open(data, args);
  assert.equal(b.history.messages, 21);
  assert.deepEqual(positions.map((p) => replay(b, ['devices/#'], p)), before);
  assert.deepEqual(positions.map((p) => replay(b, ['devices/3/t'], p)), beforeOne);
  assert.notEqual(before[3], undefined, 'resumable right after the last eviction');
  assert.equal(before[1], undefined, 'not from before it');
});

test('a torn write at the end of the log is cut off; the epoch and everything before it stay', async () => {
  const data = freshDir();
  const a = await open(data);
  await publish(a, 'devices/a/t', '1').durable;
  await publish(a, 'devices/a/t', '2').durable;
  const epoch = a.history.epoch;
  await a.close();
  appendFileSync(join(logDir(data), segments(data).at(-1)!), Buffer.from([40, 0, 0, 0, 1, 2, 3, 4, 0x95, 1])); // a record cut mid-way
  const b = await open(data);
  assert.equal(b.history.epoch, epoch);
  assert.equal(b.storeStats!.truncatedBytes, 10);
  assert.deepEqual(replay(b, ['devices/a/t'], 0), ['1:devices/a/t=1', '2:devices/a/t=2']);
});

test('without a clean close (a crash) the stream continues above every reserved offset: none is handed out twice', async () => {
  const data = freshDir();
  const a = await open(data);
  await publish(a, 'devices/a/t', '1').durable;
  publish(a, 'devices/a/t', 'delivered, maybe not stored'); // offset 2
  const epoch = a.history.epoch;
  // Simulate the crash: STREAM as it was while running (close() rewrites it), files as they are.
  const stream = JSON.parse(readStream(data)) as { reservedThrough: number };
  await a.close();
  writeFileSync(join(data, 'history', 'STREAM'), JSON.stringify({ ...JSON.parse(readStream(data)), reservedThrough: stream.reservedThrough, clean: false }));
  const b = await open(data);
  assert.equal(b.history.epoch, epoch, 'history is intact: same epoch');
  assert.ok(b.history.last >= stream.reservedThrough);
  const m = publish(b, 'devices/a/t', 'after').message;
  assert.ok(m.offset > stream.reservedThrough, `offset ${m.offset} is above the reservation ${stream.reservedThrough}`);
  assert.deepEqual(replay(b, ['devices/a/t'], 1), ['2:devices/a/t=delivered, maybe not stored', `${m.offset}:devices/a/t=after`]);
});

/** A transport that records, at each send, whether every history record so far was in the log file. */
function fileCheckingConn(data: string, payloads: string[]): Connection & { checks: boolean[] } {
  const checks: boolean[] = [];
  return {
    remoteAddress: 'test',
    checks,
    send() {
      const file = readFileSync(join(logDir(data), segments(data).at(-1)!)).toString('latin1');
      checks.push(payloads.every((p) => file.includes(p)));
      return 1 as SendResult;
    },
    bufferedBytes: () => 0,
    cork: (fn) => fn(),
    close() {},
  };
}

test('a history record is in the log file (page cache) before any frame leaves, whoever flushes the outbox; fdatasync stays asynchronous', async () => {
  const data = freshDir();
  const a = await open(data);
  assert.equal(typeof a.writePending, 'function');
  const flusherQueue: (() => void)[] = [];
  const flusher = new Flusher((fn) => flusherQueue.push(fn)); // runs when the test says: before the log's own setImmediate
  flusher.beforeSend = a.writePending;
  const payloads = ['first-record', 'second-record'];
  const conn = fileCheckingConn(data, payloads);
  const outbox = new Outbox(conn, { maxBufferedBytes: 1 << 20, policy: 'drop', snapshotWindowBytes: 1 << 16, maxConflatedTopics: 10 }, createOutboxStats(), flusher);
  const first = publish(a, 'devices/a/t', payloads[0]!);
  outbox.pushData(bytes('delivery 1'), 'devices/a/t');
  let synced = false;
  void first.durable!.then(() => (synced = true));
  outbox.flush(); // a flush outside the Flusher's turn end (drain, near the limit)
  const second = publish(a, 'devices/a/t', payloads[1]!);
  outbox.pushData(bytes('delivery 2'), 'devices/a/t');
  while (flusherQueue.length) flusherQueue.shift()!(); // the Flusher's turn end
  assert.deepEqual(conn.checks, [false, true], 'at the first send only its record was written; at the second both were');
  assert.equal(synced, false, 'acknowledgements still wait for the asynchronous fdatasync');
  await Promise.all([first.durable, second.durable]);
  assert.equal(a.storeStats!.writeErrors, 0);
});

test('the clean-stop marker and the boot id decide the epoch after a restart: clean or a process crash keep it, a machine crash does not', async () => {
  const data = freshDir();
  const a = await open(data, [], { bootId: 'boot-1' });
  await publish(a, 'devices/a/t', '1').durable;
  const epoch = a.history.epoch;
  await a.close();
  assert.equal(JSON.parse(readStream(data)).clean, true, 'a clean close is recorded');
  const b = await open(data, [], { bootId: 'boot-2' });
  assert.equal(b.history.epoch, epoch, 'clean stop, then a reboot: exact, same epoch');
  const running = JSON.parse(readStream(data)) as { clean: boolean; bootId: string };
  assert.deepEqual([running.clean, running.bootId], [false, 'boot-2'], 'a running stream is unclean until closed, under this boot id');
  assert.deepEqual(replay(b, ['devices/a/t'], 0), ['1:devices/a/t=1']);
  await b.close();
  const markUnclean = (): void => writeFileSync(join(data, 'history', 'STREAM'), JSON.stringify({ ...JSON.parse(readStream(data)), clean: false }));
  markUnclean();
  const c = await open(data, [], { bootId: 'boot-2' });
  assert.equal(c.history.epoch, epoch, 'unclean stop on the same boot (a process crash): the page cache kept every write, same epoch');
  await c.close();
  markUnclean();
  const d = await open(data, [], { bootId: 'boot-3' });
  assert.notEqual(d.history.epoch, epoch, 'unclean stop, then a reboot (power loss, kernel panic): a new epoch');
  assert.match(d.infos[0]!, /unclean stop, and the machine restarted since \(boot id changed\)/);
  assert.equal(replay(d, ['devices/a/t'], 1), undefined, 'an earlier position gets recovered: false');
  const epochD = d.history.epoch;
  await d.close();
  markUnclean();
  const e = await open(data, [], { bootId: undefined });
  assert.notEqual(e.history.epoch, epochD, 'no boot id to compare (not Linux): an unclean stop starts a new epoch');
  assert.match(e.infos[0]!, /no boot id/);
});

function readStream(data: string): string {
  return readFileSync(join(data, 'history', 'STREAM'), 'utf8');
}

test('changed historyFilters start a new epoch and drop the old history; a malformed STREAM is damage: refused, or moved aside with --data-recover', async () => {
  const data = freshDir();
  const a = await open(data);
  await publish(a, 'devices/a/t', '1').durable;
  const e1 = a.history.epoch;
  await a.close();
  const b = await open(data, ['--history-filters', 'devices/+/t']);
  assert.notEqual(b.history.epoch, e1);
  assert.deepEqual(b.infos, ['historyFilters changed']);
  assert.equal(b.history.messages, 0);
  assert.equal(b.history.last, 0);
  const e2 = b.history.epoch;
  await b.close();
  writeFileSync(join(data, 'history', 'STREAM'), '{"version":1,"epo');
  await assert.rejects(open(data, ['--history-filters', 'devices/+/t']), (err: Error) =>
    err.name === 'StoreError' && err.message.startsWith(`history store: ${join(data, 'history', 'STREAM')} is damaged at byte 0:`));
  const quarantine = join(data, 'quarantine');
  const c = await open(data, ['--history-filters', 'devices/+/t'], { recoverInto: quarantine });
  assert.notEqual(c.history.epoch, e2);
  assert.deepEqual(c.infos, ['stream file malformed: moved into quarantine with the log']);
  assert.equal(readFileSync(join(quarantine, 'STREAM'), 'utf8'), '{"version":1,"epo');
  assert.equal(c.loadReport?.recovered?.damage[0]?.file, 'STREAM');
});

/** Appends through node:fs until `fill()`, then fails like a full disk until `free()`. */
function fullDiskIo(): AppendIo & { fill(): void; free(): void } {
  let full = false;
  return {
    fill() {
      full = true;
    },
    free() {
      full = false;
    },
    // The history store writes synchronously (eagerWrites): its writes go through writeSync.
    write: nodeAppendIo.write,
    writeSync(fd, buf, offset, length, position) {
      if (!full) return nodeAppendIo.writeSync!(fd, buf, offset, length, position);
      if (length > 4) nodeAppendIo.writeSync!(fd, buf, offset, 4, position); // the first bytes land, like a real full disk
      throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28 });
    },
    fdatasync: nodeAppendIo.fdatasync,
    ftruncate: nodeAppendIo.ftruncate,
  };
}

test('disk full: the durable promise rejects with a clear error, delivery goes on, and after a restart the lost offsets count as lost', async () => {
  const data = freshDir();
  const io = fullDiskIo();
  const a = await open(data, [], { io });
  const router = new Router(undefined, a.history);
  const got: string[] = [];
  const sub: Subscriber = { routerStamp: 0, deliver: (m) => got.push(`${m.offset}=${text(m)}`) };
  router.subscribe(sub, 'devices/#', { qos: 0 });
  await router.publish(createMessage('devices/a/t', bytes('stored'))).durable;
  io.fill();
  const failed = router.publish(createMessage('devices/a/t', bytes('not stored'))).durable;
  await assert.rejects(failed as Promise<void>, (err: Error & { code?: string }) => {
    assert.ok(err instanceof StoreError);
    assert.equal(err.code, 'ENOSPC');
    assert.match(err.message, /history store in .*: append failed: no space left on device \(ENOSPC\)/);
    return true;
  });
  assert.deepEqual(got, ['1=stored', '2=not stored'], 'live delivery does not wait for the disk');
  assert.equal(a.errors.length, 1);
  assert.equal(a.storeStats!.writeErrors, 1);
  assert.deepEqual(replay(a, ['devices/a/t'], 0), ['1:devices/a/t=stored', '2:devices/a/t=not stored'], 'memory still holds it until restart');
  io.free();
  await router.publish(createMessage('devices/a/t', bytes('later'))).durable;
  await a.close();

  const b = await open(data);
  assert.deepEqual(replay(b, ['devices/a/t'], 2), ['3:devices/a/t=later']);
  assert.equal(replay(b, ['devices/a/t'], 1), undefined, 'offset 2 never reached the disk: a resume from before it is refused');
});

test('disk full on the last batch before a clean close: STREAM records the lost offsets, the restart refuses resumes across them', async () => {
  const data = freshDir();
  const io = fullDiskIo();
  const a = await open(data, [], { io });
  await publish(a, 'devices/a/t', '1').durable;
  io.fill();
  await assert.rejects(publish(a, 'devices/a/t', '2').durable!, /ENOSPC/);
  const epoch = a.history.epoch;
  await a.close();
  const b = await open(data);
  assert.equal(b.history.epoch, epoch);
  assert.equal(b.history.last, 2, 'offset 2 is never handed out again');
  assert.equal(replay(b, ['devices/a/t'], 1), undefined, 'offset 2 was lost');
  assert.deepEqual(replay(b, ['devices/a/t'], 2), []);
});

test('a failed fdatasync (EIO): the records written since the last good one are cut off and recorded as lost before they leave the file', async () => {
  const data = freshDir();
  let failNext = false;
  const io: AppendIo = {
    ...nodeAppendIo,
    async fdatasync(fd) {
      if (!failNext) return nodeAppendIo.fdatasync(fd);
      failNext = false;
      throw Object.assign(new Error('EIO: i/o error, fdatasync'), { code: 'EIO', errno: -5 });
    },
    ftruncate: nodeAppendIo.ftruncate,
  };
  const a = await open(data, [], { io });
  await publish(a, 'devices/a/t', 'kept').durable;
  const stream = (): { lostThrough?: number } => JSON.parse(readStream(data)) as { lostThrough?: number };
  failNext = true;
  const lost = publish(a, 'devices/a/t', 'synced? no');
  a.writePending!();
  const file = join(logDir(data), segments(data).at(-1)!);
  assert.ok(readFileSync(file).includes(Buffer.from('synced? no')), 'written before the fdatasync');
  // Runs with the store's own failure handler, before the engine cuts the records off.
  const atRejection = lost.durable!.catch(() => ({ lostThrough: stream().lostThrough, inFile: readFileSync(file).includes(Buffer.from('synced? no')) }));
  await assert.rejects(lost.durable!, /history store in .*: append failed: EIO/);
  assert.deepEqual(await atRejection, { lostThrough: lost.message.offset, inFile: true }, 'the loss is in STREAM while the record is still in the file');
  await new Promise((r) => setImmediate(r));
  assert.ok(!readFileSync(file).includes(Buffer.from('synced? no')), 'and the record is cut off the log');
  await publish(a, 'devices/a/t', 'after').durable;
  assert.equal(a.storeStats!.writeErrors, 1);
  await a.close();
  const b = await open(data);
  assert.equal(replay(b, ['devices/a/t'], 1), undefined, 'a resume across the lost offset is refused');
  assert.deepEqual(replay(b, ['devices/a/t'], 2), ['3:devices/a/t=after']);
});

test('a run with history off removes the stored stream: the next run with history starts a new epoch', async () => {
  const data = freshDir();
  const a = await open(data);
  await publish(a, 'devices/a/t', '1').durable;
  const epoch = a.history.epoch;
  await a.close();
  const infos: string[] = [];
  assert.equal(await openHistory(loadConfig([]), { data, onInfo: (_f, msg) => infos.push(msg) }), undefined);
  assert.deepEqual(infos, ['history: off (historyFilters empty), stored history removed']);
  const b = await open(data);
  assert.notEqual(b.history.epoch, epoch, 'messages published while history was off have no offsets: the old stream is incomplete');
  assert.deepEqual(b.infos, ['no stream file']);
});

test('damage in the history log (issue 15: 2,000 messages, clean stop, a byte flipped at 40,000): refused; with --data-recover a new epoch, no resume recovered across it', async () => {
  const data = freshDir();
  const a = await open(data);
  for (let i = 1; i <= 2000; i++) {
    const p = publish(a, `devices/${i % 7}/t`, `m${i}`).durable;
    if (i % 100 === 0) await p;
  }
  const epoch = a.history.epoch;
  await a.close();
  const segment = join(logDir(data), segments(data).at(-1)!);
  const buf = readFileSync(segment);
  assert.ok(buf.length > 40_000);
  buf[40_000] = buf[40_000]! ^ 0x20;
  writeFileSync(segment, buf);

  await assert.rejects(open(data), (err: Error) => err.message.startsWith(`history store: ${segment} is damaged at byte `) && !err.message.includes('\n'));
  const quarantine = join(data, 'quarantine', 'history');
  const b = await open(data, [], { recoverInto: quarantine });
  assert.notEqual(b.history.epoch, epoch, 'a new epoch');
  assert.equal(b.history.resume(['devices/#'], { epoch, offset: 9 }), undefined, 'the old epoch: recovered false');
  assert.equal(b.history.resume(['devices/#'], { epoch: b.history.epoch, offset: 9 }), undefined, 'nor from before the damage in the new one');
  assert.equal(b.history.messages, 1999, 'every intact message is kept');
  assert.ok(b.history.last >= 2000, 'offsets go on above the old ones');
  assert.ok(readdirSync(join(quarantine, 'log')).includes(basename(segment)), 'the damaged segment is in quarantine');
  const after = publish(b, 'devices/1/t', 'after').message;
  const newEpoch = b.history.epoch;
  await b.close();
  // The recovered store is whole: it reopens without the flag, under the new epoch.
  const c = await open(data);
  assert.equal(c.history.epoch, newEpoch);
  assert.deepEqual(replay(c, ['devices/1/t'], after.offset - 1), [`${after.offset}:devices/1/t=after`]);
});

test('the newest history segment deleted after a clean stop: refused (STREAM names the last offset); recovered with a new epoch', async () => {
  const data = freshDir();
  const a = await open(data);
  await publish(a, 'devices/a/t', '1').durable;
  await a.close();
  const b = await open(data);
  await publish(b, 'devices/a/t', '2').durable;
  const epoch = b.history.epoch;
  await b.close();
  const newest = segments(data).at(-1)!;
  rmSync(join(logDir(data), newest));
  await assert.rejects(open(data), /newest records are missing/);
  const c = await open(data, [], { recoverInto: join(data, 'quarantine', 'history') });
  assert.notEqual(c.history.epoch, epoch);
  assert.equal(c.history.resume(['devices/#'], { epoch, offset: 0 }), undefined);
  assert.equal(c.history.resume(['devices/#'], { epoch: c.history.epoch, offset: 0 }), undefined);
});
