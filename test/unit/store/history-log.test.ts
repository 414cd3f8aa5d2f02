/**
 * The persistent history stream (broker/src/store/history-log.ts, STORAGE.md "History"):
 * reopening keeps the epoch, the held messages, their offsets and what each topic lost;
 * compaction keeps resume decisions exact; a torn tail is cut off; a full disk rejects the
 * durable promise with a clear error while the router keeps delivering, and the offsets it
 * lost count as lost after a restart; changed patterns or an unreadable STREAM start a new epoch.
 */
import assert from 'node:assert/strict';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createMessage, loadConfig, Router, type Message, type Subscriber } from '@topicast/broker';
import type * as HistoryLogModule from '../../../broker/src/store/history-log.js';
import type * as HistoryModule from '../../../broker/src/core/history.js';
import { logModule } from './load.js';

const dist = new URL('../../../../broker/dist/', import.meta.url);
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
  writeFileSync(join(data, 'history', 'STREAM'), JSON.stringify({ ...JSON.parse(readStream(data)), reservedThrough: stream.reservedThrough }));
  const b = await open(data);
  assert.equal(b.history.epoch, epoch, 'history is intact: same epoch');
  assert.ok(b.history.last >= stream.reservedThrough);
  const m = publish(b, 'devices/a/t', 'after').message;
  assert.ok(m.offset > stream.reservedThrough, `offset ${m.offset} is above the reservation ${stream.reservedThrough}`);
  assert.deepEqual(replay(b, ['devices/a/t'], 1), ['2:devices/a/t=delivered, maybe not stored', `${m.offset}:devices/a/t=after`]);
});

function readStream(data: string): string {
  return readFileSync(join(data, 'history', 'STREAM'), 'utf8');
}

test('changed historyFilters, or an unreadable STREAM, start a new epoch and drop the old history', async () => {
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
  const c = await open(data, ['--history-filters', 'devices/+/t']);
  assert.notEqual(c.history.epoch, e2);
  assert.deepEqual(c.infos, ['stream file malformed']);
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
