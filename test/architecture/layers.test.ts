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
  // Public: the SDK's entry and topicast/options (the argv tokenizer the broker's commands share).
  const v = violations(sources('sdk/src/agent'), (s, f) => {
    if (!s.startsWith('.')) return false;
    const target = relative(join(root, 'sdk/src'), join(root, dirname(f), s));
    return !target.startsWith('agent/') && target !== 'index.js' && target !== 'options.js';
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

test('transport imports nothing of auth/: who may connect is session/admission.ts', () => {
  const v = violations(sources('broker/src/transport'), (s) => /(^|\/)auth\//.test(s))
    // KNOWN EXCEPTION (branch `mqtt` rewrites transport/tcp.ts): its `addressKey` now lives in
    // transport/address.ts; delete this line once tcp.ts imports it from there.
    .filter((v) => v !== 'broker/src/transport/tcp.ts imports ../auth/abuse.js');
  assert.deepEqual(v, []);
});

test('protocols import nothing of the cluster: what they answer of it is in core/bus.ts', () => {
  const v = violations(sources('broker/src/protocol'), (s) => /(^|\/)cluster\//.test(s));
  assert.deepEqual(v, []);
});

test('the transports and the drain name no protocol: they read what each ProtocolHandler declares', () => {
  const v = violations([...sources('broker/src/transport'), 'broker/src/session/drain.ts'], (s) => /(^|\/)protocol\//.test(s));
  assert.deepEqual(v, []);
  for (const f of ['broker/src/transport/uws.ts', 'broker/src/session/drain.ts']) {
    const code = readFileSync(join(root, f), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    assert.doesNotMatch(code, /['"](native|mqtt|sse)['"]|\.(native|mqtt|sse)\b|\/mqtt['"]|['"]\/ws['"]|\/api\/(subscribe|session)/, `${f} names a protocol`);
  }
});

/** The import graph of `dir` from import lines: file → the files of `dir` it imports. */
function importGraph(dir: string): Map<string, string[]> {
  const files = sources(dir);
  const known = new Set(files);
  return new Map(files.map((f) => [f, imports(f)
    .filter((s) => s.startsWith('.'))
    .map((s) => relative(root, join(root, dirname(f), s)).replace(/\.js$/, '.ts'))
    .filter((t) => known.has(t))]));
}

/** The strongly connected components of more than one node (Tarjan): every import cycle, each sorted. */
function cyclesOf(edges: ReadonlyMap<string, readonly string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const cycles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v)!) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) cycles.push(component.sort());
  };
  for (const f of edges.keys()) if (!index.has(f)) visit(f);
  return cycles;
}

test('no import cycles in broker/src (type imports count too: a cycle is a knot to untie, whatever it carries)', () => {
  assert.deepEqual(cyclesOf(importGraph('broker/src')), []);
});

test('the cycle check finds every cycle, and only cycles', () => {
  const graph = new Map([
    ['a', ['b']], ['b', ['c']], ['c', ['a', 'd']], // a → b → c → a
    ['d', ['e']], ['e', []], // a chain: no cycle
    ['f', ['g']], ['g', ['f']], // a two-file knot, as type imports make them
  ]);
  assert.deepEqual(cyclesOf(graph).sort((x, y) => x[0]!.localeCompare(y[0]!)), [['a', 'b', 'c'], ['f', 'g']]);
  assert.deepEqual(cyclesOf(importGraph('broker/src/core')), []);
});

/**
 * The test tree mirrors the source tree: a test that reaches into broker/src (a type import, or an
 * import of the compiled module beside it) lives under `test/<kind>/broker/<folder>/` for the
 * folder it reaches into. Every test may use `core/` (the shared vocabulary: messages, the bus,
 * history) and the broker's public entry; anything else goes through the running process.
 */
const CROSS_FOLDER_TESTS: { readonly [use: string]: string } = {
  // Each refusal's MQTT reason code must exist in MQTT's own table.
  'test/unit/broker/session/admission.test.ts -> protocol/mqtt': 'checks REFUSALS against protocol/mqtt/reasons.ts',
  // A plug-in protocol needs the connection gate the composition root normally builds.
  'test/integration/broker/transport/protocol-plugin.test.ts -> session': 'builds the gate a composition root passes to listenHttp',
  // The MQTT session store writes through the append log's file IO.
  'test/unit/broker/protocol/mqtt/persist.test.ts -> store': 'the session store over the append log',
  // The harness listens over the TCP transport the broker uses for MQTT.
  'test/unit/broker/protocol/mqtt/harness.ts -> transport': 'MQTT over the real TCP transport',
  // Deployment manifests are checked against the settings they set.
  'test/unit/deploy/manifests.test.ts -> .': 'the settings registry (config.ts, settings.ts)',
};

/** The top folder of broker/src a target lies in ('.' for the files at its root); a target without `.js` is a folder. */
function folderOf(target: string): string {
  return target.endsWith('.js') && !target.includes('/') ? '.' : target.split('/')[0]!;
}

function brokerTargets(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  const distFile = join(root, 'test', 'dist', relative(join(root, 'test'), join(root, file)));
  const targets = imports(file).filter((s) => s.startsWith('.')).map((s) => relative(root, join(root, dirname(file), s)));
  for (const m of text.matchAll(/new URL\(\s*['`](\.[^'`$]*)['`]\s*,\s*import\.meta\.url/g)) targets.push(relative(root, join(dirname(distFile), m[1]!)));
  const bases = [...text.matchAll(/const (\w+) = new URL\(\s*['`](\.[^'`$]*)/g)].map((m) => [m[1]!, relative(root, join(dirname(distFile), m[2]!))] as const);
  for (const [name, base] of bases) {
    for (const m of text.matchAll(new RegExp(`new URL\\(\\s*['\`]([^'\`$.][^'\`$]*)['\`],\\s*${name}\\)`, 'g'))) targets.push(join(base, m[1]!));
  }
  for (const m of text.matchAll(/(?:dist|at)\(\s*['`]([a-z][^'`$]*\.js)['`]\)/g)) targets.push(`broker/dist/${m[1]!}`);
  return targets.flatMap((t) => {
    const hit = /^broker\/(?:src|dist)\/(.+)$/.exec(t);
    return hit && !/^(main\.js|public\b)/.test(hit[1]!) ? [hit[1]!] : [];
  });
}

test('tests mirror the source tree: a test reaches into broker/src only in the folder it mirrors, core/, or a named exception', () => {
  const tests = sources('test').filter((f) => !/^test\/(dist|fixtures|artifacts)\//.test(f));
  const bad: string[] = [];
  for (const file of tests) {
    const mirror = /^test\/[^/]+\/broker\/(.+)$/.exec(file)?.[1];
    for (const target of brokerTargets(file)) {
      const folder = folderOf(target);
      const own = mirror !== undefined && (folder === '.' ? !mirror.includes('/') || mirror.startsWith('cli/') : mirror.startsWith(`${folder}/`));
      if (own || folder === 'core') continue;
      const key = `${file} -> ${target.startsWith('protocol/') ? target.split('/').slice(0, 2).join('/') : folder}`;
      if (!(key in CROSS_FOLDER_TESTS)) bad.push(`${file} reaches into broker/src/${target}`);
    }
  }
  assert.deepEqual([...new Set(bad)], []);
});

test('every named exception of the mirror rule is still used', () => {
  const tests = sources('test').filter((f) => !/^test\/(dist|fixtures|artifacts)\//.test(f));
  const used = new Set(tests.flatMap((file) => brokerTargets(file).map((t) => {
    const folder = folderOf(t);
    return `${file} -> ${t.startsWith('protocol/') ? t.split('/').slice(0, 2).join('/') : folder}`;
  })));
  assert.deepEqual(Object.keys(CROSS_FOLDER_TESTS).filter((k) => !used.has(k)), []);
});
