/**
 * The layer rules of STYLE.md, checked from import lines so they stay true for free:
 * bytes at the edge, a pure core, one file touching uWebSockets.js, an agent that
 * uses only the public SDK, and a browser SDK that never pulls in `ws`.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../', import.meta.url));

function sources(dir: string): string[] {
  const abs = join(root, dir);
  const out: string[] = [];
  for (const name of readdirSync(abs)) {
    const p = join(abs, name);
    if (statSync(p).isDirectory()) out.push(...sources(relative(root, p)));
    else if (name.endsWith('.ts') && !name.endsWith('.d.ts')) out.push(relative(root, p));
  }
  return out;
}

function imports(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const specs: string[] = [];
  for (const m of text.matchAll(/(?:^|\n)\s*(?:import|export)\s[^'"]*?from\s+['"]([^'"]+)['"]/g)) specs.push(m[1]!);
  for (const m of text.matchAll(/import\(\s*['"]([^'"]+)['"]\s*\)/g)) specs.push(m[1]!);
  return specs;
}

function violations(files: string[], bad: (spec: string, file: string) => boolean): string[] {
  return files.flatMap((f) => imports(f).filter((s) => bad(s, f)).map((s) => `${f} imports ${s}`));
}

test('broker core is pure: no sockets, no timers, no node:*, no outer layers', () => {
  const v = violations(sources('broker/src/core'), (s) => !s.startsWith('./') && s !== 'topicast/protocol');
  assert.deepEqual(v, []);
});

test('only transport/uws.ts imports uWebSockets.js', () => {
  const v = violations(sources('broker/src'), (s, f) => s === 'uWebSockets.js' && f !== 'broker/src/transport/uws.ts');
  assert.deepEqual(v, []);
});

test('protocols and sessions never touch sockets directly', () => {
  const files = [...sources('broker/src/protocol'), ...sources('broker/src/session')];
  const v = violations(files, (s) => ['node:net', 'node:tls', 'node:http', 'uWebSockets.js', 'ws'].includes(s));
  assert.deepEqual(v, []);
});

test('the wire contract depends on nothing', () => {
  const v = violations(sources('sdk/src/protocol'), (s) => !s.startsWith('./'));
  assert.deepEqual(v, []);
});

test('the SDK imports ws only in its Node transport', () => {
  const v = violations(sources('sdk/src'), (s, f) => s === 'ws' && f !== 'sdk/src/transport/node.ts');
  assert.deepEqual(v, []);
});

test('the agent uses only the public SDK', () => {
  const v = violations(sources('sdk/src/agent'), (s, f) => {
    if (!s.startsWith('.')) return false;
    const target = relative(join(root, 'sdk/src'), join(root, dirname(f), s));
    return !target.startsWith('agent/') && target !== 'index.js';
  });
  assert.deepEqual(v, []);
});

test('a single node never loads an engine client: nats and mqtt only in their bus adapters, adapters loaded lazily', () => {
  const clients = violations(sources('broker/src'), (s, f) => (s === 'nats' && f !== 'broker/src/cluster/nats.ts' && !f.startsWith('broker/src/cluster/nats/')) || (s === 'mqtt' && f !== 'broker/src/cluster/mqtt-upstream.ts'));
  assert.deepEqual(clients, []);
  // cluster/index.ts imports the adapters with import(variable) only when `bus` names one.
  const adapters = violations(sources('broker/src'), (s, f) => /(^|\/)(nats|mqtt-upstream)\.js$/.test(s) || (/(^|\/)nats\//.test(s) && f !== 'broker/src/cluster/nats.ts' && !f.startsWith('broker/src/cluster/nats/')));
  assert.deepEqual(adapters, []);
});
