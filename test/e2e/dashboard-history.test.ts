/**
 * Charts that open full (issue 22), in headless Chromium against the real broker: readings
 * published before the page was opened are in the broker's history; opening the reading's chart
 * shows every one of them (the count read from the page), the explorer's detail panel lists the
 * topic's last values, and the chart's CSV link downloads them (read with csv-parse).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse as parseCsv } from 'csv-parse/sync';
import { chromium, type Browser, type Page } from 'playwright-core';
import { connect, type Client } from 'topicast';
import { startBroker, type BrokerProcess } from '../helpers/broker.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CHROMIUM = '/usr/bin/chromium';
const DEVICE = 'e2e-hist';
const TOPIC = `devices/${DEVICE}/cpu/temperature`;
const EARLIER = 37;

const skipReason = existsSync(CHROMIUM) ? undefined : `${CHROMIUM} is not installed (apt-get install chromium)`;
if (skipReason && process.env.CI) throw new Error(`CI: ${skipReason}`);
if (!existsSync(`${ROOT}broker/dist/public/index.html`)) throw new Error('the dashboard is not built: run npm run build (or npm run build -w @topicast/broker)');

let broker: BrokerProcess | undefined;
let client: Client | undefined;
let browser: Browser | undefined;
let page: Page;
const consoleErrors: string[] = [];
after(async () => {
  await browser?.close();
  await client?.close();
  await broker?.stop();
});

test('a chart opened on a reading starts with the readings published before the page opened', { skip: skipReason }, async () => {
  broker = await startBroker({ args: ['--history-filters', 'devices/#', '--sys-interval-sec', '0'], mqttOff: true });
  client = await connect(broker.url);
  await client.publish(`devices/${DEVICE}/status`, 'online', { retain: true, ack: true });
  await client.publish(`devices/${DEVICE}/info`, { hostname: 'hist.local', sensors: [{ path: 'cpu/temperature', unit: '°C' }] }, { retain: true, ack: true });
  // Bare numbers, each one retained like an agent's: the page sees only the last one live. A chart
  // has one point per millisecond (a reading at the same instant replaces the previous one), so
  // each is published in a millisecond of its own.
  for (let i = 0; i < EARLIER; i++) {
    await client.publish(TOPIC, 40 + (i % 7) / 2, { retain: true, ack: true });
    await new Promise((r) => setTimeout(r, 2));
  }

  browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(m.text());
  });
  page.on('pageerror', (e) => consoleErrors.push(`pageerror: ${e.message}`));
  await page.goto(`${broker.httpUrl}/`);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: 10_000 });
  const button = page.locator(`article.device[data-device="${DEVICE}"] button.reading[data-topic="${TOPIC}"]`);
  await button.waitFor({ timeout: 10_000 });
  await button.click();
  const chart = `figure.chart[data-topic="${TOPIC}"]`;
  await page.waitForFunction((sel) => Number(document.querySelector(sel)?.getAttribute('data-points')) >= 2, chart, { timeout: 10_000 });
  assert.equal(Number(await page.locator(chart).getAttribute('data-points')), EARLIER, 'every earlier reading once: the retained one is not doubled');

  // A new reading extends it.
  await client.publish(TOPIC, 50, { retain: true, ack: true });
  await page.waitForFunction(([sel, n]) => Number(document.querySelector(sel as string)?.getAttribute('data-points')) === (n as number), [chart, EARLIER + 1] as const, { timeout: 5_000 });

  // The chart's CSV link: the stored readings, as a spreadsheet reads them.
  const href = await page.locator(`${chart} a.chart-export`).getAttribute('href');
  assert.ok(href);
  assert.match(href, /\/api\/history\/devices%2Fe2e-hist%2Fcpu%2Ftemperature\?format=csv&since=\d+$/);
  const rows = parseCsv(await (await fetch(href)).text(), { columns: true }) as { topic: string; value: string }[];
  assert.deepEqual(rows.map((r) => Number(r.value)), [...Array.from({ length: EARLIER }, (_, i) => 40 + (i % 7) / 2), 50]);
  assert.ok(rows.every((r) => r.topic === TOPIC));
});

test('the explorer\'s detail panel lists the topic\'s last values, newest first', { skip: skipReason }, async () => {
  const row = page.locator(`#topic-tree li[data-topic="${TOPIC}"] > .topic-row`);
  await page.locator('#topic-filter').fill('cpu/temperature');
  await row.waitFor({ timeout: 5_000 });
  await row.click();
  await page.waitForFunction(() => document.querySelectorAll('#detail-history li').length === 10, undefined, { timeout: 5_000 });
  const values = await page.locator('#detail-history li').evaluateAll((lis) => lis.map((li) => li.lastChild?.textContent ?? ''));
  const expected = [50, ...Array.from({ length: EARLIER }, (_, i) => 40 + (i % 7) / 2).reverse()].slice(0, 10).map(String);
  assert.deepEqual(values, expected);
  assert.match((await page.locator('#detail-export').getAttribute('href')) ?? '', /\/api\/history\/devices%2Fe2e-hist%2Fcpu%2Ftemperature\?format=csv/);
  assert.deepEqual(consoleErrors, []);
});
