/**
 * The README's "Exec sensors" example, as written (only the script's location moves from
 * /usr/local/bin to a scratch directory): the shell lines create the script, the JSON goes into the
 * broker's config file, and `--agent` publishes the script's lines as readings.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from 'topicast';
import { startBroker } from '../helpers/broker.js';
import { eventually } from '../unit/sdk/agent/spawn-agent.js';

const run = promisify(execFile);
const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const section = readme.slice(readme.indexOf('## Exec sensors'), readme.indexOf('\n## ', readme.indexOf('## Exec sensors') + 3));
const dir = mkdtempSync(join(tmpdir(), 'topicast-exec-readme-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('README exec sensors: the shell script and the config publish devices/<id>/exec/board/{load,processes,uptime}', async () => {
  const sh = /```sh\n([\s\S]*?)```/.exec(section)?.[1];
  const json = /```json\n([\s\S]*?)```/.exec(section)?.[1];
  assert.ok(sh && json, 'the section shows the script and the config');
  const script = join(dir, 'board-sensors');
  const place = (text: string) => text.replaceAll('/usr/local/bin/board-sensors', script);
  await run('sh', ['-ec', place(sh)]);
  const config = join(dir, 'topicast.json');
  writeFileSync(config, place(json));
  const broker = await startBroker({ args: ['--config', config], env: { TOPICAST_AGENT_ID: 'exec-readme', TOPICAST_AGENT_READERS: 'none' } });
  const client = await connect(broker.url);
  const seen = new Map<string, unknown>();
  await client.subscribe('devices/exec-readme/exec/#', (value, meta) => seen.set(meta.topic, value));
  try {
    await eventually(() => seen.size >= 3, 'three exec readings', 15_000, () => `${[...seen.keys()].join(' ')}\n${broker.logs.join('\n')}`);
    for (const name of ['load', 'processes', 'uptime']) {
      const v = seen.get(`devices/exec-readme/exec/board/${name}`) as { value: unknown } | undefined;
      assert.equal(typeof v?.value, 'number', `${name}: ${JSON.stringify(v)}`);
    }
    assert.ok((seen.get('devices/exec-readme/exec/board/processes') as { value: number }).value > 1);
  } finally {
    await client.close();
    await broker.stop();
  }
});
