/**
 * sdk/README.md's install lines, as written: `npm pack -w topicast` in the clone, then
 * `npm install ../topicast/topicast-0.1.0.tgz` in a project next to it; the installed package connects,
 * publishes and subscribes against a real broker. Dependencies come from npm's cache (filled by `npm ci`).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { startBroker } from '../helpers/broker.js';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../../../', import.meta.url));
const readme = readFileSync(join(root, 'sdk', 'README.md'), 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'topicast-sdk-install-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('sdk/README.md: npm pack -w topicast, npm install of the tarball in a project, then it works', async () => {
  const block = /```sh\n(npm pack -w topicast)\n(cd \.\.\/my-app && npm install (\.\.\/topicast\/topicast-[\d.]+\.tgz))\n```/.exec(readme);
  assert.ok(block, 'the README shows the two lines');
  const version = (JSON.parse(readFileSync(join(root, 'sdk', 'package.json'), 'utf8')) as { version: string }).version;
  assert.equal(block[3], `../topicast/topicast-${version}.tgz`);
  // The clone is `topicast/` next to `my-app/`: a symlink stands for it; the packed file moves there at once.
  const { stdout } = await run('npm', ['pack', '-w', 'topicast', '--silent'], { cwd: root });
  const tgz = stdout.trim().split('\n').pop()!;
  assert.equal(tgz, `topicast-${version}.tgz`);
  mkdirSync(join(dir, 'clone'));
  renameSync(join(root, tgz), join(dir, 'clone', tgz));
  symlinkSync(join(dir, 'clone'), join(dir, 'topicast'));
  mkdirSync(join(dir, 'my-app'));
  writeFileSync(join(dir, 'my-app', 'package.json'), JSON.stringify({ name: 'my-app', private: true, type: 'module' }));
  await run('sh', ['-c', `cd ${join(dir, 'my-app')} && npm install ${block[3]} --prefer-offline --no-audit --no-fund`], { timeout: 120_000 });

  const broker = await startBroker({ mqttOff: true });
  writeFileSync(join(dir, 'my-app', 'main.js'), `
import { connect } from 'topicast';
const client = await connect(process.argv[2]);
const got = new Promise((resolve) => client.subscribe('installed/t', resolve));
await client.publish('installed/t', { ok: 1 }, { ack: true });
console.log(JSON.stringify(await got));
await client.close();
`);
  const { stdout: printed } = await run(process.execPath, ['main.js', broker.url], { cwd: join(dir, 'my-app'), timeout: 20_000 });
  assert.equal(printed.trim(), '{"ok":1}');
  await broker.stop();
});
