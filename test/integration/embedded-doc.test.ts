/**
 * docs/EMBEDDED.md's commands, as written: its shell blocks are exactly the apt line (run by
 * release.test.ts, which installs packages) and the CGI script, run here against a real broker
 * (only the broker's port differs): it publishes the posted value retained and answers 204.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'topicast';
import { startBroker } from '../helpers/broker.js';

const doc = readFileSync(new URL('../../../docs/EMBEDDED.md', import.meta.url), 'utf8');
const version = (JSON.parse(readFileSync(new URL('../../../broker/package.json', import.meta.url), 'utf8')) as { version: string }).version;
const blocks = [...doc.matchAll(/```sh\n([\s\S]*?)```/g)].map((m) => m[1]!);
const dir = mkdtempSync(join(tmpdir(), 'topicast-embedded-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('docs/EMBEDDED.md: every shell block is one the tests run', () => {
  assert.equal(blocks.length, 2, 'the apt line and the CGI script');
  assert.equal(blocks[0], `apt install ./topicast_${version}_arm64.deb\n`);
  assert.match(blocks[1]!, /^#!\/bin\/sh\n# \/usr\/lib\/cgi-bin\/setpoint/);
});

test('docs/EMBEDDED.md: the CGI script publishes the posted value (retained) and answers 204', async () => {
  const broker = await startBroker({ mqttOff: true });
  const script = join(dir, 'setpoint');
  const text = blocks[1]!;
  assert.ok(text.includes('http://127.0.0.1:8080/api/publish/devices/board/setpoint?retain=1'));
  writeFileSync(script, text.replace('127.0.0.1:8080', `127.0.0.1:${broker.port}`));
  chmodSync(script, 0o755);
  const cgi = spawn(script, [], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, REQUEST_METHOD: 'POST', CONTENT_LENGTH: '5' } });
  let out = '';
  let err = '';
  cgi.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
  cgi.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  cgi.stdin.end('22.5\n');
  const code = await new Promise<number | null>((resolve) => cgi.on('close', resolve));
  assert.equal(code, 0, err);
  assert.equal(out, 'Status: 204 No Content\r\n\r\n');
  const client = await connect(broker.url, { codec: 'text' });
  const values: unknown[] = [];
  const sub = await client.subscribe('devices/board/setpoint', (v) => values.push(v));
  await sub.snapshot;
  assert.deepEqual(values, ['22.5'], 'the retained value a page opened later gets first');
  await client.close();
  await broker.stop();
});
