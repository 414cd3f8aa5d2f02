/**
 * Runs `tsc --noEmit` on test/types/typed-topics.fail.ts: every line there is
 * marked `@ts-expect-error`, so the check succeeds only if each one really is a
 * type error (an unused directive is itself an error).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const root = fileURLToPath(new URL('../../../../', import.meta.url));

test('every @ts-expect-error in typed-topics.fail.ts is a real type error', async () => {
  const source = readFileSync(`${root}test/types/typed-topics.fail.ts`, 'utf8');
  const expected = source.split('\n').filter((l) => l.includes('@ts-expect-error')).length;
  assert.ok(expected >= 10, `only ${expected} expectations`);
  const tsc = `${root}node_modules/typescript/bin/tsc`;
  const result = await promisify(execFile)(process.execPath, [tsc, '--noEmit', '-p', `${root}test/fixtures/sdk/tsconfig.typed-fail.json`], { cwd: root }).then(
    () => ({ ok: true, out: '' }),
    (err: { stdout?: string; stderr?: string }) => ({ ok: false, out: `${err.stdout ?? ''}${err.stderr ?? ''}` }),
  );
  assert.ok(result.ok, `tsc found problems:\n${result.out}`);
});
