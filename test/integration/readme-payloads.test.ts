/**
 * The README's "Payloads across protocols" commands work as written (only the host and ports are
 * pointed at a test broker): with the README's SDK example subscribed, mosquitto_pub and curl
 * readings arrive as values, and mosquitto_sub prints the retained reading.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { connect } from 'topicast';
import { startBroker, waitFor } from '../helpers/broker.js';

const run = promisify(execFile);
const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const start = readme.indexOf('## Payloads across protocols');
const section = readme.slice(start, readme.indexOf('\n## ', start + 3));
const haveTools = await run('sh', ['-c', 'command -v mosquitto_pub && command -v mosquitto_sub && command -v curl']).then(() => true, () => false);
if (!haveTools && process.env.CI) throw new Error('mosquitto-clients and curl are required under CI');

test("README 'Payloads across protocols': each command's reading reaches the README's SDK example as a value", { skip: haveTools ? false : 'needs mosquitto-clients and curl' }, async () => {
  const block = /```sh\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'the section has a sh block');
  const lines = block[1]!.trim().split('\n');
  assert.equal(lines.length, 4);
  // The README's own SDK example (section "Use it from code") on the same topic.
  const example = readme.slice(readme.indexOf('## Use it from code'));
  assert.ok(example.includes("client.subscribe('devices/+/cpu/temperature', (celsius, meta) => console.log(meta.topic, celsius))"));
  const broker = await startBroker();
  const client = await connect(broker.url);
  const got: unknown[] = [];
  await (await client.subscribe('devices/+/cpu/temperature', (celsius) => got.push(celsius), { retained: false })).snapshot;
  const local = (line: string): string => line
    .replaceAll('-h localhost', `-h 127.0.0.1 -p ${broker.mqttPort}`)
    .replaceAll('localhost:8080', `127.0.0.1:${broker.port}`);
  for (const line of lines.slice(0, 3)) await run('sh', ['-c', `${local(line)} >/dev/null`]);
  await waitFor(() => got.length >= 3, 'three readings', 5000);
  assert.deepEqual(got, [48.2, 48.2, { value: 48.2, unit: '°C' }]);
  const { stdout } = await run('sh', ['-c', local(lines[3]!)], { timeout: 5000 });
  assert.equal(stdout, '48.2\n', 'mosquitto_sub prints the retained reading curl stored');
  await client.close();
  await broker.stop();
});
