/**
 * What the broker loads at start-up, checked from import lines (docs/EMBEDDED.md, "Memory and CPU"):
 * the static import closure of broker/src/main.ts holds no module whose only use is a configuration
 * the default broker does not have (node:tls, node:zlib), and the in-process agent's closure never
 * reaches the SDK client, its transports or their WebSocket/MQTT libraries. Dynamic `import()` and
 * `createRequire` loads are what keeps them out; a new static import would put them back unnoticed.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const SDK_ENTRIES: Record<string, string> = {
  topicast: 'sdk/src/index.ts',
  'topicast/protocol': 'sdk/src/protocol/index.ts',
  'topicast/codecs': 'sdk/src/codecs.ts',
  'topicast/options': 'sdk/src/options.ts',
  'topicast/agent': 'sdk/src/agent/index.ts',
  'topicast/agent/run': 'sdk/src/agent/run.ts',
  '#transport': 'sdk/src/transport/node.ts',
};

/** Static imports and re-exports of a source file (not `import type`, not `import()`). */
function staticImports(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(import|export)\s(?!type\s)([^'";]*?)from\s+['"]([^'"]+)['"]/g)) {
    if (m[1] === 'export' && !/[*{]/.test(m[2]!)) continue;
    specs.push(m[3]!);
  }
  for (const m of text.matchAll(/(?:^|\n)\s*import\s+['"]([^'"]+)['"]/g)) specs.push(m[1]!);
  return specs;
}

/** Every file and bare module reached from `entry` by static imports. */
function closure(entry: string): { files: Set<string>; modules: Set<string> } {
  const files = new Set<string>();
  const modules = new Set<string>();
  const todo = [entry];
  while (todo.length > 0) {
    const file = todo.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const spec of staticImports(file)) {
      let target: string | undefined;
      if (spec.startsWith('.')) target = relative(root, join(root, dirname(file), spec)).replace(/\.js$/, '.ts');
      else target = SDK_ENTRIES[spec];
      if (target !== undefined && existsSync(join(root, target))) todo.push(target);
      else if (target === undefined) modules.add(spec);
    }
  }
  return { files, modules };
}

test('the broker at start-up: no node:tls, node:zlib, pino or agent entry in the static imports of main.ts', () => {
  const { files, modules } = closure('broker/src/main.ts');
  assert.ok(files.has('broker/src/broker.ts') && files.has('broker/src/store/crc32.ts'), 'the closure is followed');
  for (const m of ['node:tls', 'tls', 'node:zlib', 'zlib', 'pino']) assert.ok(!modules.has(m), `${m} is imported statically`);
  assert.ok(![...files].some((f) => f.startsWith('broker/src/agent/') || f.startsWith('sdk/src/agent/')), 'the agent is loaded only with --agent');
});

test('the in-process agent never loads the SDK client, its transports, ws or mqtt.js', () => {
  const { files, modules } = closure('broker/src/agent/in-process.ts');
  assert.ok(files.has('sdk/src/agent/run.ts') && files.has('sdk/src/agent/inbound.ts'), 'the closure is followed');
  const offending = [...files].filter((f) => f === 'sdk/src/index.ts' || f === 'sdk/src/core.ts' || f === 'sdk/src/client.ts' || f.startsWith('sdk/src/transport/') || f.startsWith('sdk/src/agent/transport/'));
  assert.deepEqual(offending, []);
  for (const m of ['ws', 'mqtt']) assert.ok(!modules.has(m), `${m} is imported statically`);
});
