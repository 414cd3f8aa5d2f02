/**
 * Resume in headless Chromium (issue 10): a page served by the broker subscribes with the browser
 * build and keeps its subscription's position in sessionStorage. The tab leaves the page while
 * Node publishes, then comes back: the new page subscribes with `resume` and gets exactly the
 * missed messages, replayed and in order, and `recovered: true`, then live ones. And a page that
 * stays open through a restart of a broker with `--data` (its network held down meanwhile, so
 * that it misses what is published after the restart) resumes the same way on its own.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Browser, Page } from 'playwright-core';
import { connect, type Client } from 'topicast';
import { freePort, startBroker, waitFor } from '../helpers/broker.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';

const browserDist = fileURLToPath(new URL('../../../sdk/dist/browser/', import.meta.url));

/** Logs every delivery and resume outcome to `window.topicastLog`; saves the position after each delivery. */
const PAGE = `<!doctype html>
<meta charset="utf-8">
<script type="module">
  import { connect } from './topicast.js';
  const log = [];
  window.topicastLog = log;
  try {
    const saved = JSON.parse(sessionStorage.getItem('position') ?? 'null');
    // The page's network, with a switch for the test: while down, connection attempts fail.
    const net = (window.topicastNet = { down: false });
    const native = (url, protocols, on) => {
      const ws = new WebSocket(net.down ? 'ws://127.0.0.1:9/ws' : url, protocols);
      ws.binaryType = 'arraybuffer';
      ws.onopen = () => on.open();
      ws.onmessage = (e) => on.message(new Uint8Array(e.data));
      ws.onerror = () => on.error(new Error('WebSocket error'));
      ws.onclose = (e) => on.close(e.code, e.reason);
      return { send: (d) => ws.send(d), close: (c, r) => ws.close(c, r), terminate: () => ws.close(), get bufferedAmount() { return ws.bufferedAmount; } };
    };
    const client = await connect('ws://' + location.host + '/ws', { transport: native, reconnect: { minDelayMs: 50, maxDelayMs: 200 } });
    client.on('state', (s) => log.push('state:' + s));
    let sub;
    const save = () => sessionStorage.setItem('position', JSON.stringify(sub?.position ?? null));
    sub = await client.subscribe('devices/+/temp', (v, m) => {
      log.push(m.topic + '=' + v + (m.replayed ? ' replayed' : '') + (m.retained ? ' retained' : ''));
      save();
    }, saved ? { resume: saved, retained: false } : { retained: false });
    save();
    if (saved) log.push('recovered:' + sub.recovered);
    sub.on('resumed', (o) => log.push('resumed:' + o.recovered + ':' + o.replayed));
    log.push('subscribed');
  } catch (err) {
    log.push('error:' + err.name + ':' + err.message);
  }
</script>`;

const skip = chromiumSkip();

let browser: Browser | undefined;
const clients: Client[] = [];
const dir = mkdtempSync(join(tmpdir(), 'topicast-resume-e2e-'));
after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await browser?.close();
  rmSync(dir, { recursive: true, force: true });
});

const logOf = async (tab: Page): Promise<string[]> => (await tab.evaluate('window.topicastLog ?? []')) as string[];

test('headless Chromium: a page that comes back resumes from its stored position and gets exactly what it missed', { skip }, async () => {
  copyFileSync(browserDist + 'topicast.js', join(dir, 'topicast.js'));
  writeFileSync(join(dir, 'resume.html'), PAGE);
  const broker = await startBroker({ args: ['--static', dir, '--history-filters', 'devices/#', '--sys-interval-sec', '0'], mqttOff: true });
  browser ??= await launchChromium();
  const node = await connect(broker.url);
  clients.push(node);
  const tab = await browser.newPage();
  const pageErrors: string[] = [];
  tab.on('pageerror', (e) => pageErrors.push(e.message));

  await tab.goto(`${broker.httpUrl}/resume.html`);
  await waitFor(async () => (await logOf(tab)).includes('subscribed'), 'first page subscribed', 10_000);
  await node.publish('devices/a/temp', 20, { ack: true });
  await waitFor(async () => (await logOf(tab)).includes('devices/a/temp=20'), 'live on the first page', 10_000);
  assert.deepEqual(await logOf(tab), ['subscribed', 'devices/a/temp=20']);

  // The tab goes elsewhere; messages are published meanwhile.
  await tab.goto('about:blank');
  await node.publish('devices/a/temp', 21, { ack: true });
  await node.publish('devices/b/temp', 30, { ack: true });
  await node.publish('devices/a/hum', 50, { ack: true });
  await node.publish('devices/a/temp', 22, { ack: true });

  await tab.goto(`${broker.httpUrl}/resume.html`);
  await waitFor(async () => (await logOf(tab)).includes('subscribed'), 'second page subscribed', 10_000);
  await node.publish('devices/b/temp', 31, { ack: true });
  await waitFor(async () => (await logOf(tab)).includes('devices/b/temp=31'), 'live on the second page', 10_000);
  const second = await logOf(tab);
  // When the page's `await subscribe` resumes relative to the replayed deliveries is the browser's scheduling.
  assert.deepEqual(second.filter((l) => l.startsWith('devices/')), ['devices/a/temp=21 replayed', 'devices/b/temp=30 replayed', 'devices/a/temp=22 replayed', 'devices/b/temp=31']);
  assert.deepEqual(second.filter((l) => !l.startsWith('devices/')), ['recovered:true', 'subscribed']);
  const position = JSON.parse((await tab.evaluate("sessionStorage.getItem('position')")) as string) as { epoch: string; offset: number };
  assert.equal(typeof position.epoch, 'string');
  assert.equal(position.offset, 6, 'six history messages so far; the last one was delivered');
  assert.deepEqual(pageErrors, []);
});

test('headless Chromium: an open page resumes by itself after a restart of a broker with --data', { skip }, async () => {
  const port = await freePort(); // fixed: the page reconnects to the same URL
  const data = mkdtempSync(join(tmpdir(), 'topicast-resume-data-'));
  after(() => rmSync(data, { recursive: true, force: true }));
  const args = ['--static', dir, '--history-filters', 'devices/#', '--sys-interval-sec', '0', '--data', data];
  copyFileSync(browserDist + 'topicast.js', join(dir, 'topicast.js'));
  writeFileSync(join(dir, 'resume.html'), PAGE);
  let broker = await startBroker({ args, mqttOff: true, port });
  browser ??= await launchChromium();
  const node = await connect(broker.url, { reconnect: { minDelayMs: 20, maxDelayMs: 100 } });
  clients.push(node);
  const tab = await browser.newPage();
  const pageErrors: string[] = [];
  tab.on('pageerror', (e) => pageErrors.push(e.message));
  await tab.goto(`${broker.httpUrl}/resume.html`);
  await waitFor(async () => (await logOf(tab)).includes('subscribed'), 'page subscribed', 10_000);
  await node.publish('devices/a/temp', 1, { ack: true });
  await waitFor(async () => (await logOf(tab)).includes('devices/a/temp=1'), 'live before the restart', 10_000);

  await tab.evaluate('window.topicastNet.down = true');
  await broker.stop();
  await waitFor(async () => (await logOf(tab)).includes('state:reconnecting'), 'the page noticed', 10_000);
  broker = await startBroker({ args, mqttOff: true, port });
  await waitFor(() => node.state === 'open', 'Node is back', 10_000);
  await node.publish('devices/a/temp', 2, { ack: true });
  await node.publish('devices/b/temp', 3, { ack: true });
  await tab.evaluate('window.topicastNet.down = false');
  await waitFor(async () => (await logOf(tab)).some((l) => l.startsWith('resumed:')), 'the page resumed', 10_000);
  await node.publish('devices/a/temp', 4, { ack: true });
  await waitFor(async () => (await logOf(tab)).includes('devices/a/temp=4'), 'live after the restart', 10_000);
  const log = await logOf(tab);
  assert.deepEqual(log.filter((l) => l.startsWith('devices/') || l.startsWith('resumed:')), [
    'devices/a/temp=1',
    'resumed:true:2',
    'devices/a/temp=2 replayed',
    'devices/b/temp=3 replayed',
    'devices/a/temp=4',
  ]);
  assert.deepEqual(log.filter((l) => l.startsWith('state:')), ['state:reconnecting', 'state:open']);
  assert.deepEqual(pageErrors, []);
  await broker.stop();
});
