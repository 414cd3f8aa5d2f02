/**
 * The README's "Follow topics over HTTP" command works as written (only the host and port pointed at
 * a test broker) and prints exactly the events the README shows, for a reading stored with curl and a
 * live one from the SDK.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { connect } from 'topicast';
import { startBroker, waitFor } from '../helpers/broker.js';

const run = promisify(execFile);
const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const start = readme.indexOf('## Follow topics over HTTP');
const section = readme.slice(start, readme.indexOf('\n## ', start + 3));
const haveCurl = await run('sh', ['-c', 'command -v curl']).then(() => true, () => false);
if (!haveCurl && process.env.CI) throw new Error('curl is required under CI');

test("README 'Follow topics over HTTP': curl -N prints the README's events", { skip: haveCurl ? false : 'needs curl' }, async () => {
  const [command, output] = [...section.matchAll(/```(?:sh)?\n([\s\S]*?)```/g)].map((m) => m[1]!);
  assert.ok(command !== undefined && output !== undefined, 'the section has the command and its output');
  assert.equal(command.trim().split('\n').length, 1);
  const broker = await startBroker();
  // The reading stored as in "Payloads across protocols" (curl --data: untyped), then the command.
  await run('curl', ['-s', '-X', 'POST', '--data', '48.2', `${broker.httpUrl}/api/publish/devices/pi-01/cpu/temperature?retain=1`]);
  const curl = spawn('sh', ['-c', 'exec ' + command.trim().replaceAll('localhost:8080', `127.0.0.1:${broker.port}`)]);
  let out = '';
  curl.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  try {
    await waitFor(() => out.includes('snapshot-end'), 'the snapshot');
    const client = await connect(broker.url);
    await client.publish('devices/pi-01/cpu/temperature', 48.3);
    await client.close();
    await waitFor(() => out.length >= output.length, 'the live reading');
    assert.equal(out, `${output}\n`);
  } finally {
    curl.kill();
  }
});
