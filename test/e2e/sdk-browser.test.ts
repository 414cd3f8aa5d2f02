/**
 * The browser build in headless Chromium: the broker serves (--static) a page that
 * imports dist/browser/topicast.js (and the core build), subscribes, and receives a
 * message published from Node; the page's own publish reaches a Node subscriber.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser } from 'playwright-core';
import { connect, type Client } from 'topicast';
import { startBroker, waitFor } from '../helpers/broker.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';

const browserDist = fileURLToPath(new URL('../../../sdk/dist/browser/', import.meta.url));

const page = (build: string, codec: string): string => `<!doctype html>
<meta charset="utf-8">
<pre id="out"></pre>
<script type="module">
  import { connect } from './${build}';
  const out = document.getElementById('out');
  const log = [];
  window.topicastLog = log;
  try {
    const client = await connect('ws://' + location.host + '/ws', { ${codec} });
    client.on('state', (s) => log.push('state:' + s));
    const sub = client.subscribe('e2e/to-browser/#');
    await sub;
    log.push('subscribed');
    await client.publish('e2e/from-browser', { hello: '${build}' }, { ack: true });
    for await (const m of sub) {
      log.push(m.topic + '=' + JSON.stringify(m.value));
      out.textContent = m.topic;
      if (m.topic.endsWith('/last')) break;
    }
    await client.close();
    log.push('closed:' + client.state);
  } catch (err) {
    log.push('error:' + err.name + ':' + err.message);
  }
</script>`;

const skip = chromiumSkip();

let browser: Browser | undefined;
const clients: Client[] = [];
const dir = mkdtempSync(join(tmpdir(), 'topicast-e2e-'));
after(async () => {
  // A client left open would keep reconnecting (and this process alive) once the broker stops.
  await Promise.all(clients.map((c) => c.close()));
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('headless Chromium: the browser builds subscribe, receive from Node and publish to Node', { skip }, async () => {
  for (const file of ['topicast.js', 'topicast-core.js']) copyFileSync(browserDist + file, join(dir, file));
  writeFileSync(join(dir, 'full.html'), page('topicast.js', ''));
  writeFileSync(join(dir, 'core.html'), page('topicast-core.js', "codec: 'json'"));
  const broker = await startBroker({ args: ['--static', dir] });
  browser = await launchChromium();
  for (const [html, codec] of [['full.html', 'msgpack'], ['core.html', 'json']] as const) {
    const node = await connect(broker.url, { codec });
    clients.push(node);
    const fromBrowser: unknown[] = [];
    await node.subscribe('e2e/from-browser', (v) => fromBrowser.push(v));
    const tab = await browser.newPage();
    const pageErrors: string[] = [];
    tab.on('pageerror', (e) => pageErrors.push(e.message));
    await tab.goto(`${broker.httpUrl}/${html}`);
    const log = async (): Promise<string[]> => (await tab.evaluate('window.topicastLog ?? []')) as string[];
    await waitFor(async () => (await log()).includes('subscribed'), `${html} subscribed`, 10_000);
    await node.publish('e2e/to-browser/a', { n: 1 }, { ack: true });
    await node.publish('e2e/to-browser/last', [2, 'x'], { ack: true });
    await waitFor(async () => (await log()).some((l) => l.startsWith('closed:')), `${html} done`, 10_000);
    assert.deepEqual(await log(), ['subscribed', 'e2e/to-browser/a={"n":1}', 'e2e/to-browser/last=[2,"x"]', 'state:closed', 'closed:closed'], html);
    await waitFor(() => fromBrowser.length === 1, 'publish from the browser');
    assert.deepEqual(fromBrowser, [{ hello: html === 'full.html' ? 'topicast.js' : 'topicast-core.js' }]);
    assert.deepEqual(pageErrors, []);
    await tab.close();
    await node.close();
  }
  await broker.stop();
});
