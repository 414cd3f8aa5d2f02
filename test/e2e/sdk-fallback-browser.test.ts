/**
 * The SDK's fallback to HTTP streaming in headless Chromium (issue 18, broker PROTOCOL.md §10.5):
 * the page reaches the broker through a proxy in this test that forwards HTTP (streamed
 * responses included) but refuses the WebSocket upgrade, as some corporate proxies do. The
 * browser build connects anyway, over HTTP streaming (`client.transport === 'sse'`), and
 * publishes, subscribes and unsubscribes with the same API; deliveries from a Node publisher on
 * the native protocol arrive. When the proxy starts passing upgrades, the client's WebSocket
 * probe succeeds and it moves back to WebSocket by itself, its subscription intact.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { connect } from 'topicast';
import { startBroker, waitFor } from '../helpers/broker.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';
import { refusingProxy } from '../helpers/refusing-proxy.js';

const browserDist = fileURLToPath(new URL('../../../sdk/dist/browser/', import.meta.url));
const skip = chromiumSkip();

const PAGE = `<!doctype html>
<meta charset="utf-8">
<script type="module">
  import { connect } from './topicast.js';
  const log = [];
  window.t = { log };
  try {
    const client = await connect('ws://' + location.host + '/ws', { webSocketRetryMs: 300, reconnect: { minDelayMs: 50, maxDelayMs: 200 } });
    window.t.client = client;
    client.on('state', (s) => log.push('state:' + s + ':' + client.transport));
    log.push('open:' + client.transport);
    window.t.room = await client.subscribe('room/#', (v, m) => log.push(m.topic + '=' + JSON.stringify(v) + (m.retained ? ' retained' : '')));
    window.t.other = await client.subscribe('other/#', (v, m) => log.push(m.topic + '=' + JSON.stringify(v)));
    log.push('subscribed');
  } catch (err) {
    log.push('error:' + err.name + ':' + err.message);
  }
</script>`;

let browser: Browser | undefined;
const dir = mkdtempSync(join(tmpdir(), 'topicast-fallback-e2e-'));
after(async () => {
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('behind a proxy that refuses the upgrade, the SDK falls back to HTTP streaming with the same API, and moves back to WebSocket once it can', { skip }, async () => {
  copyFileSync(join(browserDist, 'topicast.js'), join(dir, 'topicast.js'));
  writeFileSync(join(dir, 'fallback.html'), PAGE);
  const broker = await startBroker({ args: ['--static', dir, '--sys-interval-sec', '0'], mqttOff: true });
  const proxy = await refusingProxy(broker.port);
  after(() => {
    proxy.server.closeAllConnections();
    proxy.server.close();
  });
  const node = await connect(broker.url);
  after(() => node.close());
  await node.publish('room/status', 'open', { retain: true, ack: true });

  browser ??= await launchChromium();
  const tab = await browser.newPage();
  const pageErrors: string[] = [];
  tab.on('pageerror', (e) => pageErrors.push(e.message));
  const log = () => tab.evaluate('window.t.log') as Promise<string[]>;
  await tab.goto(`http://127.0.0.1:${proxy.port}/fallback.html`);
  await waitFor(async () => (await log()).some((l) => l === 'subscribed' || l.startsWith('error:')), 'the page subscribed', 15_000);
  assert.deepEqual((await log()).slice(0, 3), ['open:sse', 'room/status="open" retained', 'subscribed']);

  // Deliveries from a native publisher, and the page's own publishes over POST.
  await node.publish('room/temp', 21.5, { ack: true });
  await tab.evaluate("window.t.client.publish('room/note', { from: 'page' }, { ack: true })");
  await waitFor(async () => (await log()).includes('room/note={"from":"page"}'), 'both live messages', 10_000);
  assert.ok((await log()).includes('room/temp=21.5'));
  const seen: unknown[] = [];
  await (await node.subscribe('room/#', (v) => seen.push(v), { retained: false })).snapshot;
  await tab.evaluate("window.t.client.publish('room/from-page', 7, { ack: true })");
  await waitFor(() => seen.includes(7), 'the page\'s publish reaches a native subscriber');

  // Unsubscribe over POST: nothing more from room/#; other/# still arrives (and shows the order).
  await tab.evaluate('window.t.room.unsubscribe()');
  await node.publish('room/temp', 22, { ack: true });
  await node.publish('other/ping', 1, { ack: true });
  await waitFor(async () => (await log()).includes('other/ping=1'), 'the other subscription', 10_000);
  assert.ok(!(await log()).includes('room/temp=22'), 'room/# was unsubscribed');
  assert.equal(await tab.evaluate('window.t.client.transport'), 'sse');

  // The proxy now passes upgrades: the client's probe finds WebSocket and moves over.
  proxy.allowUpgrade = true;
  await waitFor(async () => (await tab.evaluate('window.t.client.transport')) === 'websocket' && (await tab.evaluate('window.t.client.state')) === 'open', 'back on WebSocket', 15_000);
  await node.publish('other/ping', 2, { ack: true });
  await waitFor(async () => (await log()).includes('other/ping=2'), 'live over WebSocket', 10_000);
  assert.ok((await log()).includes('state:open:websocket'), (await log()).join('\n'));
  assert.deepEqual(pageErrors, []);
});
