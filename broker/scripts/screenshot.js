#!/usr/bin/env node
// Produces docs/dashboard.png: the dashboard with live data, for the README.
// Starts the built broker on an ephemeral port, the agent on this machine (when
// sdk/dist/agent/cli.js is built), and three simulated devices plus a few other
// topics published with the SDK; opens headless Chromium, lets the charts fill
// for a while, opens three charts, selects a topic and takes the picture.
// Usage: npm run build && node broker/scripts/screenshot.js [--out FILE] [--dark] [--seconds N]
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { connect } from 'topicast';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const argv = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = argv.indexOf(name);
  return i >= 0 && argv[i + 1] ? argv[i + 1] : fallback;
};
const OUT = opt('--out', join(ROOT, 'docs', 'dashboard.png'));
const DARK = argv.includes('--dark');
const SECONDS = Number(opt('--seconds', '24')); // enough points for the charts to show a shape
const BROKER = join(ROOT, 'broker', 'dist', 'main.js');
const AGENT = join(ROOT, 'sdk', 'dist', 'agent', 'cli.js');

for (const f of [BROKER, join(ROOT, 'broker', 'dist', 'public', 'app.js')]) {
  if (!existsSync(f)) throw new Error(`${f} is missing: run npm run build first`);
}

const children = [];
const timers = [];
let browser;
let client;

function startBroker() {
  const proc = spawn(process.execPath, [BROKER, '--host', '127.0.0.1', '--port', '0', '--mqtt-port', '0', '--sys-interval-sec', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(proc);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('broker did not start within 10 s')), 10_000);
    let buf = '';
    proc.stdout.setEncoding('utf8');
    proc.stderr.resume();
    proc.stdout.on('data', (chunk) => {
      buf += chunk;
      for (let i; (i = buf.indexOf('\n')) >= 0; buf = buf.slice(i + 1)) {
        const line = buf.slice(0, i);
        if (!line.includes('"listening"')) continue;
        clearTimeout(timer);
        resolve(JSON.parse(line).port);
      }
    });
    proc.on('exit', (code) => reject(new Error(`broker exited (code ${code})`)));
  });
}

/** Three devices by the convention, with readings that move like real ones, and a few other topics. */
async function simulate(c, httpUrl) {
  // Raw bytes through the HTTP API, as a curl-only device would send them: shown as hex.
  const jpegHead = new Uint8Array([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x48]);
  const res = await fetch(`${httpUrl}/api/publish/cam/door/snapshot?retain=1`, { method: 'POST', body: jpegHead });
  if (!res.ok) throw new Error(`HTTP publish failed: ${res.status}`);
  const info = (hostname, model, os, arch, sensors) => ({ hostname, model, os, arch, agentVersion: '0.1.0', sensors });
  await c.publish('devices/greenhouse-01/status', 'online', { retain: true });
  await c.publish('devices/greenhouse-01/info', info('greenhouse-01', 'Raspberry Pi 4 Model B', 'Debian 12 (bookworm)', 'arm64', [
    { path: 'air/temperature', unit: '°C' }, { path: 'air/humidity', unit: '%' }, { path: 'soil/moisture', unit: '%' }, { path: 'light', unit: 'lx' },
  ]), { retain: true });
  await c.publish('devices/pi-kitchen/status', 'online', { retain: true });
  await c.publish('devices/pi-kitchen/info', info('pi-kitchen', 'Raspberry Pi Zero 2 W', 'Raspberry Pi OS 12', 'arm64', []), { retain: true });
  await c.publish('devices/gateway-02/status', 'offline', { retain: true });
  await c.publish('devices/gateway-02/info', info('gateway-02', 'x86 mini PC', 'Ubuntu 24.04', 'x64', []), { retain: true });
  await c.publish('devices/gateway-02/cpu/usage', { value: 3.5, unit: '%', ts: Date.now() - 42 * 60_000 }, { retain: true });
  await c.publish('devices/gateway-02/uptime', { value: 1_209_600, unit: 's', ts: Date.now() - 42 * 60_000 }, { retain: true });
  await c.publish('home/livingroom/lamp', { on: true, brightness: 70 }, { retain: true });
  await c.publish('alerts/last', 'soil moisture below 30% in bed 2', { retain: true });
  let i = 0;
  const r = (x) => Math.round(x * 100) / 100;
  const tick = () => {
    i++;
    const ts = Date.now();
    const wobble = (period, amp) => amp * Math.sin((i / period) * Math.PI * 2);
    const noise = (amp) => (Math.random() - 0.5) * amp;
    const send = (topic, value) => c.publish(topic, value, { retain: true }).catch(() => {});
    send('devices/greenhouse-01/air/temperature', { value: r(24 + wobble(60, 2.5) + noise(0.3)), unit: '°C', ts });
    send('devices/greenhouse-01/air/humidity', { value: r(62 - wobble(60, 6) + noise(0.8)), unit: '%', ts });
    send('devices/greenhouse-01/soil/moisture', { value: r(31 + wobble(200, 1)), unit: '%', ts });
    send('devices/greenhouse-01/light', { value: Math.round(8200 + wobble(45, 900) + noise(150)), unit: 'lx', ts });
    send('devices/pi-kitchen/cpu/usage', { value: r(Math.max(2, 18 + wobble(25, 10) + noise(14))), unit: '%', ts });
    send('devices/pi-kitchen/cpu/temperature', { value: r(51 + wobble(80, 3) + noise(0.6)), unit: '°C', ts });
    send('devices/pi-kitchen/memory/used', { value: Math.round(312e6 + wobble(90, 14e6)), unit: 'B', ts });
    send('devices/pi-kitchen/net/wlan0/rx', { value: Math.round(48_000 + wobble(30, 20_000) + noise(9000)), unit: 'B/s', ts });
  };
  tick();
  timers.push(setInterval(tick, 250));
}

async function cleanup() {
  for (const t of timers) clearInterval(t);
  await browser?.close().catch(() => {});
  await client?.close().catch(() => {});
  for (const p of children) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
}

try {
  const port = await startBroker();
  const url = `ws://127.0.0.1:${port}/ws`;
  client = await connect(url);
  await simulate(client, `http://127.0.0.1:${port}`);
  if (existsSync(AGENT)) {
    const agent = spawn(process.execPath, [AGENT, '--url', url, '--id', 'this-machine', '--interval', '1', '--readers', 'cpu,load,memory,uptime'], { stdio: 'ignore' });
    children.push(agent);
  }
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  const page = await browser.newPage({ viewport: { width: 1440, height: 900 }, colorScheme: DARK ? 'dark' : 'light', deviceScaleFactor: 1 });
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`http://127.0.0.1:${port}/`);
  await page.locator('#conn[data-state="open"]').waitFor({ timeout: 10_000 });
  for (const topic of ['devices/greenhouse-01/air/temperature', 'devices/pi-kitchen/cpu/usage', 'devices/greenhouse-01/air/humidity']) {
    await page.locator(`button.reading[data-topic="${topic}"]`).click();
  }
  await page.locator('#topic-tree li[data-topic="devices/greenhouse-01/info"] > .topic-row').click();
  await page.locator('#publish-topic').fill('home/livingroom/lamp');
  await page.locator('#publish-value').fill('{"on": false}');
  await page.waitForTimeout(SECONDS * 1000);
  await page.evaluate(() => {
    (document.activeElement instanceof HTMLElement ? document.activeElement : document.body).blur();
    window.scrollTo(0, 0);
  });
  // Grow the viewport to the page instead of fullPage, so the sticky header stays at the top.
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.setViewportSize({ width: 1440, height: Math.min(height, 2400) });
  await page.waitForTimeout(500);
  mkdirSync(dirname(OUT), { recursive: true });
  await page.screenshot({ path: OUT });
  if (errors.length) throw new Error(`console errors on the page:\n${errors.join('\n')}`);
  console.log(`screenshot: ${OUT}`);
} finally {
  await cleanup();
}
