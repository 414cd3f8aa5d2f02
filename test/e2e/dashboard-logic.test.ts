/**
 * The dashboard's pure logic, outside the browser: payload decoding (the
 * MessagePack / JSON / text / hex guess), readings from the device convention,
 * display formatting, the bounded series and the publish form's encodings.
 * The dashboard sources are browser TypeScript outside this project, so they
 * are bundled for Node with esbuild (as the build does for the browser) and imported.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { pack, unpack } from 'msgpackr';

const SRC = fileURLToPath(new URL('../../../broker/dashboard/src/', import.meta.url));
// Inside test/dist (git-ignored), so the bundles' bare imports (msgpackr, topicast) resolve from the repository.
const out = mkdtempSync(join(fileURLToPath(new URL('.', import.meta.url)), '.dashboard-logic-'));
after(() => rmSync(out, { recursive: true, force: true }));

type Format = 'msgpack' | 'json' | 'text' | 'binary' | 'empty';
interface Decoded { format: Format; value: unknown }
interface Mods {
  decode: { decodePayload(b: Uint8Array, contentType: string | undefined): Decoded; formatValue(d: Decoded, pretty?: boolean): string; toHex(b: Uint8Array, max?: number): string };
  devices: { toReading(d: Decoded): { value: unknown; unit: string | undefined; tsMs: number | undefined } };
  format: { formatNumber(n: number): string; formatBytes(n: number, perSecond?: boolean): string; formatWithUnit(v: number, unit?: string): string; formatDuration(s: number): string; formatRate(r: number): string; formatAgo(then: number, now: number): string };
  series: {
    SeriesStore: new (maxPoints?: number, windowSec?: number) => {
      push(topic: string, t: number, v: number, unit?: string, provisional?: boolean): { xs: number[]; ys: number[]; unit?: string };
      prefill(topic: string, points: { x: number; y: number }[], unit: string | undefined): { xs: number[]; ys: number[] };
      get(topic: string): { xs: number[]; ys: number[] } | undefined;
    };
  };
  publish: { encodeValue(text: string, encoding: 'msgpack' | 'json' | 'text'): Uint8Array; parseValue(text: string): unknown };
}

async function load(): Promise<Mods> {
  const names = ['decode', 'devices', 'format', 'series', 'publish'] as const;
  await build({
    entryPoints: names.map((n) => ({ in: join(SRC, `${n}.ts`), out: n })),
    outdir: out,
    bundle: true,
    format: 'esm',
    platform: 'node',
    packages: 'external',
    logLevel: 'error',
  });
  const mods: Record<string, unknown> = {};
  for (const n of names) mods[n] = await import(pathToFileURL(join(out, `${n}.js`)).href);
  return mods as unknown as Mods;
}
const m = await load();
const utf8 = (s: string): Uint8Array => new TextEncoder().encode(s);

test('decode: by the content type the payload arrived with (PROTOCOL.md §8)', () => {
  const { decodePayload } = m.decode;
  const MP = 'application/msgpack';
  assert.deepEqual(decodePayload(pack({ value: 48.2, unit: '°C' }), MP), { format: 'msgpack', value: { value: 48.2, unit: '°C' } });
  assert.deepEqual(decodePayload(pack('online'), MP), { format: 'msgpack', value: 'online' });
  assert.deepEqual(decodePayload(utf8('{"a":[1,2]}'), 'application/json'), { format: 'json', value: { a: [1, 2] } });
  assert.deepEqual(decodePayload(utf8('48.2'), 'text/plain; charset=utf-8'), { format: 'text', value: '48.2' });
  // Untagged (mosquitto_pub, MQTT 3.1.1): JSON when it parses, else text, else bytes.
  assert.deepEqual(decodePayload(utf8('48.2'), undefined), { format: 'json', value: 48.2 });
  assert.deepEqual(decodePayload(utf8('5'), undefined), { format: 'json', value: 5 }, 'mosquitto_pub -m 5 is 5, not the fixint 53');
  assert.deepEqual(decodePayload(utf8('online'), undefined), { format: 'text', value: 'online' });
  assert.deepEqual(decodePayload(utf8('température 21 °C'), undefined), { format: 'text', value: 'température 21 °C' });
  assert.deepEqual(decodePayload(new Uint8Array(), undefined), { format: 'empty', value: '' });
  const bin = decodePayload(new Uint8Array([0xc1, 0x00, 0xff]), undefined);
  assert.equal(bin.format, 'binary');
  assert.equal(m.decode.formatValue(bin), 'c1 00 ff');
  // Valid UTF-8 with control characters is binary, not text.
  assert.equal(decodePayload(new Uint8Array([0x01, 0x02, 0x03]), undefined).format, 'binary');
  // Tagged but not what the tag says, or a type nobody here reads: the bytes, never a throw.
  assert.equal(decodePayload(utf8('{'), 'application/json').format, 'binary');
  assert.equal(decodePayload(new Uint8Array([0xc1]), MP).format, 'binary');
  assert.equal(decodePayload(utf8('a,b'), 'application/x-custom').format, 'binary');
  assert.deepEqual(decodePayload(new Uint8Array([9]), 'application/octet-stream'), { format: 'binary', value: new Uint8Array([9]) });
});

test('decode: every MessagePack value the SDK may send round-trips', () => {
  for (const v of [0, -1, 255, 65536, 1.5, -0.25, true, false, null, 'x', 'a longer string', [1, 'two', null], { nested: { deep: [1, 2, 3] } }]) {
    const d = m.decode.decodePayload(pack(v), 'application/msgpack');
    assert.equal(d.format, 'msgpack', JSON.stringify(v));
    assert.deepEqual(d.value, unpack(pack(v)));
  }
});

test('formatValue: compact and pretty, never throws', () => {
  const { formatValue, toHex } = m.decode;
  assert.equal(formatValue({ format: 'json', value: { a: 1 } }), '{"a":1}');
  assert.equal(formatValue({ format: 'json', value: { a: 1 } }, true), '{\n  "a": 1\n}');
  assert.equal(formatValue({ format: 'msgpack', value: new Uint8Array([1, 2]) }), '"<2 bytes: 01 02>"');
  assert.equal(formatValue({ format: 'msgpack', value: 10n }), '"10"');
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  assert.equal(formatValue({ format: 'msgpack', value: cyclic }), '[object Object]');
  assert.equal(formatValue({ format: 'empty', value: '' }), '(empty)');
  assert.equal(toHex(new Uint8Array(100), 4), '00 00 00 00 …');
});

test('readings: a number, a numeric string, or { value, unit, ts } with ts in s or ms', () => {
  const { toReading } = m.devices;
  assert.deepEqual(toReading({ format: 'msgpack', value: 48.2 }), { value: 48.2, unit: undefined, tsMs: undefined });
  assert.deepEqual(toReading({ format: 'text', value: '21.5' }), { value: 21.5, unit: undefined, tsMs: undefined });
  assert.deepEqual(toReading({ format: 'text', value: 'open' }), { value: 'open', unit: undefined, tsMs: undefined });
  assert.deepEqual(toReading({ format: 'text', value: '' }), { value: '', unit: undefined, tsMs: undefined });
  assert.deepEqual(toReading({ format: 'msgpack', value: { value: 3, unit: '%', ts: 1_700_000_000 } }), { value: 3, unit: '%', tsMs: 1_700_000_000_000 });
  assert.deepEqual(toReading({ format: 'json', value: { value: 3, unit: 'V', ts: 1_700_000_000_123 } }), { value: 3, unit: 'V', tsMs: 1_700_000_000_123 });
  assert.deepEqual(toReading({ format: 'json', value: { value: true } }), { value: true, unit: undefined, tsMs: undefined });
  assert.equal(toReading({ format: 'json', value: { value: { x: 1 }, unit: 7 } }).value, '{"x":1}');
  assert.equal(toReading({ format: 'json', value: [1, 2] }).value, '[1,2]');
});

test('format: numbers by magnitude, bytes, units, durations, rates', () => {
  const f = m.format;
  assert.equal(f.formatNumber(48.2), '48.2');
  assert.equal(f.formatNumber(48.256), '48.26');
  assert.equal(f.formatNumber(1230.4), '1230');
  assert.equal(f.formatNumber(0.03125), '0.031');
  assert.equal(f.formatNumber(100.04), '100');
  assert.equal(f.formatNumber(7), '7');
  assert.equal(f.formatBytes(512), '512 B');
  assert.equal(f.formatBytes(1536), '1.5 KB');
  assert.equal(f.formatBytes(1.2e9), '1.1 GB');
  assert.equal(f.formatBytes(2048, true), '2.0 KB/s');
  assert.equal(f.formatWithUnit(48.2, '°C'), '48.2 °C');
  assert.equal(f.formatWithUnit(22.4, '%'), '22.4%');
  assert.equal(f.formatWithUnit(1_209_600, 's'), '14d 0h');
  assert.equal(f.formatWithUnit(30, 's'), '30 s');
  assert.equal(f.formatWithUnit(5, undefined), '5');
  assert.equal(f.formatDuration(3725), '1h 2m');
  assert.equal(f.formatRate(0.01), '');
  assert.equal(f.formatRate(2.345), '2.3/s');
  assert.equal(f.formatRate(42.4), '42/s');
  assert.equal(f.formatAgo(0, 500), 'just now');
  assert.equal(f.formatAgo(0, 90_000), '1 min ago');
});

test('series: bounded in points and in time, x never decreasing', () => {
  const store = new m.series.SeriesStore(5, 100);
  for (let i = 0; i < 12; i++) store.push('t', 1000 + i, i, 'C');
  let s = store.get('t')!;
  assert.deepEqual(s.xs, [1007, 1008, 1009, 1010, 1011]);
  assert.deepEqual(s.ys, [7, 8, 9, 10, 11]);
  store.push('t', 900, 99); // a clock step back: appended at the last x, replacing its value
  s = store.get('t')!;
  assert.deepEqual(s.xs.slice(-1), [1011]);
  assert.deepEqual(s.ys.slice(-1), [99]);
  store.push('t', 1200, 1); // 189 s later: everything older than the 100 s window goes
  assert.deepEqual(store.get('t')!.xs, [1200]);
});

test('series prefill: history goes before the points seen live, never doubled; a provisional retained point is replaced', () => {
  const store = new m.series.SeriesStore(6, 100);
  store.push('t', 1010, 10);
  store.push('t', 1011, 11);
  const history = [1005, 1006, 1006, 1008, 1010, 1011].map((x) => ({ x, y: x - 1000 }));
  const s = store.prefill('t', history, undefined);
  assert.deepEqual(s.xs, [1005, 1006, 1008, 1010, 1011], 'older points only, x strictly increasing');
  assert.deepEqual(s.ys, [5, 6, 8, 10, 11]);
  // A retained value timed by its arrival is the history's newest message: replaced by it.
  const r = new m.series.SeriesStore(3, 100);
  r.push('t', 2000, 7, undefined, true);
  assert.deepEqual(r.prefill('t', [{ x: 1990, y: 5 }, { x: 1995, y: 6 }, { x: 1999, y: 7 }], undefined).xs, [1990, 1995, 1999]);
  assert.deepEqual(r.prefill('t', [{ x: 1, y: 1 }], undefined).xs, [1990, 1995, 1999], 'bounded: the oldest go first');
});

test('publish encodings: JSON when it parses, else text; MessagePack, JSON or raw text bytes', () => {
  const { encodeValue, parseValue } = m.publish;
  assert.deepEqual(parseValue('{"on":true}'), { on: true });
  assert.equal(parseValue('42'), 42);
  assert.equal(parseValue('hello'), 'hello');
  assert.deepEqual(unpack(encodeValue('{"on": true}', 'msgpack')), { on: true });
  assert.equal(unpack(encodeValue('hello', 'msgpack')), 'hello');
  assert.equal(new TextDecoder().decode(encodeValue('{"on": true}', 'json')), '{"on":true}');
  assert.equal(new TextDecoder().decode(encodeValue('hello', 'json')), '"hello"');
  assert.equal(new TextDecoder().decode(encodeValue('{"on": true}', 'text')), '{"on": true}');
  assert.equal(encodeValue('', 'text').length, 0, 'an empty text payload deletes a retained value');
});
