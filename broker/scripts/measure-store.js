#!/usr/bin/env node
// Measures the persistent retained store candidates on this machine (broker/STORAGE.md):
//   publish cost per retained write with durability at acknowledgement (CPU µs and wall µs per write),
//   latency of one acknowledged write at a time, start-up time and memory with N retained topics, disk size.
// Candidates: the in-memory store (baseline), the append-only log (broker/dist/store/log.js), and LMDB
// through the `lmdb` package when it can be imported (pass --lmdb PATH to its index.js when it is not a
// dependency of this repository).
//
// Usage: npx tsc -b broker && node broker/scripts/measure-store.js [--topics 1000000] [--writes 200000]
//          [--burst 100] [--dir /tmp/topicast-measure] [--lmdb /path/to/node_modules/lmdb/index.js] [--cold]
// Every measurement runs in a fresh child process; --cold drops the page cache before each start-up (root only).
import { spawnSync } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = fileURLToPath(new URL('.', import.meta.url));
const dist = join(here, '..', 'dist');

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : fallback;
}

// ---- candidates ---------------------------------------------------------------------

async function openCandidate(kind, dir) {
  return (await candidateOpener(kind))(dir);
}

/** Imports what `kind` needs and returns its open function, so start-up timing excludes module loading. */
async function candidateOpener(kind) {
  const { MemoryRetainedStore } = await import(pathToFileURL(join(dist, 'core/retained.js')).href);
  if (kind === 'memory') {
    return async () => ({ store: new MemoryRetainedStore(), close: async () => {} });
  }
  if (kind === 'log') {
    const { openLogRetainedStore } = await import(pathToFileURL(join(dist, 'store/log.js')).href);
    return async (dir) => {
      const s = await openLogRetainedStore(dir);
      return { store: s, close: () => s.close(), stats: () => s.stats };
    };
  }
  if (kind === 'lmdb') {
    // The LMDB candidate as it would be built: the same in-memory index for reads, every write
    // also put into LMDB; lmdb-js batches the writes of one event turn into one transaction and,
    // with overlappingSync off, resolves the put once that transaction is committed and synced.
    const lmdb = await import(lmdbSpecifier());
    const { createMessage } = await import(pathToFileURL(join(dist, 'core/message.js')).href);
    return async (dir) => {
    const db = lmdb.open({ path: dir, overlappingSync: false, compression: false });
    const memory = new MemoryRetainedStore();
    for (const { key, value } of db.getRange()) {
      memory.set(createMessage(key, value[0], true, undefined, value[1], value[2] ?? undefined));
    }
    const store = {
      get size() { return memory.size; },
      get bytes() { return memory.bytes; },
      get: (t) => memory.get(t),
      match: (f) => memory.match(f),
      set(m) {
        const noop = m.payload.length === 0 && memory.get(m.topic) === undefined;
        memory.set(m);
        if (noop) return Promise.resolve();
        return m.payload.length === 0
          ? db.remove(m.topic).then(() => undefined)
          : db.put(m.topic, m.properties ? [m.payload, m.qos, m.properties] : [m.payload, m.qos]).then(() => undefined);
      },
    };
    return { store, close: () => db.close() };
    };
  }
  throw new Error(`unknown candidate ${kind}`);
}

function lmdbSpecifier() {
  const p = arg('lmdb');
  return p ? pathToFileURL(p).href : 'lmdb';
}

async function canImportLmdb() {
  try {
    await import(lmdbSpecifier());
    return true;
  } catch {
    return false;
  }
}

// A device fleet: 10,000 devices × sensors, small MessagePack-like payloads.
const topicOf = (i) => `devices/dev-${String(i % 100_000).padStart(5, '0')}/sensor/${Math.floor(i / 100_000)}`;
const payloadOf = (i) => {
  const b = Buffer.allocUnsafe(9);
  b[0] = 0xcb;
  b.writeDoubleBE(20 + (i % 1000) / 10, 1);
  return b;
};

// ---- child tasks ----------------------------------------------------------------------

const cpuMicros = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

async function taskPublish(kind, dir) {
  const { createMessage } = await import(pathToFileURL(join(dist, 'core/message.js')).href);
  const writes = Number(arg('writes', '200000'));
  const burst = Number(arg('burst', '100'));
  const topics = Number(arg('topics', '1000000'));
  const c = await openCandidate(kind, dir);
  // Warm up the JIT and the files.
  for (let i = 0; i < 2000; i += burst) {
    const ps = [];
    for (let j = 0; j < burst; j++) ps.push(c.store.set(createMessage(topicOf(i + j), payloadOf(i + j), true)));
    await Promise.all(ps);
  }
  // Bursts of `burst` writes per event-loop turn, as a busy broker sees them; each write acknowledged when durable.
  const pending = [];
  const wall0 = performance.now();
  const cpu0 = cpuMicros();
  let i = 0;
  await new Promise((done) => {
    const turn = () => {
      for (let j = 0; j < burst && i < writes; j++, i++) {
        const p = c.store.set(createMessage(topicOf((i * 7919) % topics), payloadOf(i), true));
        if (p) pending.push(p);
      }
      if (i < writes) setImmediate(turn);
      else done();
    };
    turn();
  });
  await Promise.all(pending);
  const cpu = cpuMicros() - cpu0;
  const wall = performance.now() - wall0;
  // One acknowledged write at a time: the latency a single device sees.
  const lat = [];
  const singleCpu0 = cpuMicros();
  for (let k = 0; k < 300; k++) {
    const t0 = performance.now();
    await c.store.set(createMessage(topicOf(k), payloadOf(k), true));
    lat.push((performance.now() - t0) * 1000);
  }
  const singleCpu = (cpuMicros() - singleCpu0) / 300;
  lat.sort((a, b) => a - b);
  const stats = c.stats?.();
  await c.close();
  return {
    kind, writes, burst,
    cpuMicrosPerWrite: +(cpu / writes).toFixed(2),
    wallMicrosPerWrite: +((wall * 1000) / writes).toFixed(2),
    writesPerSec: Math.round(writes / (wall / 1000)),
    singleWrite: { latencyMicrosP50: Math.round(lat[150]), latencyMicrosP99: Math.round(lat[297]), cpuMicros: Math.round(singleCpu) },
    ...(stats ? { batches: stats.batches, compactions: stats.compactions } : {}),
  };
}

async function taskFill(kind, dir) {
  const { createMessage } = await import(pathToFileURL(join(dist, 'core/message.js')).href);
  const topics = Number(arg('topics', '1000000'));
  const c = await openCandidate(kind, dir);
  const t0 = performance.now();
  for (let i = 0; i < topics; i += 1000) {
    const ps = [];
    for (let j = i; j < Math.min(topics, i + 1000); j++) ps.push(c.store.set(createMessage(topicOf(j), payloadOf(j), true)));
    await Promise.all(ps);
  }
  const fillMs = performance.now() - t0;
  const size = c.store.size;
  await c.close();
  return { kind, topics: size, fillSec: +(fillMs / 1000).toFixed(1) };
}

/**
 * Compaction under live writes (log only): bursts of overwrites until a compaction has run;
 * reports its duration and the event-loop delay meanwhile (what live traffic would feel).
 */
async function taskCompact(kind, dir) {
  const { createMessage } = await import(pathToFileURL(join(dist, 'core/message.js')).href);
  const { monitorEventLoopDelay } = await import('node:perf_hooks');
  const topics = Number(arg('topics', '1000000'));
  const c = await openCandidate(kind, dir);
  const before = c.stats().compactions;
  const delay = monitorEventLoopDelay({ resolution: 2 });
  let started = 0;
  let writes = 0;
  const deadline = Date.now() + 120_000;
  while (c.stats().compactions === before && Date.now() < deadline) {
    const ps = [];
    for (let j = 0; j < 100; j++, writes++) ps.push(c.store.set(createMessage(topicOf((writes * 7919) % topics), payloadOf(writes), true)));
    await Promise.all(ps);
    const st = c.stats();
    if (!started && st.logBytes >= Math.max(16 * 1024 * 1024, st.snapshotBytes)) {
      started = performance.now(); // the store's trigger: a snapshot is being written from here on
      delay.enable();
    }
  }
  delay.disable();
  const out = {
    kind, topics: c.store.size, compactions: c.stats().compactions - before, writesBefore: writes,
    compactionMs: started ? Math.round(performance.now() - started) : -1,
    loopDelayMs: { max: Math.round(delay.max / 1e6), p99: Math.round(delay.percentile(99) / 1e6), mean: +(delay.mean / 1e6).toFixed(1) },
  };
  await c.close();
  return out;
}

/** The floor under any candidate's start-up: building the in-memory index alone. */
async function taskIndex() {
  const { createMessage } = await import(pathToFileURL(join(dist, 'core/message.js')).href);
  const { MemoryRetainedStore } = await import(pathToFileURL(join(dist, 'core/retained.js')).href);
  const topics = Number(arg('topics', '1000000'));
  const cpu0 = cpuMicros();
  const t0 = performance.now();
  const memory = new MemoryRetainedStore();
  for (let i = 0; i < topics; i++) memory.set(createMessage(topicOf(i), payloadOf(i), true));
  return {
    kind: 'memory', indexOnly: true, topics: memory.size,
    startMs: Math.round(performance.now() - t0), startCpuMs: Math.round((cpuMicros() - cpu0) / 1000),
  };
}

async function taskStart(kind, dir) {
  const open = await candidateOpener(kind);
  globalThis.gc?.();
  const rss0 = process.memoryUsage().rss;
  const cpu0 = cpuMicros();
  const t0 = performance.now();
  const c = await open(dir);
  const startMs = performance.now() - t0;
  const startCpuMs = (cpuMicros() - cpu0) / 1000;
  globalThis.gc?.();
  const rss = process.memoryUsage().rss;
  const probe = c.store.match('devices/dev-00042/#').length;
  const out = {
    kind, topics: c.store.size, startMs: Math.round(startMs), startCpuMs: Math.round(startCpuMs),
    rssMiB: Math.round(rss / 2 ** 20), rssGrowthMiB: Math.round((rss - rss0) / 2 ** 20), probe,
  };
  await c.close();
  return out;
}

// ---- parent ---------------------------------------------------------------------------

function runChild(task, kind, dir) {
  const r = spawnSync(process.execPath, ['--expose-gc', fileURLToPath(import.meta.url), '--child', task, kind, dir, ...process.argv.slice(2)], {
    encoding: 'utf8',
    maxBuffer: 1 << 24,
  });
  if (r.status !== 0) throw new Error(`${task} ${kind} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

function du(dir) {
  return Math.round(Number(execFileSync('du', ['-sk', dir], { encoding: 'utf8' }).split('\t')[0]) / 1024);
}

function dropCaches() {
  execFileSync('sync');
  writeFileSync('/proc/sys/vm/drop_caches', '3\n');
}

async function main() {
  if (process.argv[2] === '--child') {
    const [task, kind, dir] = process.argv.slice(3);
    const fn = { publish: taskPublish, fill: taskFill, start: taskStart, index: taskIndex, compact: taskCompact }[task];
    console.log(JSON.stringify(await fn(kind, dir)));
    return;
  }
  const base = arg('dir', '/tmp/topicast-measure');
  const kinds = ['memory', 'log'];
  if (await canImportLmdb()) kinds.push('lmdb');
  else console.log('lmdb: not importable here (pass --lmdb PATH/node_modules/lmdb/index.js); measuring the others');
  console.log(`node ${process.version}, ${process.platform} ${process.arch}, ${cpus().length} cores; dir ${base}; load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  for (const kind of kinds) {
    const dir = join(base, kind);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    console.log(JSON.stringify(runChild('publish', kind, dir)));
    if (kind === 'memory') {
      console.log(JSON.stringify(runChild('index', kind, dir)));
      continue;
    }
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    console.log(JSON.stringify(runChild('fill', kind, dir)));
    console.log(JSON.stringify({ kind, diskMiB: du(dir) }));
    for (let run = 0; run < 2; run++) {
      if (process.argv.includes('--cold')) dropCaches();
      console.log(JSON.stringify({ run, ...runChild('start', kind, dir) }));
    }
    console.log(JSON.stringify({ kind, diskMiBAfterRestarts: du(dir) }));
    if (kind === 'log') console.log(JSON.stringify(runChild('compact', kind, dir)));
  }
  console.log(`load average at the end ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
  rmSync(base, { recursive: true, force: true });
}

await main();
