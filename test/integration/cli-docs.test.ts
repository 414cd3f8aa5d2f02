/**
 * Keeps docs/CLI.md true: every ```sh block runs as written with bash against a live broker —
 * `topicast` on PATH, TOPICAST_URL pointing at the broker, and the mosquitto clients pointed at its
 * MQTT port through their own config files ($XDG_CONFIG_HOME/mosquitto_pub, as a user would) —
 * and its output matches the ```text block after it. The marker before each block says what to
 * compare: `<!-- cli-example -->` (status 0), `<!-- cli-example: stdout -->`,
 * `<!-- cli-example: stderr N -->` (exit status N, that exact stderr, nothing on stdout).
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect, type Client } from 'topicast';
import { BROKER_MAIN, startBroker, waitFor } from '../helpers/broker.js';

const doc = readFileSync(new URL('../../../docs/CLI.md', import.meta.url), 'utf8');
const hasMosquitto = spawnSync('sh', ['-c', 'command -v mosquitto_pub && command -v mosquitto_sub']).status === 0;
if (!hasMosquitto && process.env.CI) throw new Error('mosquitto-clients is required in CI (apt-get install mosquitto-clients)');

interface Example {
  marker: string;
  script: string;
  expected: string | undefined;
}

/** Every ```sh block with the marker before it and the ```text block right after it. */
function examples(markdown: string): Example[] {
  const out: Example[] = [];
  const re = /(?:<!-- (cli-example[^>]*?) -->\n)?```sh\n([\s\S]*?)\n```\n(?:```text\n([\s\S]*?)\n```\n)?/g;
  for (const m of markdown.matchAll(re)) out.push({ marker: m[1] ?? '', script: m[2]!, expected: m[3] });
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'topicast-cli-docs-'));
let client: Client | undefined;
after(async () => {
  await client?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('docs/CLI.md: every shell example runs as written and prints what the page shows', { skip: hasMosquitto ? false : 'mosquitto-clients not installed' }, async () => {
  const found = examples(doc);
  assert.ok(found.length >= 8, `found ${found.length} examples`);
  for (const e of found) assert.match(e.marker, /^cli-example(: stdout|: stderr \d+)?$/, `every sh block is marked:\n${e.script}`);

  const broker = await startBroker();
  const bin = join(dir, 'bin');
  mkdirSync(bin);
  writeFileSync(join(bin, 'topicast'), `#!/bin/sh\nexec "${process.execPath}" "${BROKER_MAIN}" "$@"\n`);
  chmodSync(join(bin, 'topicast'), 0o755);
  const config = join(dir, 'config');
  mkdirSync(config);
  for (const tool of ['mosquitto_pub', 'mosquitto_sub']) writeFileSync(join(config, tool), `-h 127.0.0.1\n-p ${broker.mqttPort}\n`);
  const work = join(dir, 'work');
  mkdirSync(work);
  writeFileSync(join(work, 'photo.jpg'), Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 31) & 0xff)));
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, TOPICAST_URL: broker.url, XDG_CONFIG_HOME: config, TOPICAST_TOKEN: '' };

  client = await connect(broker.url);
  const counts: unknown[] = [];
  await client.subscribe('devices/pi-01/count', (v) => counts.push(v));

  for (const e of found) {
    const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
      // Its own process group, killed whole if it hangs: a `topicast sub` left waiting must not outlive the test.
      const child = spawn('bash', ['-c', `set -eo pipefail\n${e.script}`], { cwd: work, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 20_000);
      child.on('close', (code) => {
        clearTimeout(timer);
        resolve({ status: code, stdout, stderr });
      });
    });
    const what = `${e.script}\n→ status ${r.status}\nstdout ${JSON.stringify(r.stdout)}\nstderr ${JSON.stringify(r.stderr)}`;
    const failing = /^cli-example: stderr (\d+)$/.exec(e.marker);
    if (failing) {
      assert.equal(r.status, Number(failing[1]), what);
      assert.equal(r.stderr, `${e.expected}\n`, what);
      assert.equal(r.stdout, '', what);
      continue;
    }
    assert.equal(r.status, 0, what);
    assert.equal(r.stderr, '', what);
    if (e.marker === 'cli-example: stdout') assert.equal(r.stdout, `${e.expected}\n`, what);
    else assert.equal(e.expected, undefined, `an output block needs a "stdout" or "stderr" marker:\n${e.script}`);
  }
  // The -l example: three messages, in order, that the SDK reads as numbers.
  await waitFor(() => counts.length === 3, 'the three lines of seq 1 3');
  assert.deepEqual(counts, [1, 2, 3]);
  await broker.stop();
});
