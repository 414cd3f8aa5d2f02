import { test } from 'node:test';
import assert from 'node:assert/strict';
import { relative } from 'node:path';
import type { Sample } from 'topicast/agent';
import {
  cpuReader, diskReader, diskstatsReader, hwmonReader, loadReader, memoryReader, netReader, powerSupplyReader,
  thermalReader, uptimeReader, createReaders, READER_NAMES, topicLevel, naturalCompare,
} from 'topicast/agent';
import { cpSync } from 'node:fs';
import { copyFixture, fixture } from './fixtures.js';

const byPath = (samples: Sample[]) => Object.fromEntries(samples.map((s) => [s.path, s]));
const values = (samples: Sample[]) => Object.fromEntries(samples.map((s) => [s.path, s.value]));

test('topicLevel keeps topics free of wildcards and separators', () => {
  assert.equal(topicLevel('Package id 0'), 'package_id_0');
  assert.equal(topicLevel('a/b+c#'), 'a_b_c');
  assert.equal(topicLevel('+++'), '_');
  assert.equal(topicLevel('cpu-thermal'), 'cpu-thermal');
});

test('naturalCompare orders sysfs names by their numbers, without ICU', () => {
  const names = ['hwmon10', 'hwmon2', 'hwmon1', 'temp10_input', 'temp2_input', 'temp1_label', 'temp1_input', 'cpu0', 'cpu', 'a02', 'a1', 'a2'];
  assert.deepEqual([...names].sort(naturalCompare), ['a1', 'a02', 'a2', 'cpu', 'cpu0', 'hwmon1', 'hwmon2', 'hwmon10', 'temp1_input', 'temp1_label', 'temp2_input', 'temp10_input']);
  assert.equal(naturalCompare('x9', 'x9'), 0);
  assert.ok(naturalCompare('thermal_zone9', 'thermal_zone10') < 0);
  assert.ok(naturalCompare('b', 'a10') > 0);
});

test('cpu: usage needs two reads; total and per core from /proc/stat, frequencies from cpufreq', () => {
  const t = copyFixture('pi');
  try {
    const cpu = cpuReader({ root: t.root });
    const first = cpu.read(0);
    assert.deepEqual(first.filter((s) => s.path.endsWith('usage')), []);
    assert.deepEqual(values(first), { 'cpu/0/frequency': 600, 'cpu/1/frequency': 1800, 'cpu/2/frequency': 1800, 'cpu/3/frequency': 1800 });
    t.advance();
    const second = byPath(cpu.read(5000));
    assert.deepEqual(second['cpu/usage'], { path: 'cpu/usage', value: 25, unit: '%' });
    assert.equal(second['cpu/0/usage']!.value, 80);
    assert.equal(second['cpu/1/usage']!.value, 0);
    assert.equal(second['cpu/3/usage']!.value, 20);
    assert.equal(second['cpu/0/frequency']!.unit, 'MHz');
  } finally {
    t.dispose();
  }
});

test('cpu: identical counters (reads within one tick) give no usage rather than NaN', () => {
  const cpu = cpuReader({ root: fixture('pi') });
  cpu.read(0);
  assert.deepEqual(cpu.read(1).filter((s) => s.path.endsWith('usage')), []);
});

test('load averages', () => {
  assert.deepEqual(loadReader({ root: fixture('laptop') }).read(0), [
    { path: 'load/1m', value: 1.25, unit: '' },
    { path: 'load/5m', value: 0.9, unit: '' },
    { path: 'load/15m', value: 0.75, unit: '' },
  ]);
});

test('memory and swap from meminfo (used = total - MemAvailable)', () => {
  const v = values(memoryReader({ root: fixture('laptop') }).read(0));
  assert.equal(v['memory/total'], 16000000 * 1024);
  assert.equal(v['memory/available'], 8000000 * 1024);
  assert.equal(v['memory/used'], 8000000 * 1024);
  assert.equal(v['memory/usage'], 50);
  assert.equal(v['swap/used'], 500000 * 1024);
  assert.equal(v['swap/usage'], 25);
  const vm = values(memoryReader({ root: fixture('vm') }).read(0));
  assert.equal(vm['swap/total'], 0);
  assert.equal(vm['swap/usage'], undefined, 'no swap usage % without swap');
  assert.ok((vm['memory/usage'] as number) >= 0 && (vm['memory/usage'] as number) <= 100);
});

test('uptime in whole seconds', () => {
  assert.deepEqual(uptimeReader({ root: fixture('pi') }).read(0), [{ path: 'uptime', value: 123456, unit: 's' }]);
});

test('thermal: Raspberry Pi thermal_zone0 is the CPU', () => {
  assert.deepEqual(thermalReader({ root: fixture('pi') }).read(0), [
    { path: 'thermal/cpu-thermal/temperature', value: 48.2, unit: '°C', cpuTemperature: true },
  ]);
});

test('thermal: laptop zones by type, unreadable zone skipped, x86_pkg_temp marked as CPU', () => {
  const s = thermalReader({ root: fixture('laptop') }).read(0);
  assert.deepEqual(s, [
    { path: 'thermal/acpitz/temperature', value: 45, unit: '°C' },
    { path: 'thermal/x86_pkg_temp/temperature', value: 52, unit: '°C', cpuTemperature: true },
  ]);
  assert.deepEqual(thermalReader({ root: fixture('vm') }).read(0), []);
});

test('hwmon: temperatures with labels, fans, voltages, currents, power, duplicate chips, device/ layout', () => {
  const s = byPath(hwmonReader({ root: fixture('laptop') }).read(0));
  assert.deepEqual(Object.keys(s), [
    'hwmon/acpitz/temperature/temp1',
    'hwmon/coretemp/temperature/package_id_0',
    'hwmon/coretemp/temperature/core_0',
    'hwmon/coretemp/temperature/core_1',
    'hwmon/thinkpad/fan/fan1',
    'hwmon/thinkpad/fan/fan2',
    'hwmon/bat0/current/curr1',
    'hwmon/bat0/voltage/in0',
    'hwmon/nvme/temperature/composite',
    'hwmon/nvme_5/temperature/composite',
    'hwmon/it8728/voltage/vcore',
    'hwmon/it8728/power/power1',
  ]);
  assert.deepEqual(s['hwmon/coretemp/temperature/package_id_0'], { path: 'hwmon/coretemp/temperature/package_id_0', value: 52, unit: '°C', cpuTemperature: true });
  assert.equal(s['hwmon/coretemp/temperature/core_0']!.cpuTemperature, undefined);
  assert.deepEqual(s['hwmon/thinkpad/fan/fan1'], { path: 'hwmon/thinkpad/fan/fan1', value: 2900, unit: 'RPM' });
  assert.deepEqual(s['hwmon/bat0/voltage/in0'], { path: 'hwmon/bat0/voltage/in0', value: 12.4, unit: 'V' });
  assert.deepEqual(s['hwmon/bat0/current/curr1'], { path: 'hwmon/bat0/current/curr1', value: 1.2, unit: 'A' });
  assert.equal(s['hwmon/nvme/temperature/composite']!.value, 38.9);
  assert.equal(s['hwmon/it8728/voltage/vcore']!.value, 1.104);
  assert.deepEqual(s['hwmon/it8728/power/power1'], { path: 'hwmon/it8728/power/power1', value: 15.5, unit: 'W' });
  const pi = hwmonReader({ root: fixture('pi') }).read(0);
  assert.deepEqual(pi, [{ path: 'hwmon/cpu_thermal/temperature/temp1', value: 48.2, unit: '°C', cpuTemperature: true }]);
  assert.deepEqual(hwmonReader({ root: fixture('vm') }).read(0), []);
});

test('disk usage: real filesystems only, df arithmetic, bind mounts and escaped names', () => {
  const root = fixture('laptop');
  const asked: string[] = [];
  const GiB = 1024 ** 3;
  const sizes: Record<string, { bsize: number; blocks: number; bfree: number; bavail: number }> = {
    '': { bsize: 4096, blocks: (100 * GiB) / 4096, bfree: (40 * GiB) / 4096, bavail: (35 * GiB) / 4096 },
    'boot/efi': { bsize: 512, blocks: 1048576, bfree: 524288, bavail: 524288 },
    'media/usb stick': { bsize: 4096, blocks: 1000, bfree: 1000, bavail: 1000 },
  };
  const disk = diskReader({
    root,
    statfs: (p) => {
      const rel = relative(root, p);
      asked.push(rel);
      const s = sizes[rel];
      if (!s) throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
      return s;
    },
  });
  const v = values(disk.read(0));
  assert.deepEqual(asked, ['', 'boot/efi', 'media/usb stick'], 'pseudo filesystems and the second mount of a device are not asked');
  assert.equal(v['disk/root/total'], 100 * GiB);
  assert.equal(v['disk/root/used'], 60 * GiB);
  assert.equal(v['disk/root/free'], 35 * GiB);
  assert.equal(v['disk/root/usage'], 63.2); // 60 / (60 + 35), as df rounds it
  assert.equal(v['disk/boot_efi/usage'], 50);
  assert.equal(v['disk/media_usb_stick/usage'], 0);
});

test('disk usage on the live statfs of a fixture tree (the VM tree)', () => {
  const samples = diskReader({ root: fixture('vm') }).read(0);
  const v = values(samples);
  assert.ok((v['disk/root/total'] as number) > 0, JSON.stringify(samples));
  assert.ok(Object.keys(v).every((p) => p.startsWith('disk/root/')), 'only / is a real filesystem in this VM');
});

test('diskstats: whole disks only, bytes/s from 512-byte sectors, busy %', () => {
  const t = copyFixture('pi');
  try {
    const r = diskstatsReader({ root: t.root });
    assert.deepEqual(r.read(1000), []);
    t.advance();
    assert.deepEqual(r.read(6000), [
      { path: 'diskio/mmcblk0/read', value: 2097152, unit: 'B/s' },
      { path: 'diskio/mmcblk0/write', value: 4194304, unit: 'B/s' },
      { path: 'diskio/mmcblk0/busy', value: 20, unit: '%' },
    ]);
  } finally {
    t.dispose();
  }
});

test('diskstats on the VM tree: vda, not loop or zram', () => {
  const r = diskstatsReader({ root: fixture('vm') });
  r.read(0);
  assert.deepEqual(r.read(5000).map((s) => s.path), ['diskio/vda/read', 'diskio/vda/write', 'diskio/vda/busy']);
});

test('net: bytes/s per interface without lo, error counters, wrap skips a round', () => {
  const t = copyFixture('pi');
  try {
    const r = netReader({ root: t.root });
    assert.deepEqual(r.read(0).map((s) => s.path), ['net/eth0/rx_errors', 'net/eth0/tx_errors', 'net/wlan0/rx_errors', 'net/wlan0/tx_errors']);
    t.advance();
    const v = values(r.read(5000));
    assert.deepEqual(v, {
      'net/eth0/rx': 10240, 'net/eth0/tx': 2048, 'net/eth0/rx_errors': 2, 'net/eth0/tx_errors': 0,
      'net/wlan0/rx': 0, 'net/wlan0/tx': 0, 'net/wlan0/rx_errors': 0, 'net/wlan0/tx_errors': 0,
    });
    const wrapped = copyFixture('pi'); // counters back at their first values: a wrap
    try {
      const w = netReader({ root: t.root });
      w.read(0);
      cpSync(wrapped.root, t.root, { recursive: true });
      assert.equal(values(w.read(5000))['net/eth0/rx'], undefined);
    } finally {
      wrapped.dispose();
    }
  } finally {
    t.dispose();
  }
});

test('power supply: laptop battery and mains; none on the Pi and the VM', () => {
  assert.deepEqual(powerSupplyReader({ root: fixture('laptop') }).read(0), [
    { path: 'power/ac/online', value: 0, unit: '' },
    { path: 'power/bat0/capacity', value: 87, unit: '%' },
    { path: 'power/bat0/status', value: 'Discharging', unit: '' },
    { path: 'power/bat0/voltage', value: 12.4, unit: 'V' },
    { path: 'power/bat0/current', value: 1.2, unit: 'A' },
    { path: 'power/bat0/power', value: 14.88, unit: 'W' },
  ]);
  assert.deepEqual(powerSupplyReader({ root: fixture('pi') }).read(0), []);
  assert.deepEqual(powerSupplyReader({ root: fixture('vm') }).read(0), []);
});

test('a missing root gives no samples and no exception from any reader', () => {
  for (const r of createReaders(READER_NAMES, { root: '/nonexistent-agent-root' })) {
    assert.deepEqual([r.read(0), r.read(5000)], [[], []], r.name);
  }
});

test('every reader on the live machine returns well-formed samples', () => {
  for (const r of createReaders()) {
    r.read(Date.now() - 1000);
    for (const s of r.read(Date.now())) {
      assert.match(s.path, /^[a-z0-9_.-]+(\/[a-z0-9_.-]+)*$/, r.name);
      assert.ok(typeof s.value === 'string' || Number.isFinite(s.value), `${s.path}=${s.value}`);
    }
  }
});

test('net: interfaces that are down are left out (laptop ethernet unplugged, VM ifb devices)', () => {
  const laptop = netReader({ root: fixture('laptop') }).read(0).map((s) => s.path);
  assert.deepEqual(laptop, ['net/wlp2s0/rx_errors', 'net/wlp2s0/tx_errors']);
  assert.deepEqual(values(netReader({ root: fixture('laptop') }).read(0)), { 'net/wlp2s0/rx_errors': 3, 'net/wlp2s0/tx_errors': 1 });
  const vm = netReader({ root: fixture('vm') }).read(0).map((s) => s.path);
  assert.deepEqual(vm, ['net/eth0/rx_errors', 'net/eth0/tx_errors']);
});
