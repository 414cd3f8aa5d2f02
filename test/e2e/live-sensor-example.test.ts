/**
 * The README's "Your own page with live data": its command, run as written from the repository's
 * root, serves examples/live-sensor at /, the SDK at /topicast.js (ETag, 304) and /topicast-core.js,
 * and the dashboard at /topicast/. In headless Chromium the plain-HTML example shows the in-process
 * agent's CPU usage, and a reading published from Node replaces the value on the page live.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { connect } from 'topicast';
import { startBroker } from '../helpers/broker.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const readme = readFileSync(new URL('README.md', `file://${root}`), 'utf8');
const section = readme.slice(readme.indexOf('## Your own page with live data'), readme.indexOf('\n## ', readme.indexOf('## Your own page with live data') + 3));
const command = /```sh\n(node broker\/dist\/main\.js [^\n]+)\n```/.exec(section)?.[1];
const skip = chromiumSkip();

let browser: Browser | undefined;
after(async () => {
  await browser?.close();
});

test('README: the live-sensor example page, the SDK bundles and the dashboard under /topicast/', { skip }, async () => {
  assert.ok(command, 'the README shows the command');
  const args = command.split(' ').slice(2); // after `node broker/dist/main.js`
  const broker = await startBroker({ args, cwd: root, env: { TOPICAST_AGENT_ID: 'example-host' } });

  const page = await fetch(`${broker.httpUrl}/`);
  assert.equal(page.status, 200);
  assert.match(await page.text(), /<title>Live sensor · Topicast<\/title>/, '--static serves the example at /');
  const moved = await fetch(`${broker.httpUrl}/topicast`, { redirect: 'manual' });
  assert.equal(moved.status, 301);
  assert.equal(moved.headers.get('location'), '/topicast/');
  await moved.arrayBuffer();
  const dashboard = await fetch(`${broker.httpUrl}/topicast/`);
  const html = await dashboard.text();
  assert.match(html, /<title>Topicast<\/title>/, 'the dashboard stays under /topicast/');
  const appJs = /src="(app\.js\?v=[0-9a-f]+)"/.exec(html)?.[1];
  assert.equal((await fetch(`${broker.httpUrl}/topicast/${appJs}`)).status, 200, 'its assets resolve relative to /topicast/');

  for (const [path, file] of [['/topicast.js', 'topicast.js'], ['/topicast-core.js', 'topicast-core.js']] as const) {
    const r = await fetch(`${broker.httpUrl}${path}`);
    assert.equal(r.status, 200, path);
    assert.match(r.headers.get('content-type') ?? '', /^text\/javascript/);
    assert.equal(r.headers.get('cache-control'), 'no-cache');
    const etag = r.headers.get('etag');
    assert.match(etag ?? '', /^"[A-Za-z0-9_-]{22}"$/);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), readFileSync(`${root}sdk/dist/browser/${file}`), `${path} is the SDK's build`);
    const again = await fetch(`${broker.httpUrl}${path}`, { headers: { 'If-None-Match': etag! } });
    assert.equal(again.status, 304, `${path} revalidates`);
    assert.equal((await again.arrayBuffer()).byteLength, 0);
    const head = await fetch(`${broker.httpUrl}${path}`, { method: 'HEAD' });
    assert.equal(head.status, 200);
  }

  browser = await launchChromium();
  const live = await browser.newPage();
  await live.goto(`${broker.httpUrl}/`);
  await live.locator('#topic', { hasText: 'devices/example-host/cpu/usage' }).waitFor({ timeout: 15_000 });
  assert.match(await live.locator('#value').textContent() ?? '', /^\d+\.\d$/, 'the agent inside the broker feeds the page');
  assert.equal(await live.locator('#unit').textContent(), '%');

  const mine = await browser.newPage();
  await mine.goto(`${broker.httpUrl}/?topic=devices/garden/soil`);
  await mine.locator('body[data-state="open"]').waitFor({ timeout: 10_000 });
  const client = await connect(broker.url);
  await client.publish('devices/garden/soil', { value: 31.25, unit: '%', ts: Date.now() }, { retain: true, ack: true });
  await mine.locator('#value', { hasText: '31.3' }).waitFor({ timeout: 10_000 });
  await client.publish('devices/garden/soil', 40, { ack: true });
  await mine.locator('#value', { hasText: '40.0' }).waitFor({ timeout: 10_000 });
  assert.equal(await mine.locator('#unit').textContent(), '', 'a bare number has no unit');
  await client.close();
  await broker.stop();
});
