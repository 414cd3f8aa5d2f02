/**
 * Keeps sdk/README.md true: its Node example (the fenced block after
 * `<!-- example:node -->`) runs verbatim in a child Node process against a live
 * broker, and its browser example (after `<!-- example:browser -->`) runs verbatim
 * in headless Chromium from a page the broker serves with --static.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { Browser } from 'playwright-core';
import { connect, type Client } from 'topicast';
import { startBroker, waitFor } from '../helpers/broker.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));

/** The first fenced code block after `<!-- example:NAME -->`. */
function exampleBlock(markdown: string, name: string): string {
  const marker = `<!-- example:${name} -->`;
  const at = markdown.indexOf(marker);
  assert.ok(at >= 0, `README has no ${marker}`);
  const match = /```[a-z]*\n([\s\S]*?)\n```/.exec(markdown.slice(at + marker.length));
  assert.ok(match, `no fenced block after ${marker}`);
  return match[1]!;
}

const readme = readFileSync(`${repo}sdk/README.md`, 'utf8');
const dir = mkdtempSync(join(tmpdir(), 'topicast-readme-'));
const clients: Client[] = [];
let browser: Browser | undefined;
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

const broker = await startBroker({ args: ['--static', dir] });

test('the README Node example runs as written', async () => {
  const code = exampleBlock(readme, 'node');
  assert.match(code, /from 'topicast'/);
  const work = mkdtempSync(join(dir, 'node-'));
  symlinkSync(`${repo}node_modules`, join(work, 'node_modules'), 'dir'); // resolves 'topicast' like an installed package
  writeFileSync(join(work, 'example.mjs'), code);
  const { stdout } = await promisify(execFile)(process.execPath, [join(work, 'example.mjs')], {
    env: { ...process.env, TOPICAST_URL: broker.url },
    timeout: 20_000,
  });
  const lines = stdout.trim().split('\n');
  assert.ok(lines.includes('devices/pi-01/status is online (retained)'), stdout);
  assert.ok(lines.includes('devices/pi-01/cpu/temperature: 48.2 °C'), stdout);
  assert.equal(lines.at(-1), 'state: closed', stdout);
});

test('the README request/reply example runs as written', async () => {
  const code = exampleBlock(readme, 'request');
  const work = mkdtempSync(join(dir, 'request-'));
  symlinkSync(`${repo}node_modules`, join(work, 'node_modules'), 'dir');
  writeFileSync(join(work, 'example.mjs'), code);
  const { stdout } = await promisify(execFile)(process.execPath, [join(work, 'example.mjs')], { env: { ...process.env, TOPICAST_URL: broker.url }, timeout: 20_000 });
  assert.equal(stdout.trim(), '42');
  assert.match(code, /\/\/ 42$/m);
});

const skip = chromiumSkip();

test('the README browser example runs as written in headless Chromium', { skip }, async () => {
  const html = exampleBlock(readme, 'browser');
  assert.match(html, /from '\.\/topicast\.js'/);
  copyFileSync(`${repo}sdk/dist/browser/topicast.js`, join(dir, 'topicast.js'));
  writeFileSync(join(dir, 'example.html'), html);
  const publisher = await connect(broker.url);
  clients.push(publisher);
  await publisher.publish('devices/pi-02/cpu/temperature', 47, { retain: true, ack: true });
  browser = await launchChromium();
  const tab = await browser.newPage();
  const errors: string[] = [];
  tab.on('pageerror', (e) => errors.push(e.message));
  await tab.goto(`${broker.httpUrl}/example.html`);
  await tab.waitForSelector('#out[data-ready="yes"]', { timeout: 10_000 });
  assert.equal(await tab.textContent('#out'), 'devices/pi-02/cpu/temperature: 47 °C'); // the retained value
  assert.equal(await tab.getAttribute('#out', 'data-state'), null); // no state change since open
  await publisher.publish('devices/pi-03/cpu/temperature', 51.5, { ack: true });
  await waitFor(async () => (await tab.textContent('#out')) === 'devices/pi-03/cpu/temperature: 51.5 °C', 'live value in the page', 5000);
  await publisher.clearRetained('devices/pi-02/cpu/temperature', { ack: true });
  assert.deepEqual(errors, []);
});
