// deploy/systemd: the broker and agent units parse cleanly (`systemd-analyze verify`), keep their
// restart policy and hardening, and score "OK" in `systemd-analyze security --offline`.
//
// `verify` insists that ExecStart's binary exists. The units point at /usr/bin/topicast and
// /usr/bin/topicast-agent (where `npm install -g` puts them), which are not installed here, so the
// test verifies a copy in a temp directory whose ExecStart is this Node binary running the built
// sdk/dist/agent/cli.js or broker/dist/main.js. Every other line is verified exactly as shipped.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../../', import.meta.url));
const UNITS = {
  'topicast.service': { bin: '/usr/bin/topicast', script: join(ROOT, 'broker/dist/main.js'), restart: 'on-failure' },
  'topicast-agent.service': { bin: '/usr/bin/topicast-agent', script: join(ROOT, 'sdk/dist/agent/cli.js'), restart: 'always' },
} as const;

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
const missing = analyze.error ? 'systemd-analyze is not installed (Debian package systemd)' : undefined;
if (missing && process.env.CI) throw new Error(`${missing}; required in CI`);
if (missing) console.log(`# skipping systemd-analyze checks: ${missing}`);

function directives(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(eq > 0, `not a directive: ${line}`);
    const key = `${section}.${line.slice(0, eq)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(eq + 1)]);
  }
  return out;
}

function unitText(name: keyof typeof UNITS): string {
  return readFileSync(join(ROOT, 'deploy/systemd', name), 'utf8');
}

/** A copy of both units whose ExecStart runs the built code with this Node; everything else unchanged. */
function runnableCopies(): { dir: string; paths: Record<string, string> } {
  const dir = mkdtempSync(join(tmpdir(), 'topicast-units-'));
  const paths: Record<string, string> = {};
  for (const [name, u] of Object.entries(UNITS)) {
    const text = unitText(name as keyof typeof UNITS);
    const line = `ExecStart=${u.bin}`;
    assert.ok(text.includes(`\n${line}\n`), `${name} has ${line}`);
    paths[name] = join(dir, name);
    writeFileSync(paths[name]!, text.replace(`\n${line}\n`, `\nExecStart=${process.execPath} ${u.script}\n`));
  }
  return { dir, paths };
}

for (const name of Object.keys(UNITS) as (keyof typeof UNITS)[]) {
  test(`${name}: restart policy and hardening are present`, () => {
    const d = directives(unitText(name));
    const one = (k: string) => d.get(k)?.at(-1);
    assert.equal(one('Service.ExecStart'), UNITS[name].bin);
    assert.equal(one('Service.Restart'), UNITS[name].restart);
    assert.ok(Number(one('Service.RestartSec')) > 0);
    assert.ok(one('Service.DynamicUser') === 'yes' || one('Service.User') !== undefined, 'runs as an unprivileged user');
    for (const [k, v] of [
      ['NoNewPrivileges', 'yes'],
      ['ProtectSystem', 'strict'],
      ['ProtectHome', 'yes'],
      ['PrivateTmp', 'yes'],
      ['ProtectKernelTunables', 'yes'],
      ['ProtectKernelModules', 'yes'],
      ['ProtectControlGroups', 'yes'],
      ['RestrictSUIDSGID', 'yes'],
      ['CapabilityBoundingSet', ''],
    ]) {
      assert.equal(one(`Service.${k}`), v, `${k}=${v}`);
    }
    assert.notEqual(one('Service.MemoryDenyWriteExecute'), 'yes', "V8's JIT needs writable executable memory");
    assert.notEqual(one('Service.ProcSubset'), 'pid', name === 'topicast-agent.service' ? 'the agent reads /proc/stat, /proc/meminfo...' : 'os.cpus() reads /proc/stat');
    assert.equal(one('Install.WantedBy'), 'multi-user.target');
  });
}

test('the agent unit never gives up and comes after the network and the local broker', () => {
  const d = directives(unitText('topicast-agent.service'));
  assert.equal(d.get('Unit.StartLimitIntervalSec')?.at(-1), '0');
  assert.match(d.get('Unit.After')!.join(' '), /network-online\.target.*topicast\.service/);
});

test('systemd-analyze verify accepts both units with no warning', { skip: missing }, () => {
  const { dir, paths } = runnableCopies();
  try {
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', ...Object.values(paths)], {
      encoding: 'utf8',
      env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:`, SYSTEMD_LOG_COLOR: '0' },
    });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr.trim(), '', 'verify prints unknown keys and bad values as warnings while still exiting 0');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('verify catches a misspelt directive (the check above can fail)', { skip: missing }, () => {
  const { dir, paths } = runnableCopies();
  try {
    const p = paths['topicast-agent.service']!;
    writeFileSync(p, readFileSync(p, 'utf8').replace('\nRestart=always\n', '\nRestrat=always\n'));
    const r = spawnSync('systemd-analyze', ['verify', '--man=no', p], { encoding: 'utf8', env: { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` } });
    assert.match(r.stderr, /Unknown key 'Restrat'/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('systemd-analyze security rates both units OK (exposure ≤ 2.0)', { skip: missing }, () => {
  const { dir, paths } = runnableCopies();
  try {
    for (const [name, p] of Object.entries(paths)) {
      let out = '';
      try {
        out = execFileSync('systemd-analyze', ['security', '--offline=yes', '--threshold=20', '--no-pager', p], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      } catch (err) {
        assert.fail(`${name}: exposure above 2.0\n${(err as { stdout?: string }).stdout ?? err}`);
      }
      assert.match(out, /Overall exposure level for .*: [0-2]\.\d/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
