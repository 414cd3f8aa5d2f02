/**
 * The broker must finish a SIGTERM shutdown even when whoever read its stdout is gone
 * (a supervisor or test runner that died): logging may stop, the broker may not hang.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';
import { BROKER_MAIN } from '../helpers/broker.js';

const parentScript = `
const { spawn } = require('node:child_process');
const c = spawn(process.execPath, [${JSON.stringify(BROKER_MAIN)}, '--host', '127.0.0.1', '--port', '0', '--mqtt-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
c.stdout.once('data', () => { process.stdout.write(String(c.pid) + '\\n'); process.kill(process.pid, 'SIGKILL'); });
`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('SIGTERM shuts the broker down although its stdout reader died', async () => {
  const parent = spawn(process.execPath, ['-e', parentScript], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  parent.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  await new Promise((r) => parent.on('exit', r));
  const pid = Number(out.trim());
  assert.ok(pid > 0, `the parent printed the broker pid, got ${JSON.stringify(out)}`);
  try {
    process.kill(pid, 'SIGTERM');
    const deadline = Date.now() + 8000;
    while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.equal(alive(pid), false, 'the broker exited');
  } finally {
    if (alive(pid)) process.kill(pid, 'SIGKILL');
  }
});
