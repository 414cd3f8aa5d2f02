/**
 * Headless Chromium against a broker with authentication: the SDK's browser build sends
 * its token as a subprotocol entry (browsers cannot set headers on a WebSocket) and gets
 * its permissions; the Origin allowlist refuses a page from another site and lets a
 * listed one and the broker's own pages in.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { chromium, type Browser } from 'playwright-core';
import { startBroker, waitFor } from '../helpers/broker.js';

const CHROMIUM = '/usr/bin/chromium';
const missing = !existsSync(CHROMIUM);
if (missing && process.env.CI) throw new Error(`${CHROMIUM} is required in CI`);
const browserBuild = fileURLToPath(new URL('../../../sdk/dist/browser/topicast.js', import.meta.url));
const TOKEN = 'browser-token-0123456789abcdef';

const page = (wsUrl: string): string => `<!doctype html>
<meta charset="utf-8">
<script type="module">
  import { connect } from './topicast.js';
  const log = (window.topicastLog = []);
  try {
    const client = await connect(${JSON.stringify(wsUrl)}, { token: ${JSON.stringify(TOKEN)}, reconnect: false });
    log.push('open');
    await client.subscribe('browser/in/#', () => {});
    log.push('subscribed');
    try { await client.subscribe('secret/#', () => {}); log.push('secret subscribed'); } catch (e) { log.push('subscribe refused:' + e.code); }
    await client.publish('browser/out/x', 1, { ack: true });
    log.push('published');
    try { await client.publish('other/x', 1, { ack: true }); log.push('other published'); } catch (e) { log.push('publish refused:' + e.code); }
    await client.close();
  } catch (err) {
    log.push('error:' + (err.closeCode ?? err.name));
  }
  log.push('done');
</script>`;

const dir = mkdtempSync(join(tmpdir(), 'topicast-sec-browser-'));
let browser: Browser | undefined;
const servers: Server[] = [];
after(async () => {
  await browser?.close();
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A static site on its own origin (another port) serving the page (known later: it needs the broker's port) and the SDK build. */
async function site(html: () => string): Promise<string> {
  const js = readFileSync(browserBuild);
  const server = createServer((req, res) => {
    if (req.url === '/topicast.js') res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(js);
    else res.writeHead(200, { 'Content-Type': 'text/html' }).end(html());
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

test('Chromium: token as a subprotocol entry, permissions enforced, origins checked', { skip: missing ? `${CHROMIUM} not installed` : false, timeout: 60_000 }, async () => {
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ tokens: [{ token: TOKEN, sub: 'web', publish: ['browser/out/#'], subscribe: ['browser/in/#'] }] }));
  let html = '';
  const listed = await site(() => html);
  const other = await site(() => html);
  const broker = await startBroker({ args: ['--auth-token-file', join(dir, 'tokens.json'), '--allowed-origins', listed, '--static', dir] });
  html = page(broker.url);
  copyFileSync(browserBuild, join(dir, 'topicast.js'));
  writeFileSync(join(dir, 'index.html'), html);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  const run = async (url: string): Promise<string[]> => {
    const tab = await browser!.newPage();
    await tab.goto(url);
    const log = async (): Promise<string[]> => (await tab.evaluate('window.topicastLog ?? []')) as string[];
    await waitFor(async () => (await log()).includes('done'), `page ${url}`, 15_000);
    const result = await log();
    await tab.close();
    return result;
  };
  const expected = ['open', 'subscribed', 'subscribe refused:7', 'published', 'publish refused:7', 'done'];
  assert.deepEqual(await run(`${broker.httpUrl}/index.html`), expected, 'the broker\'s own origin');
  assert.deepEqual(await run(`${listed}/`), expected, 'a listed origin');
  const refused = await run(`${other}/`);
  assert.equal(refused.length, 2, refused.join());
  assert.match(refused[0]!, /^error:/, 'another site cannot open the socket');
  const metrics = await (await fetch(`${broker.httpUrl}/metrics`)).text();
  assert.match(metrics, /topicast_origin_refused_total [1-9]/);
  assert.ok(!broker.logs.join('\n').includes(TOKEN));
});
