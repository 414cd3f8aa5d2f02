/**
 * Damaged data in the real broker process (issue 15, broker/STORAGE.md "Damage"). For the retained
 * store, the history log and the MQTT session store: a byte flipped at several offsets of a snapshot
 * or of a segment that is not the last, a middle segment cut short, a deleted segment, a zeroed
 * snapshot → the broker does not start: exit code 2 and one line on stderr naming the file, the byte
 * offset and --data-recover. With --data-recover → it starts, the old files are in
 * DIR/quarantine/<time>/<store>/, the intact data is served, the loss is in /metrics, and the history
 * has a new epoch: a resume from before gets recovered: false. A torn write at the very end of the
 * newest segment (the crash case) is cut off with a warning and the broker starts normally. An SDK
 * client away during a recovery resumes with recovered: false, a new epoch and the retained values.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { appendFileSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { after, test } from 'node:test';
import mqtt from 'mqtt';
import { createMessage } from '@topicast/broker';
import { connect, type ResumeOutcome } from 'topicast';
import { Op } from 'topicast/protocol';
import { BROKER_MAIN, freePort, startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';
import { bytes, NativeClient, scrapeMetrics, text, type Ack } from '../helpers/native-client.js';
import { logModule, recordModule } from '../unit/broker/store/load.js';

const work = mkdtempSync(join(tmpdir(), 'topicast-damage-'));
after(() => rmSync(work, { recursive: true, force: true }));

const HISTORY = ['--history-filters', 'devices/#', '--sys-interval-sec', '0', '--max-publishes-per-sec', '0'];
const pad = (n: number): string => String(n).padStart(12, '0');
const files = (dir: string, suffix: string): string[] => readdirSync(dir).filter((n) => n.endsWith(suffix)).sort();

/** Runs the broker expecting it to refuse: resolves with its exit code and stderr once it exited (bounded). */
function refusedStart(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stderr: string; stdout: string }> {
  const proc = spawn(process.execPath, [BROKER_MAIN, '--host', '127.0.0.1', '--port', '0', '--mqtt-port', '0', ...args], {
    env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  let stdout = '';
  proc.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`the broker did not exit within 15 s (it should refuse to start):\n${stdout}${stderr}`));
    }, 15_000);
    proc.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stderr, stdout });
    });
  });
}

/** The refusal: exit 2, exactly one line on stderr naming the file, the offset and the flag; no listener opened. */
async function assertRefused(data: string, file: string, args: string[] = []): Promise<number> {
  const r = await refusedStart(['--data', data, ...args]);
  assert.equal(r.code, 2, `exit code 2 (${r.stderr})`);
  const lines = r.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one line on stderr: ${r.stderr}`);
  const m = new RegExp(`^topicast: [a-zA-Z ]+ store: (.+) is damaged at byte (\\d+): .+; .*--data-recover.*$`).exec(lines[0]!);
  assert.ok(m, lines[0]);
  assert.equal(m[1], file);
  assert.ok(!r.stdout.includes('"listening"'));
  return Number(m[2]);
}

function flip(path: string, offset: number): void {
  const buf = readFileSync(path);
  buf[offset] = buf[offset]! ^ 0x5a;
  writeFileSync(path, buf);
}

function result(a: Ack | { op: number } | undefined): NonNullable<Ack['result']> {
  assert.equal(a?.op, Op.ack, JSON.stringify(a));
  return (a as Ack).result!;
}

/** The retained topics the broker serves (a snapshot of '#'). */
async function retainedTopics(b: BrokerProcess): Promise<Map<string, string>> {
  const c = await NativeClient.connect(b.url);
  const snap = await c.subscribe(['#'], {}, 30_000);
  await c.close();
  return new Map(snap.retained.map((d) => [d.topic, text(d.payload)]));
}

/** Resumes devices/# from `offset` of `epoch`: the ACK's result. */
async function resumeFrom(b: BrokerProcess, epoch: string, offset: number): Promise<NonNullable<Ack['result']>> {
  const c = await NativeClient.connect(b.url);
  const r = result(await c.subscribeRaw(['devices/#'], { resume: { epoch, offset } }));
  await c.close();
  return r;
}

const TOPICS = 3000;
let pristine: { data: string; epoch: string; last: number } | undefined;

/**
 * A data directory as a broker leaves it: retained values in a snapshot (3,000 topics, written by the
 * store itself with a small compaction threshold) and three log segments after it, and a history
 * stream (epoch, 50 acknowledged messages) from two broker runs.
 */
async function pristineData(): Promise<{ data: string; epoch: string; last: number }> {
  if (pristine) return pristine;
  const data = join(work, 'pristine');
  const dir = join(data, 'retained');
  const s = await logModule.openLogRetainedStore(dir, { compactMinBytes: 4096 });
  await Promise.all(Array.from({ length: TOPICS }, (_, i) => s.set(createMessage(`snap/${i}`, bytes(`value ${i}`), true))));
  for (let i = 0; i < 500 && s.stats.compactions === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(s.stats.compactions >= 1);
  await s.close();
  let epoch = '';
  let last = 0;
  for (let run = 0; run < 3; run++) {
    const b = await startBroker({ args: [...HISTORY, '--data', data], mqttOff: true });
    const c = await NativeClient.connect(b.url);
    const ack = result(await c.subscribeRaw(['devices/#']));
    epoch = ack.epoch!;
    for (let i = 0; i < 20; i++) result(await c.publish(`seg/${run}/${i}`, bytes(`v${run}.${i}`), { retain: true }));
    for (let i = 0; i < 17; i++) result(await c.publish(`devices/${i % 3}/t`, bytes(`h${run}.${i}`)));
    last = result(await c.subscribeRaw(['devices/+/t'])).offset!;
    await c.close();
    await b.stop();
  }
  assert.equal(files(dir, '.tcs').length, 1);
  assert.ok(files(dir, '.tcl').length >= 3, `segments after the snapshot: ${files(dir, '.tcl').join(' ')}`);
  pristine = { data, epoch, last };
  return pristine;
}

let copies = 0;
function copyOf(data: string): string {
  const out = join(work, `copy-${copies++}`);
  cpSync(data, out, { recursive: true });
  return out;
}

/** Starts with --data-recover and checks what every recovery promises; returns the broker. */
async function recovered(data: string, store: string, damagedFile: string, epoch: string, args: string[] = []): Promise<BrokerProcess> {
  const b = await startBroker({ args: [...HISTORY, '--data', data, '--data-recover', ...args], mqttOff: !args.includes('--mqtt-port') });
  const q = readdirSync(join(data, 'quarantine'));
  assert.equal(q.length, 1, 'one quarantine folder for this start');
  const stored = join(data, 'quarantine', q[0]!, store);
  const quarantined = readdirSync(stored, { recursive: true }).map(String);
  const damageText = quarantined.filter((n) => n.endsWith('DAMAGE.txt')).map((n) => readFileSync(join(stored, n), 'utf8')).join('');
  assert.ok(quarantined.includes(damagedFile) || damageText.includes(basename(damagedFile)), `${damagedFile} is in quarantine (${quarantined.join(' ')})`);
  assert.ok(damageText.includes(basename(damagedFile)), `DAMAGE.txt names it: ${damageText}`);
  assert.ok(b.logs.some((l) => l.includes('"level":40') && l.includes(`${store === 'history' ? 'history' : store} store recovered`)), 'a warning says what was lost');
  const metrics = await scrapeMetrics(b.httpUrl);
  assert.ok(metrics.get(`topicast_store_damage_found{store="${store}"}`)! >= 1, 'the damage is counted in /metrics');
  const ack = await resumeFrom(b, epoch, 1);
  assert.equal(ack.recovered, false, 'no resume claims recovered: true across the damage');
  assert.notEqual(ack.epoch, epoch, 'a new epoch');
  return b;
}

test('retained snapshot: a byte flipped at several offsets is refused naming the file and offset; --data-recover serves every intact topic under a new epoch', async () => {
  const { data, epoch } = await pristineData();
  const snapshot = files(join(data, 'retained'), '.tcs')[0]!;
  const size = statSync(join(data, 'retained', snapshot)).size;
  for (const offset of [1000, Math.floor(size / 2), size - 20]) {
    const d = copyOf(data);
    flip(join(d, 'retained', snapshot), offset);
    const at = await assertRefused(d, join(d, 'retained', snapshot), HISTORY);
    assert.ok(at <= offset && at > offset - 64, `the damaged record starts at ${at}, the flip was at ${offset}`);
    const b = await recovered(d, 'retained', snapshot, epoch);
    const topics = await retainedTopics(b);
    const snapTopics = [...topics.keys()].filter((t) => t.startsWith('snap/')).length;
    assert.ok(snapTopics >= TOPICS - 1, `${snapTopics} of ${TOPICS} snapshot topics served after a flip at ${offset}`);
    assert.equal(topics.get('seg/2/19'), 'v2.19', 'the segments after the snapshot are loaded too');
    await b.stop();
    // Recovered means whole again: the next start needs no flag and keeps the new epoch.
    const again = await startBroker({ args: [...HISTORY, '--data', d], mqttOff: true });
    assert.equal((await retainedTopics(again)).size, topics.size);
    await again.stop();
  }
});

test('retained store: a zeroed snapshot, a flipped byte in segment 0 (not the last), a middle segment cut short, a deleted segment: each refused, each recovered', async () => {
  const { data, epoch } = await pristineData();
  const dir = (d: string): string => join(d, 'retained');
  const snapshot = files(dir(data), '.tcs')[0]!;
  const segments = files(dir(data), '.tcl');
  const cases: { what: string; file: string; damage: (d: string) => void; expect: (topics: Map<string, string>) => void }[] = [
    {
      what: 'zeroed snapshot', file: snapshot,
      damage: (d) => writeFileSync(join(dir(d), snapshot), Buffer.alloc(statSync(join(dir(d), snapshot)).size)),
      expect: (t) => assert.equal(t.get('seg/1/0'), 'v1.0'),
    },
    {
      what: 'byte flipped in the first segment', file: segments[0]!,
      damage: (d) => flip(join(dir(d), segments[0]!), Math.floor(statSync(join(dir(d), segments[0]!)).size / 2)),
      expect: (t) => {
        assert.equal(t.get('seg/0/19'), 'v0.19', 'the records after the damaged one are loaded');
        assert.equal(t.get('seg/2/0'), 'v2.0');
      },
    },
    {
      what: 'middle segment cut short', file: segments[1]!,
      damage: (d) => truncateSync(join(dir(d), segments[1]!), statSync(join(dir(d), segments[1]!)).size - 7),
      expect: (t) => {
        assert.equal(t.get('seg/1/18'), 'v1.18');
        assert.equal(t.get('seg/1/19'), undefined, 'the last record of the cut segment is lost');
        assert.equal(t.get('seg/2/19'), 'v2.19');
      },
    },
    {
      what: 'deleted middle segment', file: segments[1]!,
      damage: (d) => unlinkSync(join(dir(d), segments[1]!)),
      expect: (t) => {
        assert.equal(t.get('seg/1/0'), undefined);
        assert.equal(t.get('seg/2/0'), 'v2.0');
        assert.equal(t.get('snap/7'), 'value 7');
      },
    },
  ];
  for (const c of cases) {
    const d = copyOf(data);
    c.damage(d);
    await assertRefused(d, join(dir(d), c.file), HISTORY);
    const b = await recovered(d, 'retained', c.file, epoch);
    c.expect(await retainedTopics(b));
    await b.stop();
  }
});

test('history (issue 15: 2,000 acknowledged messages, clean stop, a byte flipped at 40,000 of the log): refused; --data-recover starts a new epoch, the resume says recovered: false', async () => {
  const data = join(work, 'history-2000');
  const one = await startBroker({ args: [...HISTORY, '--data', data], mqttOff: true });
  const c = await NativeClient.connect(one.url);
  const { epoch } = result(await c.subscribeRaw(['devices/#']));
  for (let burst = 0; burst < 20; burst++) {
    for (let i = 0; i < 99; i++) void c.publish(`devices/${i % 10}/t`, bytes(`${burst}.${i}`), { ack: false });
    result(await c.publish('devices/0/t', bytes(`${burst}.end`))); // acknowledges the burst
  }
  await c.close();
  await one.stop();
  const logDir = join(data, 'history', 'log');
  const segment = files(logDir, '.tcl').find((n) => statSync(join(logDir, n)).size > 40_000)!;
  flip(join(logDir, segment), 40_000);
  await assertRefused(data, join(logDir, segment), HISTORY);
  const b = await recovered(data, 'history', join('log', segment), epoch!);
  const r = await resumeFrom(b, epoch!, 9);
  assert.equal(r.recovered, false);
  await b.stop();
});

test('MQTT session store: a byte flipped before the end is refused; --data-recover restores the intact sessions', async () => {
  const data = join(work, 'sessions');
  const mqttPort = await freePort();
  const args = [...HISTORY, '--data', data, '--mqtt-port', String(mqttPort)];
  let b = await startBroker({ args });
  const offline = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'keeper', clean: false, protocolVersion: 4, reconnectPeriod: 0 });
  await offline.subscribeAsync('plant/#', { qos: 1 });
  await offline.endAsync();
  const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'feeder', protocolVersion: 4, reconnectPeriod: 0 });
  for (let i = 0; i < 100; i++) await pub.publishAsync(`plant/m${i}`, `v${i}`, { qos: 1 });
  await pub.endAsync();
  const native = await NativeClient.connect(b.url);
  const { epoch } = result(await native.subscribeRaw(['devices/#']));
  await native.close();
  await b.stop();

  const dir = join(data, 'sessions');
  const segment = files(dir, '.tcl').find((n) => statSync(join(dir, n)).size > 2000)!;
  flip(join(dir, segment), Math.floor(statSync(join(dir, segment)).size / 2));
  await assertRefused(data, join(dir, segment), ['--mqtt-port', String(mqttPort), ...HISTORY]);
  b = await recovered(data, 'sessions', segment, epoch!, ['--mqtt-port', String(mqttPort)]);
  const back = mqtt.connect(`mqtt://127.0.0.1:${mqttPort}`, { clientId: 'keeper', clean: false, protocolVersion: 4, reconnectPeriod: 0 });
  const got: string[] = [];
  back.on('message', (_t, p) => got.push(p.toString())); // before the CONNACK: queued messages follow it at once
  const connack = await new Promise<mqtt.IConnackPacket>((resolve, reject) => {
    back.once('connect', resolve);
    back.once('error', reject);
  });
  assert.equal(connack.sessionPresent, true, 'the session is restored');
  for (let i = 0; i < 200 && got.length < 99; i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(got.length >= 99 && got.length <= 100, `the queued messages of the intact records are delivered (${got.length} of 100)`);
  await back.endAsync();
  await b.stop();
});

test('a torn write at the very end of the newest segment is cut off with a warning naming the bytes; the broker starts normally, same epoch', async () => {
  const { data, epoch, last } = await pristineData();
  const d = copyOf(data);
  const dir = join(d, 'retained');
  const newest = files(dir, '.tcl').at(-1)!;
  const record = recordModule.encodeRecord(createMessage('torn/x', bytes('never acknowledged'), true));
  appendFileSync(join(dir, newest), record.subarray(0, record.length - 9));
  const b = await startBroker({ args: [...HISTORY, '--data', d], mqttOff: true });
  const warn = b.logs.find((l) => l.includes('torn write'));
  assert.ok(warn && warn.includes('"level":40') && warn.includes(`"bytes":${record.length - 9}`), `a warning with the byte count: ${warn}`);
  assert.equal((await scrapeMetrics(b.httpUrl)).get('topicast_store_torn_bytes{store="retained"}'), record.length - 9);
  const ack = await resumeFrom(b, epoch, last - 3);
  assert.equal(ack.recovered, true, 'the history is untouched: same epoch, exact resume');
  assert.equal(ack.epoch, epoch);
  assert.equal(existsSync(join(d, 'quarantine')), false);
  await b.stop();
});

test('TOPICAST_DATA_RECOVER works like the flag', async () => {
  const { data } = await pristineData();
  const d = copyOf(data);
  const snapshot = files(join(d, 'retained'), '.tcs')[0]!;
  flip(join(d, 'retained', snapshot), 500);
  const b = await startBroker({ args: [...HISTORY, '--data', d], env: { TOPICAST_DATA_RECOVER: 'true' }, mqttOff: true });
  assert.ok(existsSync(join(d, 'quarantine')));
  await b.stop();
});

test('the SDK across a recovery: a client away while the broker restarts with --data-recover resumes with recovered: false, a new epoch and the fresh retained values', async () => {
  const { data } = await pristineData();
  const d = copyOf(data);
  const port = await freePort(); // fixed: the restarted broker keeps the client's URL
  let broker = await startBroker({ args: [...HISTORY, '--data', d], mqttOff: true, port });
  const client = await connect(broker.url, { codec: 'json', reconnect: { minDelayMs: 20, maxDelayMs: 100 } });
  try {
    const seen: string[] = [];
    const sub = await client.subscribe('devices/#', (v, m) => seen.push(`${m.topic}=${String(v)}${m.retained ? ' retained' : ''}${m.replayed ? ' replayed' : ''}`));
    const outcomes: ResumeOutcome[] = [];
    sub.on('resumed', (o) => outcomes.push(o));
    const publisher = await connect(broker.url, { codec: 'json' });
    await publisher.publish('devices/9/t', 'before', { ack: true, retain: true });
    await publisher.close();
    await waitFor(() => seen.includes('devices/9/t=before'), 'live before');
    const epoch = sub.position!.epoch;
    await broker.stop();
    flip(join(d, 'retained', files(join(d, 'retained'), '.tcs')[0]!), 777);
    broker = await startBroker({ args: [...HISTORY, '--data', d, '--data-recover'], mqttOff: true, port });
    await waitFor(() => outcomes.length === 1 && sub.state === 'live', 'resubscribed after the recovery', 10_000);
    assert.deepEqual(outcomes, [{ recovered: false, replayed: 0 }]);
    assert.notEqual(sub.position?.epoch, epoch, 'the position moved to the new epoch');
    await waitFor(() => seen.includes('devices/9/t=before retained'), 'the retained values are sent again, to reload from');
  } finally {
    await client.close();
    await broker.stop();
  }
});
