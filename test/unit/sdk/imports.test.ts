/**
 * The SDK's import rules, read from the source: the client core imports only its
 * own files; `ws` only in transport/node.ts, msgpackr only in codec-msgpack.ts, the
 * `#transport` switch only in the two entries; the browser transport imports nothing
 * at run time. This is what keeps `ws` and msgpackr out of the builds that must not have them.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const src = fileURLToPath(new URL('../../../../sdk/src/', import.meta.url));

function files(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) return name === 'agent' || name === 'protocol' ? [] : files(p);
    return name.endsWith('.ts') ? [p] : [];
  });
}

/** Module specifiers imported at run time (type-only imports excluded). */
function runtimeImports(code: string): string[] {
  const out: string[] = [];
  for (const m of code.matchAll(/^\s*(import|export)\s+(type\s+)?([^'";]*?from\s+)?['"]([^'"]+)['"]/gm)) {
    if (m[2]) continue;
    out.push(m[4]!);
  }
  return out;
}

const allowed: { [file: string]: string[] } = {
  'transport/node.ts': ['ws', 'node:crypto'], // node:crypto: WebCrypto for Node 18, which has no global crypto
  'codec-msgpack.ts': ['msgpackr'],
  'core.ts': ['#transport'],
  'index.ts': ['#transport'],
};

test('SDK files import only what the layering allows', () => {
  const list = files(src);
  assert.ok(list.length >= 15, `found ${list.length} files`);
  const problems: string[] = [];
  let seen = 0;
  for (const file of list) {
    const name = relative(src, file);
    for (const spec of runtimeImports(readFileSync(file, 'utf8'))) {
      seen++;
      if (spec.startsWith('./') || spec.startsWith('../')) {
        if (spec.includes('/agent/')) problems.push(`${name}: imports the agent (${spec})`);
        continue;
      }
      if (!(allowed[name] ?? []).includes(spec)) problems.push(`${name}: imports ${spec}`);
    }
  }
  const browser = runtimeImports(readFileSync(join(src, 'transport/browser.ts'), 'utf8'));
  assert.deepEqual(browser, [], 'the browser transport uses only the platform WebSocket');
  assert.ok(seen > 25, `only ${seen} imports recognised: the scanner is broken`);
  assert.deepEqual(problems, []);
});
