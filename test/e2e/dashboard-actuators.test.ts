/**
 * Actuators on the dashboard's device card, in headless Chromium against the real broker and the
 * real `topicast-agent` running shell-script actuators: an operator's switch, slider and button
 * show pending, then confirmed (the state the program reported, which the program also wrote to a
 * file) or failed with the program's error; a viewer's click is refused by the broker and the card
 * says so, leaving the state as the device reports it.
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { startBroker } from '../helpers/broker.js';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';
import { spawnAgent } from '../unit/sdk/agent/spawn-agent.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-dash-act-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const TOKENS = {
  tokens: [
    { token: 'agent-secret', sub: 'pi-01', publish: ['devices/{sub}/#', 'replies/#'], subscribe: ['devices/{sub}/set/#'] },
    { token: 'operator-secret', sub: 'operator', publish: ['devices/+/set/#'], subscribe: ['#', '$SYS/#', 'replies/#'] },
    { token: 'viewer-secret', sub: 'viewer', subscribe: ['#', '$SYS/#'] },
  ],
};

async function open(browser: Browser, url: string, token: string): Promise<Page> {
  const page = await browser.newPage();
  await page.addInitScript((t) => sessionStorage.setItem('topicast.token', t), token);
  await page.goto(url);
  return page;
}

test('switch, slider and button from the device card: pending, confirmed, failed; a viewer is refused', { skip: chromiumSkip() }, async () => {
  const state = join(dir, 'led');
  const set = join(dir, 'set.sh');
  writeFileSync(set, `#!/bin/sh\nprintf '%s' "$TOPICAST_VALUE" > '${dir}/'"$TOPICAST_ACTUATOR"\n[ "$TOPICAST_ACTUATOR" = reboot ] && { echo 'no reboot today' >&2; exit 4; }\necho "$TOPICAST_VALUE"\n`);
  chmodSync(set, 0o755);
  writeFileSync(
    join(dir, 'agent.json'),
    JSON.stringify({
      actuators: [
        { name: 'led', type: 'boolean', command: [set] },
        { name: 'fan', type: 'number', min: 0, max: 100, step: 5, unit: '%', command: [set] },
        { name: 'reboot', type: 'button', command: [set] },
        // Answers only once the test lets it: the card shows pending meanwhile (no timing involved).
        { name: 'calibrate', type: 'button', command: ['sh', '-c', `while [ ! -e '${dir}/release' ]; do sleep 0.05; done; echo done`] },
      ],
    }),
  );
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify(TOKENS));
  const broker = await startBroker({ args: ['--auth-token-file', join(dir, 'tokens.json')] });
  const agent = spawnAgent(['--url', broker.url, '--id', 'pi-01', '--token', 'agent-secret', '--readers', 'none', '--config', join(dir, 'agent.json')]);
  const browser = await launchChromium();
  try {
    const page = await open(browser, broker.httpUrl, 'operator-secret');
    const card = page.locator('[data-device="pi-01"]');
    const led = card.locator('[data-actuator="led"]');
    const sw = led.locator('[role="switch"]');
    await sw.waitFor({ timeout: 20_000 });
    assert.equal(await sw.getAttribute('aria-checked'), 'false');

    await sw.click();
    await led.locator('.actuator-outcome[data-outcome="confirmed"]').waitFor();
    assert.equal(await sw.getAttribute('aria-checked'), 'true');
    assert.equal(await led.locator('.actuator-state').textContent(), 'on');
    assert.equal(readFileSync(state, 'utf8'), 'true', 'the program ran with the value');

    const fan = card.locator('[data-actuator="fan"]');
    await fan.locator('input[type="range"]').evaluate((input: HTMLInputElement) => {
      input.value = '35';
      input.dispatchEvent(new Event('change', { bubbles: true }));
    });
    await fan.locator('.actuator-outcome[data-outcome="confirmed"]').waitFor();
    assert.equal(await fan.locator('.actuator-state').textContent(), '35 %');
    assert.equal(readFileSync(join(dir, 'fan'), 'utf8'), '35');

    const reboot = card.locator('[data-actuator="reboot"]');
    await reboot.locator('button').click();
    await reboot.locator('.actuator-outcome[data-outcome="failed"]').waitFor();
    assert.equal(await reboot.locator('.actuator-outcome').textContent(), 'failed: exited with code 4: no reboot today');

    const calibrate = card.locator('[data-actuator="calibrate"]');
    await calibrate.locator('button').click();
    await calibrate.locator('.actuator-outcome[data-outcome="pending"]').waitFor();
    assert.equal(await calibrate.locator('.actuator-outcome').textContent(), 'sending…');
    writeFileSync(join(dir, 'release'), '');
    await calibrate.locator('.actuator-outcome[data-outcome="confirmed"]').waitFor();

    // The command topics are not readings on the card.
    assert.equal(await card.locator('.reading[data-topic^="devices/pi-01/set/"]').count(), 0);

    // A viewer sees the state, and its click is refused by the broker.
    const viewer = await open(browser, broker.httpUrl, 'viewer-secret');
    const vled = viewer.locator('[data-device="pi-01"] [data-actuator="led"]');
    await vled.locator('.actuator-state', { hasText: 'on' }).waitFor({ timeout: 20_000 });
    await vled.locator('[role="switch"]').click();
    await vled.locator('.actuator-outcome[data-outcome="failed"]').waitFor();
    assert.equal(await vled.locator('.actuator-outcome').textContent(), 'failed: not authorized to publish to "devices/pi-01/set/led"');
    assert.equal(await vled.locator('[role="switch"]').getAttribute('aria-checked'), 'true', 'the state stays as the device reports it');
    assert.equal(readFileSync(state, 'utf8'), 'true', 'the program did not run for the viewer');

    // The operator's page followed nothing new; a second click switches off.
    await sw.click();
    await led.locator('.actuator-state', { hasText: 'off' }).waitFor();
    assert.equal(readFileSync(state, 'utf8'), 'false');
  } finally {
    await browser.close();
    agent.kill('SIGTERM');
    await agent.exited;
    await broker.stop();
  }
});
