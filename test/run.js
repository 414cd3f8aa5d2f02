#!/usr/bin/env node
// Runs the whole suite from the compiled tests with node:test.
// Usage: node test/run.js [substring ...]   (only test files whose path contains one of the substrings)
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('./dist/', import.meta.url));
const filters = process.argv.slice(2);

function walk(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

// A compiled test whose source is gone (moved or deleted: tsc never removes its outputs) is not run.
const source = (f) => join(fileURLToPath(new URL('./', import.meta.url)), relative(root, f)).replace(/\.js$/, '.ts');
const files = walk(root)
  .filter((f) => existsSync(source(f)))
  .filter((f) => filters.length === 0 || filters.some((s) => relative(root, f).includes(s)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
// The release tests (integration/release*.test.js) inspect packages of the current build. Building them
// compresses tens of MB, longer than one test file may run on a busy machine, so it happens here, once per
// distinct input (release/inputs.js), into .cache/release-test/.
if (files.some((f) => /[\\/]release[^\\/]*\.test\.js$/.test(f))) {
  const repo = fileURLToPath(new URL('../', import.meta.url));
  const { releaseInputsHash } = await import('../release/inputs.js');
  const out = join(repo, '.cache', 'release-test');
  const stamp = join(out, '.inputs');
  const hash = releaseInputsHash(repo);
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== hash) {
    rmSync(out, { recursive: true, force: true });
    const noDeb = spawnSync('sh', ['-c', 'command -v dpkg-deb']).status !== 0 && !process.env.CI; // the tests say why they skip
    console.error(`test/run.js: building the release packages for the release tests (${out})`);
    const r = spawnSync(process.execPath, [join(repo, 'release', 'build.js'), '--out', out, ...(noDeb ? ['--no-deb'] : [])], { stdio: 'inherit' });
    if (r.status !== 0) {
      console.error('test/run.js: the release build failed');
      process.exit(1);
    }
    writeFileSync(stamp, hash);
  }
}

// A file whose tests all finished ends there (Node >= 20.14): under load the NATS bus file was seen
// to stay alive past the per-file timeout after its last test passed, held by two leftover unix-socket
// stdio pipes (no network connection, no child process); the file's assertions are what count.
const forceExit = spawnSync(process.execPath, ['--test-force-exit', '-e', '0']).status === 0 ? ['--test-force-exit'] : [];
const child = spawn(
  process.execPath,
  ['--test', ...forceExit, '--test-concurrency=2', '--test-timeout=180000', '--test-reporter=spec', ...files],
  { stdio: 'inherit' },
);
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
