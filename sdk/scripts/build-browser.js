#!/usr/bin/env node
// Builds the ESM browser bundles from the compiled SDK (run after `tsc -b sdk`):
//   dist/browser/topicast.js       full build, msgpackr as the default payload codec
//   dist/browser/topicast-core.js  no msgpackr: json by default, other codecs passed in
// `#transport` resolves through package.json "imports" with the `browser` condition,
// so the native WebSocket transport is bundled and `ws` never is (the build fails if it were).
import { build } from 'esbuild';
import { mkdirSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const out = `${root}dist/browser/`;
mkdirSync(out, { recursive: true });

const entries = [
  { entry: `${root}dist/index.js`, file: 'topicast.js', types: '../index.js' },
  { entry: `${root}dist/core.js`, file: 'topicast-core.js', types: '../core.js' },
];

for (const { entry, file, types } of entries) {
  // Types for `import 'topicast/browser'`: the bundle has the API of its entry.
  writeFileSync(out + file.replace(/\.js$/, '.d.ts'), `export * from '${types}';\n`);
  const result = await build({
    entryPoints: [entry],
    outfile: out + file,
    bundle: true,
    format: 'esm',
    platform: 'browser',
    target: ['es2020'],
    minify: true,
    sourcemap: false,
    legalComments: 'none',
    metafile: true,
    write: false,
    // ws must never reach a browser: make any path to it a build error.
    external: [],
    plugins: [
      {
        name: 'forbid-node',
        setup(b) {
          b.onResolve({ filter: /^(ws|node:.*)$/ }, (args) => ({ errors: [{ text: `${args.path} must not be bundled for browsers (imported by ${args.importer})` }] }));
        },
      },
    ],
  });
  const code = result.outputFiles[0].contents;
  writeFileSync(out + file, code);
  const inputs = Object.keys(result.metafile.inputs);
  if (file === 'topicast-core.js' && inputs.some((p) => p.includes('msgpackr'))) throw new Error('msgpackr leaked into topicast-core.js');
  console.log(`${file}: ${code.length} bytes min, ${gzipSync(code, { level: 9 }).length} bytes min+gzip`);
}
