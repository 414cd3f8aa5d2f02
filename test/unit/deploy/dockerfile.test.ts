// deploy/docker/Dockerfile, replayed without Docker (none runs here): the build context is what
// `git ls-files` holds (a clean checkout plus uncommitted work) filtered by .dockerignore; each stage
// gets a scratch root in a temp directory; COPY lines copy what they name, RUN lines run there with
// `sh -c` (npm's cache makes `npm ci` quick; it may still fetch from the registry), except RUN lines
// made only of OS-level steps (users, /data ownership), which are checked statically. Then the CMD
// starts with the runtime stage's ENV, as `docker run -e` would override it (free ports, 127.0.0.1,
// a temp dir as the /data volume), and the test checks /healthz through the HEALTHCHECK command
// itself, a WebSocket ↔ MQTT round trip, a retained write reaching the volume, a clean SIGTERM
// stop, and that the runtime stage holds the broker's production dependencies and nothing else.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { connect } from 'topicast';
import { freePort, waitFor } from '../../helpers/broker.js';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const DOCKERFILE = join(ROOT, 'deploy/docker/Dockerfile');
/** Commands a RUN line may hold without being replayed: they change the image's OS, not the app. */
const OS_LEVEL = new Set(['mkdir', 'chown', 'chmod', 'useradd', 'groupadd']);

interface Instruction {
  op: string;
  args: string;
  line: number;
}
interface Stage {
  name: string;
  from: string;
  steps: Instruction[];
}

/** Instructions of a Dockerfile: comments dropped, `\` continuations joined. */
function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    let raw = lines[i]!.trim();
    if (raw === '' || raw.startsWith('#')) continue;
    const start = i + 1;
    while (raw.endsWith('\\')) {
      raw = raw.slice(0, -1).trimEnd();
      let next = lines[++i];
      while (next !== undefined && next.trim().startsWith('#')) next = lines[++i]; // comments inside a continuation
      assert.ok(next !== undefined, `line ${start}: continuation runs past the end`);
      raw += ` ${next.trim()}`;
    }
    const m = /^(\w+)\s+(.*)$/.exec(raw);
    assert.ok(m, `line ${start}: not an instruction: ${raw}`);
    const op = m[1]!.toUpperCase();
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(m[2]!);
      assert.ok(f, `line ${start}: FROM image [AS name]`);
      stages.push({ from: f[1]!, name: f[2] ?? String(stages.length), steps: [] });
      continue;
    }
    assert.ok(stages.length > 0, `line ${start}: ${op} before FROM`);
    stages.at(-1)!.steps.push({ op, args: m[2]!, line: start });
  }
  return stages;
}

/** `K=V K2="v 2"` (the ENV form this Dockerfile uses). */
function envPairs(args: string): [string, string][] {
  const out: [string, string][] = [];
  for (const m of args.matchAll(/(\w+)=("([^"]*)"|\S+)/g)) out.push([m[1]!, m[3] ?? m[2]!]);
  assert.ok(out.length > 0, `ENV ${args}: only the K=V form is used here`);
  return out;
}

/** A .dockerignore as Docker reads it: the last matching pattern wins, `!` re-includes, a match on a parent directory covers its files. */
function dockerignore(text: string): (path: string) => boolean {
  const rules = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#')).map((l) => {
    const negate = l.startsWith('!');
    const pattern = posix.normalize((negate ? l.slice(1) : l).replace(/^\/+/, '')).replace(/\/+$/, '');
    const re = pattern.split('/').map((part) => (part === '**' ? '.*' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]'))).join('/');
    return { negate, re: new RegExp(`^${re.replace(/\.\*\//g, '(?:.*/)?')}$`) };
  });
  return (path: string): boolean => {
    const parts = path.split('/');
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join('/'));
    let excluded = false;
    for (const r of rules) if (prefixes.some((p) => r.re.test(p))) excluded = !r.negate;
    return excluded;
  };
}

const dockerText = readFileSync(DOCKERFILE, 'utf8');
const stages = parseDockerfile(dockerText);
const runtime = stages.at(-1)!;
const last = (op: string): Instruction | undefined => runtime.steps.filter((s) => s.op === op).at(-1);
const jsonArgs = (args: string): string[] => {
  const v = JSON.parse(args) as unknown;
  assert.ok(Array.isArray(v) && v.every((x) => typeof x === 'string'), `exec form expected: ${args}`);
  return v as string[];
};
const healthcheckCmd = (): string[] => {
  const m = /\bCMD\s+(\[.*\])\s*$/.exec(last('HEALTHCHECK')?.args ?? '');
  assert.ok(m, 'HEALTHCHECK ... CMD ["...", ...] in exec form');
  return jsonArgs(m[1]!);
};

test('Dockerfile: multi-stage on node:20-bookworm-slim, non-root, /data volume, ports, healthcheck on /healthz', () => {
  assert.ok(stages.length >= 2, 'a build stage and a runtime stage');
  for (const s of stages) assert.equal(s.from, 'node:20-bookworm-slim', `stage ${s.name}`);
  const user = last('USER')?.args;
  assert.ok(user && !/^(0|root)(:|$)/.test(user), `runtime USER is not root: ${user}`);
  assert.match(user, /^\d+(:\d+)?$/, 'numeric USER, so Kubernetes runAsNonRoot can verify it');
  const env = new Map(runtime.steps.filter((s) => s.op === 'ENV').flatMap((s) => envPairs(s.args)));
  assert.equal(env.get('TOPICAST_DATA'), '/data');
  assert.equal(env.get('NODE_ENV'), 'production');
  assert.ok(runtime.steps.some((s) => s.op === 'VOLUME' && s.args.split(/\s+/).includes('/data')), 'VOLUME /data');
  const uid = user.split(':')[0];
  assert.ok(runtime.steps.some((s) => s.op === 'RUN' && new RegExp(`chown (${uid}|node)(:\\S+)? /data`).test(s.args)), '/data belongs to the runtime user');
  assert.deepEqual(runtime.steps.filter((s) => s.op === 'EXPOSE').flatMap((s) => s.args.split(/\s+/)).sort(), ['1883', '8080']);
  assert.ok(healthcheckCmd().join(' ').includes('/healthz'), 'HEALTHCHECK requests /healthz');
  assert.deepEqual(jsonArgs(last('CMD')!.args), ['node', 'broker/dist/main.js']);
  assert.ok(runtime.steps.some((s) => s.op === 'RUN' && /npm ci\b.*--omit=dev/.test(s.args)), 'runtime installs with npm ci --omit=dev');
  const fromContext = runtime.steps.filter((s) => s.op === 'COPY' && !s.args.startsWith('--from=')).flatMap((s) => s.args.split(/\s+/).slice(0, -1));
  for (const src of fromContext) assert.match(src, /(^|\/)package(-lock)?\.json$/, 'the runtime stage takes only manifests from the context, the rest is build output');
});

test('.dockerignore keeps build output, dependencies and the tests out of the context', () => {
  const ignored = dockerignore(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
  for (const p of ['node_modules/ws/index.js', 'broker/node_modules/x', 'broker/dist/main.js', 'sdk/dist/index.js', 'sdk/tsconfig.tsbuildinfo', 'test/run.js', 'bench/src/run.ts', '.git/HEAD', 'README.md']) assert.ok(ignored(p), `${p} is ignored`);
  for (const p of ['package.json', 'package-lock.json', 'tsconfig.base.json', 'broker/src/main.ts', 'broker/package.json', 'sdk/src/protocol/frames.ts', 'broker/dashboard/index.html']) assert.ok(!ignored(p), `${p} is in the context`);
});

/** Every file of the build context (relative paths). */
function contextFiles(): string[] {
  const git = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: ROOT, encoding: 'utf8' });
  assert.equal(git.status, 0, `git ls-files: ${git.stderr}`);
  const ignored = dockerignore(readFileSync(join(ROOT, '.dockerignore'), 'utf8'));
  return git.stdout.split('\0').filter((p) => p && !ignored(p) && existsSync(join(ROOT, p)));
}

/** The set of lock-file paths (e.g. node_modules/ws) the broker workspace needs at run time. */
function runtimeClosure(lock: { packages: Record<string, { dependencies?: Record<string, string>; optionalDependencies?: Record<string, string>; peerDependencies?: Record<string, string>; peerDependenciesMeta?: Record<string, { optional?: boolean }>; link?: boolean; resolved?: string }> }): Set<string> {
  const pkgs = lock.packages;
  const resolve = (from: string, name: string): string | undefined => {
    for (let dir = from; ; dir = dir.includes('/node_modules/') ? dir.slice(0, dir.lastIndexOf('/node_modules/')) : '') {
      const p = dir ? `${dir}/node_modules/${name}` : `node_modules/${name}`;
      if (pkgs[p]) return p;
      if (!dir) return undefined;
    }
  };
  const seen = new Set<string>();
  const visit = (path: string): void => {
    if (seen.has(path)) return;
    seen.add(path);
    const p = pkgs[path]!;
    if (p.link) return visit(p.resolved!);
    const peers = Object.keys(p.peerDependencies ?? {}).filter((n) => !p.peerDependenciesMeta?.[n]?.optional);
    for (const name of [...Object.keys(p.dependencies ?? {}), ...Object.keys(p.optionalDependencies ?? {}), ...peers]) {
      const at = resolve(path, name);
      if (at) visit(at); // an optional dependency for another platform has no entry: fine
    }
  };
  visit('broker');
  return seen;
}

/** Installed packages under `dir`/node_modules as lock-file paths (scopes and nested node_modules included). */
function installed(dir: string, prefix = ''): string[] {
  const nm = join(dir, 'node_modules');
  if (!existsSync(nm)) return [];
  const out: string[] = [];
  for (const name of readdirSync(nm)) {
    if (name.startsWith('.')) continue;
    const names = name.startsWith('@') ? readdirSync(join(nm, name)).map((n) => `${name}/${n}`) : [name];
    for (const n of names) {
      const path = `${prefix}node_modules/${n}`;
      out.push(path);
      out.push(...installed(join(nm, n), `${path}/`));
    }
  }
  return out;
}

/** `p`, or a clear failure after `ms` (a lost event must not hang the file until the runner's timeout). */
function within<T>(p: Promise<T>, what: string, ms = 5000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms)));
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

test('Dockerfile replayed: install, build, start; /healthz, WebSocket ↔ MQTT, /data, SIGTERM; production dependencies only', { timeout: 150_000 }, async (t) => {
  const scratch = mkdtempSync(join(tmpdir(), 'topicast-docker-'));
  t.after(() => rmSync(scratch, { recursive: true, force: true }));
  const files = contextFiles();
  const fsRoot = (stage: string): string => join(scratch, 'stage', stage);
  const workdirs = new Map<string, string>();
  const envs = new Map<string, Record<string, string>>();
  const PATH = `${dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`;
  const started = Date.now();

  for (const stage of stages) {
    let workdir = '/';
    const env: Record<string, string> = {};
    const host = (p: string): string => join(fsRoot(stage.name), posix.isAbsolute(p) ? p : posix.join(workdir, p));
    for (const step of stage.steps) {
      const where = `Dockerfile line ${step.line} (${step.op} ${step.args.slice(0, 60)})`;
      switch (step.op) {
        case 'WORKDIR':
          workdir = posix.isAbsolute(step.args) ? step.args : posix.join(workdir, step.args);
          mkdirSync(host('.'), { recursive: true });
          break;
        case 'ENV':
          for (const [k, v] of envPairs(step.args)) env[k] = v;
          break;
        case 'COPY': {
          const words = step.args.split(/\s+/);
          const from = words[0]!.startsWith('--from=') ? words.shift()!.slice('--from='.length) : undefined;
          const dest = words.pop()!;
          assert.ok(words.length > 0, `${where}: COPY needs a source`);
          for (const src of words) {
            if (from !== undefined) {
              const source = join(fsRoot(from), src);
              assert.ok(existsSync(source), `${where}: ${src} does not exist in stage ${from}`);
              cpSync(source, host(dest), { recursive: true });
              continue;
            }
            // From the context: a file, or a directory whose (not ignored) contents are copied into dest.
            const dir = src.replace(/\/+$/, '');
            const matched = files.filter((f) => f === dir || f.startsWith(`${dir}/`));
            assert.ok(matched.length > 0, `${where}: ${src} is not in the build context (ignored by .dockerignore?)`);
            for (const f of matched) {
              const rel = f === dir ? posix.basename(f) : f.slice(dir.length + 1);
              const target = f === dir && !dest.endsWith('/') && words.length === 1 ? host(dest) : join(host(dest), rel);
              mkdirSync(dirname(target), { recursive: true });
              cpSync(join(ROOT, f), target);
            }
          }
          break;
        }
        case 'RUN': {
          const commands = step.args.split(/&&/).map((c) => c.trim());
          if (commands.every((c) => OS_LEVEL.has(c.split(/\s+/)[0]!))) {
            t.diagnostic(`${where}: OS-level step, checked statically`);
            break;
          }
          assert.ok(!commands.some((c) => OS_LEVEL.has(c.split(/\s+/)[0]!)), `${where}: keep OS-level steps in their own RUN line so the app steps can be replayed`);
          const t0 = Date.now();
          const r = spawnSync('sh', ['-c', step.args], {
            cwd: host('.'),
            encoding: 'utf8',
            timeout: 120_000,
            // npm's cache from the checkout's own `npm ci`: offline first keeps this within seconds.
            env: { PATH, HOME: process.env.HOME ?? scratch, ...env, npm_config_prefer_offline: 'true', npm_config_update_notifier: 'false' },
          });
          assert.equal(r.status, 0, `${where} failed (${r.signal ?? r.status}):\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`);
          t.diagnostic(`${where}: ${Date.now() - t0} ms`);
          break;
        }
        case 'USER':
        case 'VOLUME':
        case 'EXPOSE':
        case 'HEALTHCHECK':
        case 'CMD':
          break; // checked statically above; applied when the CMD starts below
        default:
          assert.fail(`${where}: the replay does not know ${step.op}; teach it or avoid it`);
      }
    }
    workdirs.set(stage.name, host('.'));
    envs.set(stage.name, env);
  }
  t.diagnostic(`install and build replayed in ${Date.now() - started} ms`);

  const app = workdirs.get(runtime.name)!;
  // Production dependencies of the broker (and the SDK it imports), nothing else.
  const lock = JSON.parse(readFileSync(join(app, 'package-lock.json'), 'utf8')) as Parameters<typeof runtimeClosure>[0];
  const closure = runtimeClosure(lock);
  const have = installed(app);
  assert.ok(have.includes('node_modules/uWebSockets.js') && have.includes('node_modules/topicast'), 'the broker\'s dependencies are installed');
  const extra = have.filter((p) => !closure.has(p) && !p.startsWith('node_modules/@topicast/'));
  assert.deepEqual(extra, [], 'installed in the runtime stage but not needed by the broker at run time');
  const rootPkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> };
  for (const dev of Object.keys(rootPkg.devDependencies)) {
    if (!closure.has(`node_modules/${dev}`)) assert.ok(!have.includes(`node_modules/${dev}`), `devDependency ${dev} is not installed`);
  }
  assert.ok(!existsSync(join(app, 'broker/src')) && !existsSync(join(app, 'sdk/src')), 'no sources in the runtime stage');

  // docker run -e TOPICAST_HOST=127.0.0.1 -e TOPICAST_PORT=… -e TOPICAST_MQTT_PORT=… -v <tmp>:/data
  const port = await freePort();
  const mqttPort = await freePort();
  const volume = join(scratch, 'volume');
  mkdirSync(volume);
  const runEnv = { PATH, ...envs.get(runtime.name), TOPICAST_HOST: '127.0.0.1', TOPICAST_PORT: String(port), TOPICAST_MQTT_PORT: String(mqttPort), TOPICAST_DATA: volume };
  const [cmd, ...args] = jsonArgs(last('CMD')!.args);
  const proc = spawn(cmd!, args, { cwd: app, env: runEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: string[] = [];
  proc.stdout.on('data', (b: Buffer) => logs.push(b.toString()));
  proc.stderr.on('data', (b: Buffer) => logs.push(b.toString()));
  const exited = new Promise<number | null>((r) => proc.on('exit', (code) => r(code)));
  t.after(() => {
    if (proc.exitCode === null) proc.kill('SIGKILL');
  });
  const [hcCmd, ...hcArgs] = healthcheckCmd();
  const healthcheck = (): number | null => spawnSync(hcCmd!, hcArgs, { env: runEnv, timeout: 10_000 }).status;
  await waitFor(async () => {
    if (proc.exitCode !== null) throw new Error(`broker exited (${proc.exitCode}):\n${logs.join('')}`);
    return (await fetch(`http://127.0.0.1:${port}/healthz`).then((r) => r.ok, () => false));
  }, 'the broker to answer /healthz', 15_000);
  assert.equal(healthcheck(), 0, 'the HEALTHCHECK command passes against the running broker');

  const device = await within(mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { reconnectPeriod: 0 }), 'MQTT connect');
  const client = await within(connect(`ws://127.0.0.1:${port}/ws`, { codec: 'text', reconnect: false }), 'WebSocket connect');
  try {
    const toDevice = new Promise<string>((resolve) => device.on('message', (topic, payload) => resolve(`${topic}=${payload.toString()}`)));
    await device.subscribeAsync('devices/+/cmd');
    let toClient!: (v: string) => void;
    const fromDevice = new Promise<string>((r) => (toClient = r));
    await client.subscribe('devices/+/temp', (value, meta) => toClient(`${meta.topic}=${String(value)}`));
    await client.publish('devices/pi-01/cmd', 'reboot', { retain: true }); // acknowledged once on disk (--data)
    device.publish('devices/pi-01/temp', '48.2');
    assert.equal(await within(toDevice, 'the MQTT device to receive the SDK client\'s publish'), 'devices/pi-01/cmd=reboot');
    assert.equal(await within(fromDevice, 'the SDK client to receive the MQTT device\'s publish'), 'devices/pi-01/temp=48.2');
    assert.ok(readdirSync(join(volume, 'retained')).some((f) => statSync(join(volume, 'retained', f)).size > 0), 'the retained value was written to the /data volume');
  } finally {
    device.end(true);
    await client.close();
  }

  proc.kill('SIGTERM'); // docker stop
  assert.equal(await within(exited, 'exit after SIGTERM', 15_000), 0, `clean exit on SIGTERM:\n${logs.join('')}`);
  assert.notEqual(healthcheck(), 0, 'the HEALTHCHECK command fails when nothing answers');
});
