/**
 * The browser build's size budget (issue 3): at most 16 KB min+gzip without
 * msgpackr (topicast-core.js) and 26 KB with it (topicast.js). The core budget
 * was 12 KB until decoding by content type (issue 14: MQTT, curl and SDK values
 * all arrive as values) took 0.9 KB of it, 13 KB until request/reply (issue 19:
 * `client.request` / `client.reply`, the frames' reply properties) took 1.0 KB, and 14 KB (the
 * full build 25 KB), which history queries (issue 22) filled, until the fallback to HTTP streaming
 * (issue 18: pages behind a proxy that refuses the WebSocket upgrade still connect) took 1.4 KB
 * of both. Needs
 * `npm run build:browser -w topicast` (part of `npm run build`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

const dist = fileURLToPath(new URL('../../../../sdk/dist/browser/', import.meta.url));
const KB = 1024;

function gzipSize(file: string): number {
  const path = dist + file;
  assert.ok(existsSync(path), `${path} is missing: run npm run build:browser -w topicast`);
  return gzipSync(readFileSync(path), { level: 9 }).length;
}

test('topicast-core.js (no msgpackr) is at most 16 KB min+gzip', () => {
  const size = gzipSize('topicast-core.js');
  console.log(`topicast-core.js: ${size} bytes min+gzip`);
  assert.ok(size <= 16 * KB, `${size} bytes > ${16 * KB}`);
});

test('topicast.js (with msgpackr) is at most 26 KB min+gzip', () => {
  const size = gzipSize('topicast.js');
  console.log(`topicast.js: ${size} bytes min+gzip`);
  assert.ok(size <= 26 * KB, `${size} bytes > ${26 * KB}`);
});

test('the browser builds contain neither ws nor Node built-ins, and the core build no msgpackr', () => {
  for (const file of ['topicast.js', 'topicast-core.js']) {
    const code = readFileSync(dist + file, 'utf8');
    assert.doesNotMatch(code, /from\s*["'](ws|node:[a-z_]+)["']/, file);
    assert.doesNotMatch(code, /require\(["']ws["']\)/, file);
  }
  const core = readFileSync(dist + 'topicast-core.js', 'utf8');
  assert.doesNotMatch(core, /useRecords|bundleStrings/); // msgpackr internals
  assert.match(readFileSync(dist + "topicast.js", "utf8"), /useRecords|bundleStrings/);
  assert.match(readFileSync(dist + 'topicast.js', 'utf8'), /export\s*\{/);
});

test('the size table in sdk/README.md is within 0.5 KiB of the real figures', () => {
  const readme = readFileSync(fileURLToPath(new URL('../../../../sdk/README.md', import.meta.url)), 'utf8');
  for (const file of ['topicast-core.js', 'topicast.js']) {
    const row = new RegExp('\\| `' + file.replace('.', '\\.') + '` [^|]*\\| ([0-9.]+) KiB \\| \\*\\*([0-9.]+) KiB\\*\\*').exec(readme);
    assert.ok(row, `no README row for ${file}`);
    const bytes = readFileSync(dist + file);
    const min = bytes.length / KB;
    const gz = gzipSync(bytes, { level: 9 }).length / KB;
    assert.ok(Math.abs(Number(row[1]) - min) <= 0.5, `${file}: README says ${row[1]} KiB minified, it is ${min.toFixed(1)}`);
    assert.ok(Math.abs(Number(row[2]) - gz) <= 0.5, `${file}: README says ${row[2]} KiB min+gzip, it is ${gz.toFixed(1)}`);
  }
});
