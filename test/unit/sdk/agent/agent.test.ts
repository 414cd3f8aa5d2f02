import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Agent, type AgentOptions, type Sample } from 'topicast/agent';
import { FakeClock, FakeTransport, scriptedReader } from './fakes.js';

const T = 1_700_000_000_000;
const INFO = { hostname: 'pi-01.local', os: 'Linux 6.1', arch: 'arm64', agentVersion: '0.1.0' };
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

function setup(readers: AgentOptions['readers'], options: Partial<AgentOptions> = {}, open = true) {
  const clock = new FakeClock(T);
  const transport = new FakeTransport(clock);
  transport.open = open;
  const agent = new Agent({ id: 'pi-01', transport, readers, info: INFO, clock, ...options });
  return { clock, transport, agent };
}

const constant = (path: string, value: number | string, unit = ''): ((n: number) => Sample[]) => () => [{ path, value, unit }];

test('on open: status online, then info with the sensor list, then readings, all retained', () => {
  const r = scriptedReader('temp', constant('cpu/temperature', 48.2, '°C'));
  const { transport, agent } = setup([r], {}, false);
  agent.start();
  assert.equal(transport.published.length, 0, 'nothing goes out while not connected');
  transport.setOpen(true);
  assert.deepEqual(transport.topics(), ['devices/pi-01/status', 'devices/pi-01/info', 'devices/pi-01/cpu/temperature']);
  assert.ok(transport.published.every((p) => p.retain));
  assert.equal(transport.published[0]!.payload, 'online');
  assert.deepEqual(transport.published[1]!.payload, {
    ...INFO,
    id: 'pi-01',
    transport: 'native',
    intervalSec: 5,
    sensors: [{ path: 'cpu/temperature', unit: '°C' }],
  });
  assert.deepEqual(transport.published[2]!.payload, { value: 48.2, unit: '°C', ts: T });
});

test('an already open transport still gets status and info before the first reading', () => {
  const { transport, agent } = setup([scriptedReader('load', constant('load/1m', 0.5))]);
  agent.start();
  assert.deepEqual(transport.topics(), ['devices/pi-01/status', 'devices/pi-01/info', 'devices/pi-01/load/1m']);
});

test('interval: read every intervalSec; an unchanged value is republished only every maxAgeSec', () => {
  const r = scriptedReader('mem', constant('memory/usage', 50, '%'));
  const { clock, transport, agent } = setup([r], { intervalSec: 5, maxAgeSec: 60 });
  agent.start();
  clock.advance(120_000);
  // primed at T, first round at +1 s (rates need two reads), then every 5 s
  assert.deepEqual(r.reads.slice(0, 4), [T, T + 1000, T + 6000, T + 11000]);
  assert.equal(r.reads.length, 2 + Math.floor((120_000 - 1000) / 5000));
  const readings = transport.published.filter((p) => p.topic.endsWith('memory/usage'));
  assert.deepEqual(readings.map((p) => p.at - T), [0, 61_000]);
  assert.ok(agent.stats.suppressed > 15);
});

test('deadband: publish only when the value moved by more than the threshold from the last published one', () => {
  const series = [48.0, 48.0, 48.3, 48.6, 48.4, 49.2, 49.2, 48.6];
  const r = scriptedReader('t', (n) => [{ path: 'cpu/temperature', value: series[Math.min(n, series.length - 1)]!, unit: '°C' }]);
  const { clock, transport, agent } = setup([r]); // °C default threshold 0.5
  agent.start();
  clock.advance(1000 + 5000 * 6);
  const values = transport.published.filter((p) => p.topic.endsWith('cpu/temperature')).map((p) => (p.payload as { value: number }).value);
  // 48.0 first; 48.3 (+0.3) no; 48.6 (+0.6) yes; 48.4 (−0.2) no; 49.2 (+0.6) yes; 49.2 no; 48.6 (−0.6) yes
  assert.deepEqual(values, [48.0, 48.6, 49.2, 48.6]);
});

test('deadband defaults per unit, threshold rules, -1 publishes every value', () => {
  let v = 0;
  const r = scriptedReader('n', () => {
    v += 0.6;
    return [
      { path: 'a/percent', value: v, unit: '%' }, // default 1 pp: every other step
      { path: 'a/plain', value: v, unit: '' }, // no default: every change
      { path: 'a/every', value: 1, unit: '' },
    ];
  });
  const { clock, transport, agent } = setup([r], { rules: [{ filter: 'a/every', settings: { threshold: -1 } }] });
  agent.start();
  clock.advance(1000 + 5000 * 10);
  const count = (t: string) => transport.published.filter((p) => p.topic.endsWith(t)).length;
  assert.equal(count('a/plain'), 11);
  assert.equal(count('a/every'), 11);
  assert.equal(count('a/percent'), 6);
});

test('per-sensor rules by filter: interval, disabled; a reader runs at its fastest sensor', () => {
  const slow = scriptedReader('slow', (n) => [{ path: 'slow/x', value: n, unit: '' }]);
  const fast = scriptedReader('fast', (n) => [
    { path: 'fast', value: n, unit: '' },
    { path: 'off', value: n, unit: '' },
  ]);
  const { clock, transport, agent } = setup([slow, fast], {
    rules: [
      { filter: 'slow/#', settings: { intervalSec: 20 } },
      { filter: 'off', settings: { enabled: false } },
      { filter: '+', settings: { intervalSec: 1 } },
    ],
  });
  agent.start();
  clock.advance(60_000);
  assert.deepEqual(slow.reads.map((t) => t - T), [0, 1000, 21_000, 41_000]);
  assert.equal(fast.reads.length, 61);
  const topics = transport.topics();
  assert.equal(topics.filter((t) => t.endsWith('/slow/x')).length, 3);
  assert.equal(topics.filter((t) => t.endsWith('/fast')).length, 61);
  assert.ok(!topics.some((t) => t.endsWith('/off')), 'a disabled sensor is never published');
  const info = transport.published.find((p) => p.topic.endsWith('/info'))!.payload as { sensors: { path: string }[] };
  assert.deepEqual(info.sensors.map((s) => s.path), ['fast', 'slow/x']);
});

test('offline: only the latest value per topic is kept, and goes out after status and info on reconnect', () => {
  const r = scriptedReader('abc', (n) => ['a', 'b', 'c'].map((p) => ({ path: p, value: n, unit: '' })));
  const { clock, transport, agent } = setup([r]);
  agent.start();
  transport.open = false; // the connection drops
  transport.take();
  clock.advance(1000 + 5000 * 3); // three rounds while disconnected
  assert.equal(transport.published.length, 0);
  transport.setOpen(true);
  const out = transport.take();
  assert.deepEqual(out.map((p) => p.topic), ['devices/pi-01/status', 'devices/pi-01/info', 'devices/pi-01/a', 'devices/pi-01/b', 'devices/pi-01/c']);
  const last = r.reads.length - 1;
  assert.deepEqual(out.slice(2).map((p) => (p.payload as { value: number }).value), [last, last, last]);
});

test('a reconnect republishes every sensor, even unchanged ones (the broker may have lost its retained store)', () => {
  const r = scriptedReader('k', constant('memory/total', 4e9, 'B'));
  const { clock, transport, agent } = setup([r]);
  agent.start();
  clock.advance(30_000);
  assert.equal(transport.take().filter((p) => p.topic.endsWith('memory/total')).length, 1);
  transport.open = false;
  transport.setOpen(true); // the broker restarted
  assert.deepEqual(transport.take().map((p) => p.topic), ['devices/pi-01/status', 'devices/pi-01/info', 'devices/pi-01/memory/total']);
});

test('the sensor table is bounded: new sensors beyond maxSensors are ignored, logged once and counted', () => {
  const warnings: string[] = [];
  const log = { error() {}, warn: (m: string) => warnings.push(m), info() {}, debug() {} };
  let n = 0;
  const runaway = scriptedReader('runaway', () => [{ path: `exec/x/k${n++}`, value: 1, unit: '' }, { path: `exec/x/k${n++}`, value: 1, unit: '' }]);
  const { clock, transport, agent } = setup([runaway], { maxSensors: 3, log });
  agent.start();
  clock.advance(1000 + 5000 * 5);
  assert.equal(agent.sensorCount, 3);
  assert.equal(agent.stats.ignored, 2 * 7 - 3);
  assert.deepEqual(warnings, ['more than 3 sensors: ignoring new ones, starting with exec/x/k3']);
  assert.equal(new Set(transport.topics()).size, 2 + 3);
});

test('a failed publish is counted, and the topic goes out again with its latest value at the next connection', async () => {
  const r = scriptedReader('x', (n) => [{ path: 'x', value: n, unit: '' }]);
  const { clock, transport, agent } = setup([r]);
  agent.start();
  transport.take();
  transport.failNext.add('devices/pi-01/x');
  clock.advance(1000 + 5000); // value 2 is considered and published: the publish rejects
  transport.open = false; // the connection was going down
  clock.advance(5000); // value 3 while disconnected
  await flush();
  assert.equal(agent.stats.failed, 1);
  assert.equal(transport.published.length, 0);
  transport.setOpen(true);
  const xs = transport.take().filter((p) => p.topic === 'devices/pi-01/x');
  assert.deepEqual(xs.map((p) => (p.payload as { value: number }).value), [3]);
});

test('stop: offline goes out through the transport close, and no timer is left', async () => {
  const { clock, transport, agent } = setup([scriptedReader('l', constant('load/1m', 1))]);
  agent.start();
  assert.ok(clock.pending > 0);
  await agent.stop();
  assert.deepEqual(transport.closedWith, { topic: 'devices/pi-01/status', payload: 'offline' });
  assert.equal(clock.pending, 0);
  const before = transport.published.length;
  clock.advance(60_000);
  assert.equal(transport.published.length, before);
});

test('cpu/temperature: the first CPU candidate in reader order, from a stable source', () => {
  let n = 0;
  const thermal = scriptedReader('thermal', () => [{ path: 'thermal/x86_pkg_temp/temperature', value: 52 + n++, unit: '°C', cpuTemperature: true }]);
  const hwmon = scriptedReader('hwmon', () => [{ path: 'hwmon/coretemp/temperature/package_id_0', value: 70, unit: '°C', cpuTemperature: true }]);
  const { clock, transport, agent } = setup([thermal, hwmon]);
  agent.start();
  clock.advance(1000 + 5000 * 2);
  const cpu = transport.published.filter((p) => p.topic === 'devices/pi-01/cpu/temperature').map((p) => (p.payload as { value: number }).value);
  assert.deepEqual(cpu, [52, 54, 55]);
  assert.ok(agent.sensorList().some((s) => s.path === 'cpu/temperature' && s.unit === '°C'));
});

test("payload 'number' publishes bare values; strings publish on change", () => {
  const states = ['Charging', 'Charging', 'Charging', 'Full'];
  const r = scriptedReader('b', (n) => [
    { path: 'power/bat0/capacity', value: 87, unit: '%' },
    { path: 'power/bat0/status', value: states[Math.min(n, 3)]!, unit: '' },
  ]);
  const { clock, transport, agent } = setup([r], { payload: 'number' });
  agent.start();
  clock.advance(1000 + 5000 * 3);
  const payloads = transport.published.filter((p) => p.topic.includes('/power/')).map((p) => p.payload);
  assert.deepEqual(payloads, [87, 'Charging', 'Full']);
});

test('info is republished when the sensor list changes, and only then', () => {
  const r = scriptedReader('disk', (n) => [
    { path: 'disk/root/usage', value: 40, unit: '%' },
    ...(n >= 3 ? [{ path: 'disk/media_usb/usage', value: 10, unit: '%' }] : []),
  ]);
  const { clock, transport, agent } = setup([r]);
  agent.start();
  clock.advance(1000 + 5000 * 5);
  const infos = transport.published.filter((p) => p.topic.endsWith('/info'));
  assert.equal(infos.length, 2);
  assert.deepEqual((infos[1]!.payload as { sensors: unknown }).sensors, [
    { path: 'disk/media_usb/usage', unit: '%' },
    { path: 'disk/root/usage', unit: '%' },
  ]);
});

test('exec-style offers skip the interval gate but not the deadband; declared sensors are in info', () => {
  const { clock, transport, agent } = setup([]);
  agent.start();
  agent.declareSensor('exec/door', '');
  for (const v of [1, 1, 0, 0, 1]) {
    agent.offer({ path: 'exec/door', value: v, unit: '' }, { gate: false });
    clock.advance(100);
  }
  const door = transport.published.filter((p) => p.topic.endsWith('exec/door')).map((p) => (p.payload as { value: number }).value);
  assert.deepEqual(door, [1, 0, 1]);
  agent.offer({ path: 'exec/json', value: { a: [1, 2] }, unit: '' }, { gate: false });
  const json = transport.published.find((p) => p.topic.endsWith('exec/json'));
  assert.deepEqual(json?.payload, { a: [1, 2] }, 'objects from programs are published as they are');
  const infos = transport.published.filter((p) => p.topic.endsWith('/info'));
  assert.ok((infos.at(-1)!.payload as { sensors: { path: string }[] }).sensors.some((s) => s.path === 'exec/door'));
});

test('a reader that throws is logged and skipped; the others keep publishing', () => {
  const warnings: string[] = [];
  const bad = { name: 'bad', read: (): Sample[] => { throw new Error('EIO'); } };
  const good = scriptedReader('good', (n) => [{ path: 'g', value: n, unit: '' }]);
  const log = { error() {}, warn: (m: string) => warnings.push(m), info() {}, debug() {} };
  const { clock, transport, agent } = setup([bad, good], { log });
  agent.start();
  clock.advance(6000);
  assert.ok(warnings.some((w) => w.includes('reader bad failed: EIO')));
  assert.equal(transport.topics().filter((t) => t.endsWith('/g')).length, 2);
});

test('property: the deadband publishes exactly the values that moved past the threshold or aged out', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: -50, max: 50 }), { minLength: 1, maxLength: 60 }), fc.integer({ min: 0, max: 10 }), fc.integer({ min: 1, max: 8 }), (steps, threshold, maxAgeRounds) => {
      let v = 0;
      const series = steps.map((d) => (v += d / 10));
      const r = scriptedReader('s', (n) => [{ path: 's', value: series[Math.min(n, series.length - 1)]!, unit: '' }]);
      const { clock, transport, agent } = setup([r], { rules: [{ filter: 's', settings: { threshold: threshold / 10, intervalSec: 1, maxAgeSec: maxAgeRounds } }] });
      agent.start();
      clock.advance(1000 * (series.length - 1));
      const published = transport.published.filter((p) => p.topic.endsWith('/s')).map((p) => ({ value: (p.payload as { value: number }).value, at: p.at }));
      // Reference: walk the considered values (every read, 1 s apart) with the rule written out.
      const expected: { value: number; at: number }[] = [];
      for (let i = 0; i < r.reads.length; i++) {
        const value = series[Math.min(i, series.length - 1)]!;
        const at = r.reads[i]!;
        const lastPub = expected.at(-1);
        if (!lastPub || Math.abs(value - lastPub.value) > threshold / 10 || at - lastPub.at >= maxAgeRounds * 1000 - 50) expected.push({ value, at });
      }
      assert.deepEqual(published, expected);
    }),
    { numRuns: 300 },
  );
});
