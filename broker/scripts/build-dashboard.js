#!/usr/bin/env node
// Builds the dashboard into broker/dist/public/ (the broker's default static directory):
// type-checks broker/dashboard with tsc --noEmit, bundles src/main.ts (the SDK from the
// workspace, msgpackr, uPlot) and styles/app.css (with uPlot's CSS) with esbuild, and
// copies index.html with cache-busting hashes. Everything is local: no CDN, works offline.
// Usage: node broker/scripts/build-dashboard.js [--no-check] [--dev]   (run by `npm run build -w @topicast/broker`)
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import * as esbuild from 'esbuild';

const brokerDir = fileURLToPath(new URL('..', import.meta.url));
const srcDir = join(brokerDir, 'dashboard');
const outDir = join(brokerDir, 'dist', 'public');
const args = new Set(process.argv.slice(2));
const dev = args.has('--dev');

function fail(message) {
  console.error(`build-dashboard: ${message}`);
  process.exit(1);
}

// 1. Type-check (the dashboard is not part of broker/tsconfig.json: it targets the DOM).
if (!args.has('--no-check')) {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  const r = spawnSync(process.execPath, [tsc, '--noEmit', '-p', join(srcDir, 'tsconfig.json')], { stdio: 'inherit' });
  if (r.status !== 0) fail('type errors in broker/dashboard (see above)');
}

// 2. Bundle. `browser` condition: the SDK's #transport maps to the native WebSocket, msgpackr to its browser build.
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
const result = await esbuild.build({
  entryPoints: [
    { in: join(srcDir, 'src', 'main.ts'), out: 'app' },
    { in: join(srcDir, 'styles', 'app.css'), out: 'app' },
  ],
  outdir: outDir,
  bundle: true,
  format: 'esm',
  platform: 'browser',
  conditions: ['browser'],
  target: ['es2022', 'chrome100', 'firefox100', 'safari15'],
  minify: !dev,
  sourcemap: true,
  legalComments: 'linked',
  metafile: true,
  logLevel: 'warning',
  define: { 'process.env.NODE_ENV': '"production"' },
}).catch(() => fail('esbuild failed (see above)'));
const inputs = Object.keys(result.metafile.inputs);
const leaked = inputs.filter((p) => /node_modules\/(ws|mqtt)\/|transport\/node\.js/.test(p));
if (leaked.length) fail(`node-only modules leaked into the browser bundle: ${leaked.join(', ')}`);

// 3. Assets and index.html, with content hashes so a new build is never served from a stale cache.
const hash = (file) => createHash('sha256').update(readFileSync(join(outDir, file))).digest('hex').slice(0, 10);
writeFileSync(join(outDir, 'favicon.svg'), readFileSync(join(srcDir, 'favicon.svg')));
const html = readFileSync(join(srcDir, 'index.html'), 'utf8')
  .replace('href="app.css"', `href="app.css?v=${hash('app.css')}"`)
  .replace('src="app.js"', `src="app.js?v=${hash('app.js')}"`);
if (!html.includes('app.js?v=') || !html.includes('app.css?v=')) fail('index.html must reference app.js and app.css');
writeFileSync(join(outDir, 'index.html'), html);

// 4. The SDK's browser bundles, served by the broker at /topicast.js and /topicast-core.js (http/sdk-bundles.ts).
const sdkOut = join(brokerDir, 'dist', 'sdk');
rmSync(sdkOut, { recursive: true, force: true });
mkdirSync(sdkOut, { recursive: true });
for (const file of ['topicast.js', 'topicast-core.js']) {
  const from = join(brokerDir, '..', 'sdk', 'dist', 'browser', file);
  let bytes;
  try {
    bytes = readFileSync(from);
  } catch {
    fail(`${relative(process.cwd(), from)} is missing: build the SDK's browser bundles first (npm run build:browser -w topicast)`);
  }
  writeFileSync(join(sdkOut, file), bytes);
}

for (const file of ['app.js', 'app.css']) {
  const bytes = readFileSync(join(outDir, file));
  console.log(`build-dashboard: ${relative(process.cwd(), join(outDir, file))} ${(bytes.length / 1024).toFixed(1)} KB, ${(gzipSync(bytes).length / 1024).toFixed(1)} KB gzip`);
}
