/**
 * CRC-32 (IEEE 802.3, the zlib/gzip/PNG polynomial, reflected 0xEDB88320) for the store's records.
 *
 * `zlib.crc32` exists from Node 20.15 / 22.2; Debian 12 and Raspberry Pi OS bookworm ship Node 18,
 * where a named import of it fails at module link time. So the module is imported as a namespace
 * and the native function is used when present, else `crc32Table`: the classic byte-at-a-time
 * table (256 u32, 1 KiB), identical results, a few hundred MB/s in JavaScript, which is far
 * beyond what the stores write (one small record per retained publish). node:zlib is loaded at
 * the first checksum, so a broker without `--data` never loads it (about 0.15 MiB resident,
 * docs/EMBEDDED.md "Footprint").
 */
import { createRequire } from 'node:module';

const TABLE = /* @__PURE__ */ (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 of `data` computed in JavaScript; `crc32Table(b) === zlib.crc32(b)` for every input. */
export function crc32Table(data: Uint8Array, initial = 0): number {
  let c = (initial ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) c = TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

type Crc32 = (data: Uint8Array, initial?: number) => number;

let chosen: Crc32 | undefined;
const implementation = (): Crc32 => (chosen ??= (createRequire(import.meta.url)('node:zlib') as { crc32?: Crc32 }).crc32 ?? crc32Table);

/** The native CRC-32 when this Node has one (≥ 20.15), else the table. */
export const crc32: Crc32 = (data, initial) => implementation()(data, initial);

/** Which implementation `crc32` is: `native` or `table` (logged by tests, shown nowhere else). */
export function crc32Implementation(): 'native' | 'table' {
  return implementation() === crc32Table ? 'table' : 'native';
}
