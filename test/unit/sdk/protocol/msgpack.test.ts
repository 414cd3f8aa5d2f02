import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pack, Unpackr } from 'msgpackr';

const unpack = (b: Uint8Array): unknown => new Unpackr({ int64AsType: 'number', mapsAsObjects: true }).unpack(b);
import { DecodeError, decodeMsgpack, encodeMsgpack, type MsgpackValue } from 'topicast/protocol';

const samples: MsgpackValue[] = [
  null, true, false, 0, 1, 127, 128, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER,
  -1, -32, -33, -128, -129, -32768, -32769, -(2 ** 31), -(2 ** 31) - 1, Number.MIN_SAFE_INTEGER,
  0.5, -1.25, 1e300, '', 'a', 'x'.repeat(31), 'x'.repeat(32), 'é'.repeat(100), 'y'.repeat(70000),
  new Uint8Array(0), new Uint8Array([1, 2, 3]), new Uint8Array(300), new Uint8Array(70000),
  [], [1, [2, [3]]], new Array(20).fill(1), { a: 1, b: 'x', c: [true] },
];

test('round-trips every supported type and size class', () => {
  for (const v of samples) assert.deepEqual(decodeMsgpack(encodeMsgpack(v)), v instanceof Uint8Array ? v : v);
});

test('agrees with msgpackr, an independent implementation, in both directions', () => {
  for (const v of samples) {
    const ours = encodeMsgpack(v);
    const theirs = unpack(ours) as unknown;
    if (v instanceof Uint8Array) assert.deepEqual(new Uint8Array(theirs as Buffer), v);
    else assert.deepEqual(theirs, v);
    if (!(v instanceof Uint8Array) && !(typeof v === 'object' && v !== null)) assert.deepEqual(decodeMsgpack(pack(v)), v);
  }
});

test('bin values are copies unless asked for views', () => {
  const bytes = encodeMsgpack(new Uint8Array([7, 8]));
  const copy = decodeMsgpack(bytes) as Uint8Array;
  bytes[bytes.length - 1] = 0;
  assert.deepEqual([...copy], [7, 8]);
  const view = decodeMsgpack(bytes, { view: true }) as Uint8Array;
  assert.equal(view.buffer, bytes.buffer);
});

test('every decoder limit throws DecodeError', () => {
  const cases: [string, number[]][] = [
    ['empty input', []],
    ['truncated str', [0xa3, 0x61]],
    ['truncated bin', [0xc4, 0x05, 1]],
    ['array longer than input', [0xdd, 0xff, 0xff, 0xff, 0xff]],
    ['map longer than input', [0xdf, 0x7f, 0xff, 0xff, 0xff]],
    ['non-string map key', [0x81, 0x01, 0x01]],
    ['__proto__ key', [0x81, 0xa9, ...Buffer.from('__proto__'), 0x01]],
    ['trailing bytes', [0x01, 0x02]],
    ['invalid UTF-8', [0xa2, 0xc3, 0x28]],
    ['unsupported ext type', [0xd4, 0x01, 0x01]],
    ['reserved 0xc1', [0xc1]],
    ['uint64 beyond safe range', [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]],
    ['nesting too deep', [...new Array(20).fill(0x91), 0x01]],
  ];
  for (const [what, bytes] of cases) {
    assert.throws(() => decodeMsgpack(new Uint8Array(bytes)), DecodeError, what);
  }
});
