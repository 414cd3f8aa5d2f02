/**
 * File helpers shared by the readers. Every path is joined under the reader's root, so a fixture
 * tree can stand for `/`. Reads are synchronous: /proc and /sys files are generated in memory by
 * the kernel and are at most a few KiB. A file that is missing or unreadable (hwmon attributes
 * may fail with EIO or ENODATA while a sensor sleeps) is `undefined`, never an exception.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export function under(root: string, path: string): string {
  return join(root, path);
}

export function readText(root: string, path: string): string | undefined {
  try {
    return readFileSync(join(root, path), 'latin1');
  } catch {
    return undefined;
  }
}

/** The file's first line trimmed, or undefined if missing or empty. */
export function readLine(root: string, path: string): string | undefined {
  const text = readText(root, path);
  if (text === undefined) return undefined;
  const line = text.split('\n', 1)[0]!.trim();
  return line === '' ? undefined : line;
}

/** The file as a finite number, or undefined. */
export function readNumber(root: string, path: string): number | undefined {
  const line = readLine(root, path);
  if (line === undefined) return undefined;
  const n = Number(line);
  return Number.isFinite(n) ? n : undefined;
}

/** Directory entries, sorted naturally (`hwmon2` before `hwmon10`); empty if the directory is missing. */
export function list(root: string, path: string): string[] {
  try {
    return readdirSync(join(root, path)).sort(naturalCompare);
  } catch {
    return [];
  }
}

export function naturalCompare(a: string, b: string): number {
  return a.localeCompare(b, 'en', { numeric: true });
}

/**
 * A label fit for one topic level: lower case, `[a-z0-9_.-]` only, runs of anything else as one `_`.
 * Keeps topics free of wildcards and separators whatever a driver calls its sensor.
 * @example topicLevel('Package id 0') === 'package_id_0'
 */
export function topicLevel(label: string): string {
  const s = label
    .toLowerCase()
    .replace(/[^a-z0-9_.-]+/g, '_')
    .replace(/^_+|_+$/g, '');
  return s === '' ? '_' : s;
}

/** Rounds to `digits` decimals, so readings do not carry float noise such as 48.199999999. */
export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
