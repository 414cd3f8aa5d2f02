/**
 * The table CRC-32 used where `zlib.crc32` is missing (Node < 20.15: Debian 12's Node 18) gives the
 * same results as zlib's, so a store written on one Node reads on the other.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { randomBytes } from 'node:crypto';
import * as zlib from 'node:zlib';
import fc from 'fast-check';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { crc32Module } from './load.js';

const { crc32Table, crc32, crc32Implementation } = crc32Module;
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array, initial?: number) => number }).crc32;

test('crc32Table: the check value of the CRC-32/ISO-HDLC catalogue and the empty input', () => {
  assert.equal(crc32Table(new TextEncoder().encode('123456789')), 0xcbf43926);
  assert.equal(crc32Table(new Uint8Array(0)), 0);
  assert.equal(crc32Table(new Uint8Array([0])), 0xd202ef8d);
  assert.equal(crc32Table(new Uint8Array(32).fill(0xff)), 0xff6cab0b);
});

test('crc32Table: continues a running CRC like zlib (initial value)', () => {
  const data = randomBytes(1000);
  assert.equal(crc32Table(data.subarray(300), crc32Table(data.subarray(0, 300))), crc32Table(data));
});

test('crc32Table equals zlib.crc32 on any bytes, and crc32 is the native one when this Node has it', (t) => {
  if (nativeCrc32 === undefined) {
    assert.equal(crc32Implementation(), 'table');
    t.skip(`node ${process.version} has no zlib.crc32 to compare with (the table is in use; the check value test above holds)`);
    return;
  }
  assert.equal(crc32Implementation(), 'native');
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 4096 }), fc.integer({ min: 0, max: 0xffffffff }), (bytes, initial) => {
      assert.equal(crc32Table(bytes), nativeCrc32(bytes));
      assert.equal(crc32Table(bytes, initial), nativeCrc32(bytes, initial));
    }),
    { numRuns: 500 },
  );
  const big = randomBytes(1 << 20);
  assert.equal(crc32Table(big), nativeCrc32(big));
  assert.equal(crc32(big, 7), nativeCrc32(big, 7));
});

test('no source imports crc32 from node:zlib directly (Node 18 has no such export: the import would fail at start-up)', () => {
  const offenders: string[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (p.endsWith('.ts') && /import\s*\{[^}]*\bcrc32\b[^}]*\}\s*from\s*'(node:)?zlib'/.test(readFileSync(p, 'utf8'))) offenders.push(p);
    }
  };
  for (const src of ['../../../../../broker/src', '../../../../../sdk/src']) walk(fileURLToPath(new URL(src, import.meta.url)));
  assert.deepEqual(offenders, [], 'use broker/src/store/crc32.ts');
});
