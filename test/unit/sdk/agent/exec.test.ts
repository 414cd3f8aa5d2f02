import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { ExecSensor, parseExecLine, MAX_LINE_BYTES, type ExecExit, type ExecSensorConfig, type Logger } from 'topicast/agent';

interface Offered {
  path: string;
  value: unknown;
  unit: string;
}

function sink() {
  const offered: Offered[] = [];
  const declared: string[] = [];
  return {
    offered,
    declared,
    offer(s: Offered, o: { gate: boolean }) {
      assert.equal(o.gate, false, 'exec sensors have their own timing');
      offered.push(s);
    },
    declareSensor(path: string, unit: string) {
      declared.push(`${path} ${unit}`);
    },
  };
}

function logger() {
  const lines: string[] = [];
  const log: Logger = { error: (m) => lines.push(`error ${m}`), warn: (m) => lines.push(`warn ${m}`), info() {}, debug() {} };
  return { lines, log };
}

/** Polls until `cond` holds, at most `ms`. */
async function until(cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('parseExecLine: number, JSON reading, JSON object, name value, text, errors', () => {
  assert.deepEqual(parseExecLine(' 21.5 ', 'exec/t', '°C'), [{ path: 'exec/t', value: 21.5, unit: '°C' }]);
  assert.deepEqual(parseExecLine('-3e2', 'exec/t', ''), [{ path: 'exec/t', value: -300, unit: '' }]);
  assert.deepEqual(parseExecLine('{"value":3,"unit":"lux"}', 'exec/l', ''), [{ path: 'exec/l', value: 3, unit: 'lux' }]);
  assert.deepEqual(parseExecLine('{"Temperature":21.5,"rh":40,"ok":true,"n":null}', 'exec/dht', ''), [
    { path: 'exec/dht/temperature', value: 21.5, unit: '' },
    { path: 'exec/dht/rh', value: 40, unit: '' },
    { path: 'exec/dht/ok', value: 'true', unit: '' },
  ]);
  assert.deepEqual(parseExecLine('[1,2]', 'exec/a', ''), [{ path: 'exec/a', value: [1, 2], unit: '' }]);
  assert.deepEqual(parseExecLine('"hi"', 'exec/a', ''), [{ path: 'exec/a', value: 'hi', unit: '' }]);
  assert.deepEqual(parseExecLine('temperature 21.5', 'exec/dht', 'x'), [{ path: 'exec/dht/temperature', value: 21.5, unit: 'x' }]);
  assert.deepEqual(parseExecLine('zone/1 door  open', 'exec/alarm', ''), [{ path: 'exec/alarm/zone/1', value: 'door  open', unit: '' }]);
  assert.deepEqual(parseExecLine('a+b 1', 'exec/w', ''), [{ path: 'exec/w/a_b', value: 1, unit: '' }], 'no wildcards reach a topic');
  assert.deepEqual(parseExecLine('open', 'exec/door', ''), [{ path: 'exec/door', value: 'open', unit: '' }]);
  assert.deepEqual(parseExecLine('   ', 'exec/door', ''), []);
  assert.equal(parseExecLine('{"value":', 'exec/x', ''), 'invalid JSON');
  assert.equal(parseExecLine('{"value":{}}', 'exec/x', ''), 'a "value" must be a number or a string');
  assert.equal(parseExecLine('/// 3', 'exec/x', ''), 'empty name');
});

test('periodic: runs on its interval, parses every line, logs stderr, stops cleanly', async () => {
  const s = sink();
  const { lines, log } = logger();
  const cfg: ExecSensorConfig = { name: 'mix', command: `echo 21.5; echo "humidity 40"; echo '{"a":1,"b":"x"}'; echo oops >&2`, intervalSec: 0.15 };
  const sensor = new ExecSensor(cfg, s, { log });
  sensor.start();
  try {
    await until(() => sensor.starts >= 3, 5000, 'three runs');
    assert.deepEqual(s.declared, ['exec/mix ']);
    assert.deepEqual(s.offered.slice(0, 4), [
      { path: 'exec/mix', value: 21.5, unit: '' },
      { path: 'exec/mix/humidity', value: 40, unit: '' },
      { path: 'exec/mix/a', value: 1, unit: '' },
      { path: 'exec/mix/b', value: 'x', unit: '' },
    ]);
    assert.ok(lines.includes('warn exec mix: oops'), 'stderr goes to the log');
  } finally {
    await sensor.stop();
  }
  const starts = sensor.starts;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(sensor.starts, starts, 'no run after stop');
});

test('periodic: a run that outlives its timeout is terminated and the next run still comes', async () => {
  const exits: ExecExit[] = [];
  const { lines, log } = logger();
  const sensor = new ExecSensor({ name: 'slow', command: 'echo 1; exec sleep 5', intervalSec: 0.3, timeoutSec: 0.1 }, sink(), { log, onExit: (e) => exits.push(e) });
  sensor.start();
  try {
    await until(() => exits.length >= 2, 5000, 'two terminated runs');
    assert.equal(exits[0]!.signal, 'SIGTERM');
    assert.ok(exits[0]!.ranMs < 1000);
    assert.ok(lines.some((l) => l.includes('still running after 100 ms')));
  } finally {
    await sensor.stop();
  }
});

test('long-running: lines arrive as printed; stop terminates the whole process group', async () => {
  const s = sink();
  let pidFile = '';
  const sensor = new ExecSensor(
    { name: 'stream', command: 'for i in 1 2 3; do echo "v $i"; sleep 0.05; done; sleep 30 & echo "child $!"; wait', topic: 'garden/soil', unit: '%' },
    s,
  );
  sensor.start();
  try {
    await until(() => s.offered.some((o) => o.path === 'garden/soil/child'), 5000, 'the background child');
    assert.deepEqual(s.offered.slice(0, 3), [
      { path: 'garden/soil/v', value: 1, unit: '%' },
      { path: 'garden/soil/v', value: 2, unit: '%' },
      { path: 'garden/soil/v', value: 3, unit: '%' },
    ]);
    pidFile = String(s.offered.find((o) => o.path === 'garden/soil/child')!.value);
    assert.ok(alive(Number(pidFile)));
    assert.equal(sensor.starts, 1);
  } finally {
    await sensor.stop();
  }
  await until(() => !alive(Number(pidFile)), 3000, 'the grandchild to be gone');
});

test('long-running: a crashing program restarts with doubling backoff, capped; stderr is logged', async () => {
  const exits: ExecExit[] = [];
  const { lines, log } = logger();
  const sensor = new ExecSensor(
    { name: 'crash', command: 'echo 7; echo boom >&2; exit 3', restart: { minDelaySec: 0.05, maxDelaySec: 0.2, stableSec: 10 } },
    sink(),
    { log, onExit: (e) => exits.push(e) },
  );
  sensor.start();
  try {
    await until(() => exits.length >= 5, 5000, 'five exits');
  } finally {
    await sensor.stop();
  }
  assert.deepEqual(exits.slice(0, 5).map((e) => e.restartInMs), [50, 100, 200, 200, 200]);
  assert.ok(exits.every((e) => e.code === 3));
  assert.ok(lines.includes('warn exec crash: boom'));
  assert.ok(lines.some((l) => l.includes('exited with code 3') && l.includes('restarting in 100 ms')));
});

test('a program that runs long enough resets the backoff', async () => {
  const exits: ExecExit[] = [];
  const sensor = new ExecSensor(
    { name: 'flaky', command: 'sleep 0.15; exit 1', restart: { minDelaySec: 0.05, maxDelaySec: 1, stableSec: 0.1 } },
    sink(),
    { onExit: (e) => exits.push(e) },
  );
  sensor.start();
  try {
    await until(() => exits.length >= 3, 5000, 'three exits');
  } finally {
    await sensor.stop();
  }
  assert.deepEqual(exits.slice(0, 3).map((e) => e.restartInMs), [50, 50, 50]);
});

test('a missing program is logged and retried with backoff, not thrown', async () => {
  const exits: ExecExit[] = [];
  const { lines, log } = logger();
  const sensor = new ExecSensor({ name: 'nope', command: ['/nonexistent/sensor-program'], restart: { minDelaySec: 0.05, maxDelaySec: 0.1 } }, sink(), {
    log,
    onExit: (e) => exits.push(e),
  });
  sensor.start();
  try {
    await until(() => exits.length >= 2, 5000, 'two failed starts');
  } finally {
    await sensor.stop();
  }
  assert.ok(lines.some((l) => l.startsWith('error exec nope: cannot start /nonexistent/sensor-program') && l.includes('ENOENT')), lines.join('\n'));
  assert.deepEqual(exits.slice(0, 2).map((e) => e.restartInMs), [50, 100]);
});

test('an over-long stdout line is dropped with a warning; the next lines still count', async () => {
  const s = sink();
  const { lines, log } = logger();
  const big = MAX_LINE_BYTES + 10;
  const sensor = new ExecSensor({ name: 'big', command: `head -c ${big} /dev/zero | tr '\\0' 'x'; echo; echo 5; exec sleep 10` }, s, { log });
  sensor.start();
  try {
    await until(() => s.offered.length >= 1, 5000, 'the line after the long one');
  } finally {
    await sensor.stop();
  }
  assert.deepEqual(s.offered, [{ path: 'exec/big', value: 5, unit: '' }]);
  assert.ok(lines.some((l) => l.includes('stdout line longer than')));
});

test('property: any line gives a reason or samples whose paths are valid topic levels below the base', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string(), fc.json(), fc.tuple(fc.string(), fc.double()).map(([n, v]) => `${n} ${v}`)), (line) => {
      const out = parseExecLine(line, 'exec/x', 'u');
      if (typeof out === 'string') return;
      for (const s of out) {
        assert.ok(s.path === 'exec/x' || s.path.startsWith('exec/x/'), s.path);
        for (const level of s.path.split('/')) assert.match(level, /^[a-z0-9_.-]+$/, JSON.stringify(s.path));
        assert.ok(typeof s.value !== 'number' || Number.isFinite(s.value));
      }
    }),
    { numRuns: 2000 },
  );
});
