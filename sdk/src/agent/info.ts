/**
 * The static part of `devices/<id>/info`: hostname, operating system, architecture, agent version.
 * The agent adds its id, transport, interval and the sensor list with units.
 */
import { readFileSync } from 'node:fs';
import * as os from 'node:os';
import type { DeviceInfo } from './agent.js';
import { readText } from './readers/fs.js';

/** The SDK package's version (this file ships in sdk/dist/agent/). */
export function agentVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** PRETTY_NAME from os-release, e.g. `Debian GNU/Linux 12 (bookworm)` or `Raspbian GNU/Linux 11 (bullseye)`. */
export function distribution(root = '/'): string | undefined {
  const text = readText(root, 'etc/os-release') ?? readText(root, 'usr/lib/os-release');
  const m = text === undefined ? null : /^PRETTY_NAME=("?)(.*)\1$/m.exec(text);
  return m ? m[2] : undefined;
}

/** @example deviceInfo() // { hostname: 'pi-01', os: 'Linux 6.1.0-rpi7 (Debian GNU/Linux 12 (bookworm))', arch: 'arm64', agentVersion: '0.1.0' } */
export function deviceInfo(root = '/'): DeviceInfo {
  const distro = distribution(root);
  return {
    hostname: os.hostname(),
    os: `${os.type()} ${os.release()}${distro ? ` (${distro})` : ''}`,
    arch: process.arch,
    agentVersion: agentVersion(),
  };
}
