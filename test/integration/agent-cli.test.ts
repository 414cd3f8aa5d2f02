// The topicast-agent command without a broker: --once --print, --help, bad configuration.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture } from '../unit/sdk/agent/fixtures.js';
import { spawnAgent } from '../unit/sdk/agent/spawn-agent.js';

async function run(args: string[], env: Record<string, string> = {}) {
  const agent = spawnAgent(args, env);
  const timer = setTimeout(() => agent.kill('SIGKILL'), 15_000);
  const exit = await agent.exited;
  clearTimeout(timer);
  return { ...exit, stdout: agent.stdout.join('\n'), stderr: agent.logs };
}

test('--once --print on the Raspberry Pi tree: one round as JSON, no connection', async () => {
  // The URL points nowhere: --once must not try to connect.
  const r = await run(['--once', '--print', '--root', fixture('pi'), '--id', 'pi-01', '--url', 'ws://127.0.0.1:9/ws']);
  assert.equal(r.code, 0, r.stderr.join('\n'));
  const out = JSON.parse(r.stdout) as { id: string; ts: number; readings: Record<string, { value: unknown; unit: string }> };
  assert.equal(out.id, 'pi-01');
  assert.deepEqual(out.readings['cpu/temperature'], { value: 48.2, unit: '°C' });
  assert.deepEqual(out.readings['thermal/cpu-thermal/temperature'], { value: 48.2, unit: '°C' });
  assert.deepEqual(out.readings['load/1m'], { value: 0.52, unit: '' });
  assert.deepEqual(out.readings['cpu/0/frequency'], { value: 600, unit: 'MHz' });
  assert.equal(out.readings['memory/usage']!.unit, '%');
});

test('--once --print on this machine includes rates (two reads apart)', async () => {
  const r = await run(['--once', '--print'], { TOPICAST_AGENT_ID: 'here' });
  assert.equal(r.code, 0, r.stderr.join('\n'));
  const out = JSON.parse(r.stdout) as { id: string; readings: Record<string, { value: number; unit: string }> };
  assert.equal(out.id, 'here');
  assert.ok(out.readings['cpu/usage'], Object.keys(out.readings).join(' '));
  assert.ok(out.readings['uptime']!.value > 0);
  assert.ok(Object.keys(out.readings).some((k) => k.startsWith('disk/root/')));
});

test('bad configuration: exit 2 with one clear line on stderr', async () => {
  const r = await run(['--interval', 'soon']);
  assert.equal(r.code, 2);
  assert.deepEqual(r.stderr, ['topicast-agent: invalid --interval "soon" (from --interval): must be a number of seconds ≥ 0.05']);
  const dir = mkdtempSync(join(tmpdir(), 'agent-cfg-'));
  try {
    const file = join(dir, 'agent.json');
    writeFileSync(file, JSON.stringify({ exec: [{ name: 'x', command: 'true', mode: 'periodic' }] }));
    const r2 = await run([], { TOPICAST_AGENT_CONFIG: file });
    assert.equal(r2.code, 2);
    assert.equal(r2.stderr.length, 1);
    assert.match(r2.stderr[0]!, /^topicast-agent: invalid exec sensor intervalSec .* a periodic sensor needs intervalSec$/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--help prints the usage and exits 0', async () => {
  const r = await run(['--help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^Usage: topicast-agent/);
  assert.match(r.stdout, /TOPICAST_AGENT_/);
});
