/**
 * The pure parts of `topicast pub` / `topicast sub`: the content type each source is sent with,
 * stdin line splitting (mosquitto_pub -l rules, across chunk boundaries), how a value is printed,
 * and option parsing. The processes themselves: test/integration/broker/cli/pubsub.test.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { msgpack } from 'topicast';
import type * as ArgsModule from '../../../../broker/src/cli/args.js';
import type * as PubModule from '../../../../broker/src/cli/pub.js';
import type * as RenderModule from '../../../../broker/src/cli/render.js';

const dist = (p: string): string => new URL(`../../../../../broker/dist/cli/${p}`, import.meta.url).href;
const { textPayload, filePayload, readLines } = (await import(dist('pub.js'))) as typeof PubModule;
const { renderValue } = (await import(dist('render.js'))) as typeof RenderModule;
const { parseOptions, checkUrl, CliError } = (await import(dist('args.js'))) as typeof ArgsModule;

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

test('textPayload: the bytes unchanged; JSON text tagged application/json, other text text/plain, non-UTF-8 octet-stream', () => {
  const cases: [string | Uint8Array, string][] = [
    ['7', 'application/json'],
    ['-3.5e2', 'application/json'],
    ['{"a": [1, 2]}', 'application/json'],
    ['"quoted"', 'application/json'],
    ['null', 'application/json'],
    ['online', 'text/plain'],
    ['007', 'text/plain'],
    ['{"a":', 'text/plain'],
    ['', 'text/plain'],
    [Uint8Array.of(0xff, 0x31), 'application/octet-stream'],
  ];
  for (const [input, contentType] of cases) {
    const b = typeof input === 'string' ? bytes(input) : input;
    const out = textPayload(b, undefined, 'x');
    assert.equal(out.contentType, contentType, String(input));
    assert.deepEqual([...out.payload], [...b], 'bytes unchanged');
  }
});

test('textPayload with --content-type: msgpack encodes the value, other types tag the bytes and must fit', () => {
  const m = textPayload(bytes('{"a":1}'), 'application/msgpack', 'x');
  assert.equal(m.contentType, 'application/msgpack');
  assert.deepEqual(msgpack.decode(m.payload), { a: 1 });
  assert.equal(msgpack.decode(textPayload(bytes('word'), 'application/msgpack', 'x').payload), 'word');
  assert.deepEqual(textPayload(bytes('7'), 'text/plain', 'x'), { payload: bytes('7'), contentType: 'text/plain' });
  assert.deepEqual(textPayload(bytes('{"v":1}'), 'application/vnd.acme+json', 'x'), { payload: bytes('{"v":1}'), contentType: 'application/vnd.acme+json' });
  assert.throws(() => textPayload(bytes('word'), 'application/json', 'line 4'), (e: unknown) => e instanceof CliError && e.exitCode === 2 && /^line 4 is not JSON/.test(e.message));
  assert.throws(() => textPayload(Uint8Array.of(0xff), 'application/msgpack', 'line 2'), /line 2 is not UTF-8 text/);
});

test('filePayload: octet-stream by default; a declared type is checked against the bytes', () => {
  const bin = Uint8Array.of(0, 0xff, 10);
  assert.deepEqual(filePayload(bin, undefined, 'f'), { payload: bin, contentType: 'application/octet-stream' });
  assert.deepEqual(filePayload(bin, 'image/jpeg', 'f'), { payload: bin, contentType: 'image/jpeg' });
  assert.throws(() => filePayload(bin, 'text/plain', '-f a.bin'), /-f a\.bin is not UTF-8 text/);
  assert.throws(() => filePayload(bin, 'application/json', '-f a.bin'), /-f a\.bin is not JSON/);
  assert.throws(() => filePayload(Uint8Array.of(0xc1), 'application/msgpack', '-f a.bin'), /not one MessagePack value/);
  const packed = msgpack.encode({ a: 1 });
  assert.equal(filePayload(packed, 'application/msgpack', 'f').payload, packed);
});

async function lines(chunks: (string | Uint8Array)[], max = 1 << 20): Promise<string[]> {
  async function* source(): AsyncGenerator<Uint8Array> {
    for (const c of chunks) yield typeof c === 'string' ? Buffer.from(c) : c;
  }
  const out: string[] = [];
  for await (const line of readLines(source(), max)) out.push(Buffer.from(line).toString('latin1'));
  return out;
}

test('readLines: split at \\n only, across chunks; empty lines kept; a last line without \\n counts; \\r kept', async () => {
  assert.deepEqual(await lines(['1\n2\n3\n']), ['1', '2', '3']);
  assert.deepEqual(await lines(['ab', 'c\nd', '', 'e\n\nf']), ['abc', 'de', '', 'f']);
  assert.deepEqual(await lines(['a\r\n']), ['a\r']);
  assert.deepEqual(await lines(['\n']), ['']);
  assert.deepEqual(await lines([]), []);
  await assert.rejects(lines(['12345', '6\n'], 5), /line 1 of stdin is longer than the broker's largest payload \(5 bytes\)/);
  await assert.rejects(lines(['ok\n123456\n'], 5), /line 2 of stdin is longer/);
});

test('renderValue: text as is, bytes as base64, JSON with the broker conversion rules', () => {
  assert.equal(renderValue('online'), 'online');
  assert.equal(renderValue(undefined), '');
  assert.equal(renderValue(48.2), '48.2');
  assert.equal(renderValue(null), 'null');
  assert.equal(renderValue(Uint8Array.of(1, 2, 3)), 'AQID');
  assert.equal(renderValue({ v: 1, unit: '°C', skip: undefined }), '{"v":1,"unit":"°C"}');
  assert.equal(renderValue([NaN, Infinity, -Infinity, 1]), '[null,null,null,1]');
  assert.equal(renderValue({ big: 2n ** 64n + 1n }), '{"big":18446744073709551617}');
  assert.equal(renderValue({ b: Uint8Array.of(255) }), '{"b":"/w=="}');
  assert.equal(renderValue({ at: new Date(Date.UTC(2026, 0, 2, 3, 4, 5)) }), '{"at":"2026-01-02T03:04:05.000Z"}');
  assert.equal(renderValue(new Map<unknown, unknown>([[1, 'a'], ['k', true]])), '{"1":"a","k":true}');
  assert.equal(renderValue('line\nbreak'), 'line\nbreak', 'text as is, like mosquitto_sub');
  let deep: unknown = 1;
  for (let i = 0; i < 100; i++) deep = [deep];
  assert.ok(renderValue(deep).includes('null'), 'nesting is bounded');
});

test('parseOptions: long, short and --name=value forms; repeats collected; unknown and missing values refused', () => {
  const specs = [{ name: 'topic', short: 't', value: 'required' as const }, { name: 'retain', short: 'r' }];
  const p = parseOptions('pub', ['-t', 'a', '--topic=b', '--retain'], specs);
  assert.deepEqual(p.get('topic'), ['a', 'b']);
  assert.deepEqual(p.get('retain'), ['']);
  assert.throws(() => parseOptions('pub', ['-x'], specs), /^CliError: unknown option -x \(see topicast pub --help\)$/);
  assert.throws(() => parseOptions('pub', ['-p', '1883'], specs), /unknown option -p: the port is part of --url ws:\/\/HOST:PORT\/ws/);
  assert.throws(() => parseOptions('pub', ['-t'], specs), /-t needs a value/);
  assert.throws(() => parseOptions('pub', ['--retain=yes'], specs), /--retain takes no value/);
  assert.equal(checkUrl('pub', 'wss://broker.example/ws'), 'wss://broker.example/ws');
  assert.throws(() => checkUrl('sub', 'mqtt://pi.local:1883'), /give ws:\/\/pi\.local:8080\/ws \(or use mosquitto_sub for MQTT\)/);
});
