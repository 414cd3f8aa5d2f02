/**
 * Headless Chromium for browser tests (playwright-core driving Debian's chromium): where it is,
 * whether a test may skip (only outside CI: in CI a missing browser is a failure, .ci/run
 * installs it), and how it is launched.
 */
import { existsSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';

/** The `skip` option of a browser test: a reason when Chromium is missing locally; throws in CI. */
export function chromiumSkip(): string | false {
  if (existsSync(CHROMIUM)) return false;
  if (process.env.CI) throw new Error(`${CHROMIUM} is required in CI`);
  return `${CHROMIUM} not installed (apt-get install chromium)`;
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
}
