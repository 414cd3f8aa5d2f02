#!/usr/bin/env node
// `npm run release`: self-contained packages for small Linux boards and servers, built from the
// workspace's build output (run `npm run build` first; `npm run release` does).
//
// For each of linux-x64, linux-arm64 and linux-armv7:
//   dist/release/topicast-VERSION-linux-ARCH.tar.xz   unpack anywhere, run bin/topicast with the machine's node
//   dist/release/topicast_VERSION_DEBARCH.deb          /usr/bin/topicast, /usr/bin/topicast-agent, systemd units,
//                                                      /etc/topicast/, a `topicast` system user; Depends: nodejs (>= 18.19)
// Each holds: the broker and the agent bundled by esbuild (lib/, one copy of the shared code), the dashboard
// (lib/public), the SDK browser bundles (lib/sdk), the systemd units, and only the uWebSockets.js binaries of
// that platform for the Node versions it supports (lib/node_modules/uWebSockets.js). Nothing is downloaded.
// Usage: node release/build.js [--out DIR] [--target linux-x64,...] [--no-deb]
import { execFile, execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { promisify } from 'node:util';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

const root = fileURLToPath(new URL('..', import.meta.url));
const here = fileURLToPath(new URL('.', import.meta.url));

/** Node versions `engines` allows, as the ABI numbers uWebSockets.js names its binaries by. */
// Node 21 (ABI 120) is left out: end of life, and 6 MB per platform. Node 23 (131) has no uWebSockets.js build.
export const NODE_ABIS = { 108: 'Node 18', 115: 'Node 20', 127: 'Node 22', 137: 'Node 24', 141: 'Node 25' };
export const TARGETS = {
  'linux-x64': { uwsArch: 'x64', debArch: 'amd64' },
  'linux-arm64': { uwsArch: 'arm64', debArch: 'arm64' },
  'linux-armv7': { uwsArch: 'arm', debArch: 'armhf' },
};
export const MAX_PACKAGE_BYTES = 8 * 1024 * 1024; // the board target: fits a slow link and a small flash partition

function fail(message) {
  console.error(`release: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const out = { outDir: join(root, 'dist', 'release'), targets: Object.keys(TARGETS), deb: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--out') out.outDir = argv[++i] ?? fail('--out needs a directory');
    else if (a === '--target') out.targets = (argv[++i] ?? fail('--target needs a list')).split(',');
    else if (a === '--no-deb') out.deb = false;
    else fail(`unknown argument ${JSON.stringify(a)} (usage: node release/build.js [--out DIR] [--target linux-x64,linux-arm64,linux-armv7] [--no-deb])`);
  }
  for (const t of out.targets) if (!(t in TARGETS)) fail(`unknown target ${JSON.stringify(t)} (known: ${Object.keys(TARGETS).join(', ')})`);
  return out;
}

const options = parseArgs(process.argv.slice(2));
const brokerPkg = JSON.parse(readFileSync(join(root, 'broker', 'package.json'), 'utf8'));
const version = brokerPkg.version;
const nodeRange = brokerPkg.engines.node; // >=18.19.0
const uwsDir = join(root, 'node_modules', 'uWebSockets.js');

for (const needed of ['broker/dist/main.js', 'sdk/dist/agent/cli.js', 'broker/dist/public/index.html', 'broker/dist/sdk/topicast.js']) {
  if (!existsSync(join(root, needed))) fail(`${needed} is missing: run \`npm run build\` first (\`npm run release\` does)`);
}

// 1. The JavaScript, once for every target: two entries sharing chunks; lazily loaded parts (the agent
// inside the broker, its transports, `topicast pub/sub`) stay separate chunks, loaded only when used.
const stage = join(options.outDir, '.stage');
rmSync(options.outDir, { recursive: true, force: true });
mkdirSync(stage, { recursive: true });
const lib = join(stage, 'lib');
const agentInfo = join(root, 'sdk', 'dist', 'agent', 'info.js');
const result = await esbuild.build({
  entryPoints: { topicast: join(here, 'entry-broker.js'), 'topicast-agent': join(here, 'entry-agent.js') },
  outdir: lib,
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node18.19',
  // The native addon is shipped beside the bundle, per platform; msgpackr's optional native extension is left out
  // (it falls back to JavaScript). The cluster bus adapters are imported by variable and so are not part of it.
  external: ['uWebSockets.js', 'msgpackr-extract', '@msgpackr-extract/*'],
  // CommonJS dependencies (pino, mqtt.js) call require() for Node's modules.
  banner: { js: "import { createRequire as __topicastCreateRequire } from 'node:module'; const require = __topicastCreateRequire(import.meta.url);" },
  chunkNames: 'chunk-[hash]',
  minify: true,
  legalComments: 'none',
  metafile: true,
  logLevel: 'warning',
  plugins: [{
    // Memory on a small board (docs/EMBEDDED.md "Footprint", bench/src/footprint.ts): the native addon is loaded with
    // require() (the banner's), not through the ESM loader's CommonJS translation (cjs-module-lexer and its
    // bookkeeping, ~0.15 MiB resident); mqtt-packet's buffer list (bl) gets Node's own stream module instead of
    // the readable-stream copy of it (~0.5 MiB: 78 KB of JavaScript parsed and kept at start-up).
    name: 'footprint',
    setup(build) {
      build.onResolve({ filter: /^uWebSockets\.js$/ }, (args) => (args.namespace === 'uws-require' ? { path: 'uWebSockets.js', external: true } : { path: 'uWebSockets.js', namespace: 'uws-require' }));
      build.onLoad({ filter: /.*/, namespace: 'uws-require' }, () => ({ contents: "module.exports = require('uWebSockets.js');", loader: 'js', resolveDir: root }));
      build.onResolve({ filter: /^readable-stream$/ }, (args) => (/[\\/]node_modules[\\/]bl[\\/]/.test(args.importer) ? { path: 'node:stream', external: true } : undefined));
    },
  }, {
    // The agent finds its version at ../../package.json from sdk/dist/agent/; in the bundle, package.json is one level up.
    name: 'agent-version',
    setup(build) {
      build.onLoad({ filter: /[\\/]sdk[\\/]dist[\\/]agent[\\/]info\.js$/ }, () => {
        const text = readFileSync(agentInfo, 'utf8');
        if (!text.includes("'../../package.json'")) fail('sdk/dist/agent/info.js no longer reads ../../package.json: update release/build.js');
        return { contents: text.replace("'../../package.json'", "'../package.json'"), loader: 'js' };
      });
    },
  }],
}).catch(() => fail('esbuild failed (see above)'));
const leaked = Object.keys(result.metafile.inputs).filter((p) => /node_modules\/(nats|playwright|typescript|fast-check)\//.test(p));
if (leaked.length) fail(`modules the packages must not carry were bundled: ${leaked.slice(0, 5).join(', ')}`);
cpSync(join(root, 'broker', 'dist', 'public'), join(lib, 'public'), { recursive: true });
cpSync(join(root, 'broker', 'dist', 'sdk'), join(lib, 'sdk'), { recursive: true });
writeFileSync(join(stage, 'package.json'), JSON.stringify({ name: 'topicast', version, private: true, type: 'module', engines: { node: nodeRange } }, null, 2) + '\n');
for (const f of ['LICENSE']) if (existsSync(join(root, f))) cpSync(join(root, f), join(stage, f));

function launcher(entry) {
  return `#!/bin/sh
# Runs Topicast's bundled ${entry} with the Node.js on PATH (Node ${nodeRange.replace('>=', '')} or later).
here=$(dirname "$(readlink -f "$0")")
command -v node >/dev/null 2>&1 || { echo "${entry}: needs Node.js ${nodeRange.replace('>=', '')} or later on PATH (Debian, Raspberry Pi OS: apt install nodejs)" >&2; exit 1; }
exec node \${TOPICAST_NODE_OPTIONS:-} "$here/../lib/${entry}.js" "$@"
`;
}

const run = promisify(execFile);
const sizes = [];
const jobs = [];
for (const target of options.targets) {
  const { uwsArch, debArch } = TARGETS[target];
  const name = `topicast-${version}-${target}`;
  const dir = join(options.outDir, name);
  cpSync(stage, dir, { recursive: true });

  // 2. uWebSockets.js: its loader and only this platform's binaries for the Node versions we support.
  const uwsOut = join(dir, 'lib', 'node_modules', 'uWebSockets.js');
  mkdirSync(uwsOut, { recursive: true });
  cpSync(join(uwsDir, 'uws.js'), join(uwsOut, 'uws.js'));
  cpSync(join(uwsDir, 'LICENSE'), join(uwsOut, 'LICENSE'));
  const uwsPkg = JSON.parse(readFileSync(join(uwsDir, 'package.json'), 'utf8'));
  writeFileSync(join(uwsOut, 'package.json'), JSON.stringify({ name: 'uWebSockets.js', version: uwsPkg.version, license: uwsPkg.license, main: 'uws.js' }, null, 2) + '\n');
  const abis = [];
  for (const abi of Object.keys(NODE_ABIS)) {
    const bin = `uws_linux_${uwsArch}_${abi}.node`;
    if (!existsSync(join(uwsDir, bin))) continue;
    cpSync(join(uwsDir, bin), join(uwsOut, bin));
    abis.push(abi);
  }
  if (abis.length === 0) fail(`no uWebSockets.js binary for linux-${uwsArch}`);
  writeFileSync(join(dir, 'lib', 'platform.json'), JSON.stringify({ target, arch: uwsArch, abis: abis.map(Number), nodes: abis.map((a) => NODE_ABIS[a]) }) + '\n');

  // 3. Launchers, units, default configuration.
  mkdirSync(join(dir, 'bin'));
  for (const entry of ['topicast', 'topicast-agent']) {
    writeFileSync(join(dir, 'bin', entry), launcher(entry));
    chmodSync(join(dir, 'bin', entry), 0o755);
  }
  mkdirSync(join(dir, 'systemd'));
  for (const u of ['topicast.service', 'topicast-agent.service', 'README.md']) cpSync(join(root, 'deploy', 'systemd', u), join(dir, 'systemd', u));
  cpSync(join(here, 'etc'), join(dir, 'etc'), { recursive: true });
  writeFileSync(join(dir, 'README.md'), readFileSync(join(here, 'PACKAGE.md'), 'utf8').replaceAll('VERSION', version).replaceAll('TARGET', target).replaceAll('NODES', abis.map((a) => NODE_ABIS[a]).join(', ')));

  // 4. The tarball: reproducible (sorted, root-owned, fixed mtime), xz because the binaries compress 3x better than gzip.
  const tarball = join(options.outDir, `${name}.tar.xz`);
  const mtime = '@' + Math.floor(Number(execFileSync('git', ['-C', root, 'log', '-1', '--format=%ct'], { encoding: 'utf8' }).trim() || '0'));
  execFileSync('tar', ['--sort=name', '--owner=0', '--group=0', '--numeric-owner', `--mtime=${mtime}`, '-C', options.outDir, '-cf', tarball.replace(/\.xz$/, ''), name]);
  jobs.push(async () => {
    // A 16 MiB window holds two binaries, so the next one (nearly the same) costs little; the fast preset
    // compresses as well as -9 here at a tenth of the time.
    await run('xz', ['--lzma2=preset=1,dict=16MiB', '-f', tarball.replace(/\.xz$/, '')]);
    sizes.push([tarball, statSync(tarball).size]);
  });

  // 5. The .deb.
  if (options.deb) {
    const debRoot = join(options.outDir, `.deb-${debArch}`);
    const usrLib = join(debRoot, 'usr', 'lib', 'topicast');
    mkdirSync(usrLib, { recursive: true });
    for (const part of ['lib', 'bin', 'package.json', 'README.md']) cpSync(join(dir, part), join(usrLib, part), { recursive: true });
    mkdirSync(join(debRoot, 'usr', 'bin'), { recursive: true });
    for (const entry of ['topicast', 'topicast-agent']) symlinkSync(`../lib/topicast/bin/${entry}`, join(debRoot, 'usr', 'bin', entry));
    mkdirSync(join(debRoot, 'lib', 'systemd', 'system'), { recursive: true });
    for (const u of ['topicast.service', 'topicast-agent.service']) cpSync(join(dir, 'systemd', u), join(debRoot, 'lib', 'systemd', 'system', u));
    cpSync(join(here, 'etc'), join(debRoot, 'etc'), { recursive: true });
    const control = join(debRoot, 'DEBIAN');
    mkdirSync(control);
    const installedKb = Math.ceil(duBytes(join(debRoot, 'usr')) / 1024);
    writeFileSync(join(control, 'control'), readFileSync(join(here, 'debian', 'control'), 'utf8').replace('VERSION', version).replace('ARCH', debArch).replace('INSTALLED_KB', String(installedKb)));
    writeFileSync(join(control, 'conffiles'), listFiles(join(debRoot, 'etc')).map((f) => '/' + f.slice(debRoot.length + 1)).join('\n') + '\n');
    for (const script of ['postinst', 'prerm', 'postrm']) {
      cpSync(join(here, 'debian', script), join(control, script));
      chmodSync(join(control, script), 0o755);
    }
    const deb = join(options.outDir, `topicast_${version}_${debArch}.deb`);
    jobs.push(async () => {
      await run('dpkg-deb', ['--root-owner-group', '-Zxz', '-z6', '--build', debRoot, deb]);
      rmSync(debRoot, { recursive: true, force: true });
      sizes.push([deb, statSync(deb).size]);
    });
  }
}
rmSync(stage, { recursive: true, force: true });

// 6. Compression is most of the time: as many at once as there are cores.
const queue = [...jobs];
await Promise.all(Array.from({ length: Math.min(queue.length, availableParallelism()) }, async () => {
  for (let job = queue.shift(); job; job = queue.shift()) await job();
})).catch((err) => fail(`packaging failed: ${err.stderr || err.message}`));
sizes.sort(([a], [b]) => (a < b ? -1 : 1));
for (const target of options.targets) rmSync(join(options.outDir, `topicast-${version}-${target}`), { recursive: true, force: true }); // packaged now

let tooBig = false;
for (const [file, bytes] of sizes) {
  console.log(`release: ${file.slice(root.length)} ${(bytes / 1024 / 1024).toFixed(2)} MiB`);
  if (bytes > MAX_PACKAGE_BYTES) tooBig = true;
}
if (tooBig) fail(`a package is larger than ${MAX_PACKAGE_BYTES / 1024 / 1024} MiB`);

function listFiles(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? listFiles(join(dir, e.name)) : [join(dir, e.name)]));
}

function duBytes(dir) {
  return listFiles(dir).reduce((n, f) => n + statSync(f).size, 0);
}
