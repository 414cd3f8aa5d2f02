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

/**
 * Runs of digits compare as numbers, everything else by UTF-16 code unit. Hand-written rather than
 * `localeCompare(b, 'en', { numeric: true })`: ICU's collator touches about 3 MiB of Node's ICU data,
 * resident for the life of the process, which a small board running the agent cannot spare (docs/EMBEDDED.md).
 */
export function naturalCompare(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(j);
    if (isDigit(ca) && isDigit(cb)) {
      let ea = i;
      let eb = j;
      while (ea < a.length && isDigit(a.charCodeAt(ea))) ea++;
      while (eb < b.length && isDigit(b.charCodeAt(eb))) eb++;
      let sa = i;
      let sb = j;
      while (sa < ea - 1 && a.charCodeAt(sa) === 48) sa++; // leading zeros do not make a number bigger
      while (sb < eb - 1 && b.charCodeAt(sb) === 48) sb++;
      if (ea - sa !== eb - sb) return ea - sa - (eb - sb);
      for (; sa < ea; sa++, sb++) if (a.charCodeAt(sa) !== b.charCodeAt(sb)) return a.charCodeAt(sa) - b.charCodeAt(sb);
      i = ea;
      j = eb;
      continue;
    }
    if (ca !== cb) return ca - cb;
    i++;
    j++;
  }
  const rest = a.length - i - (b.length - j);
  return rest !== 0 || a === b ? rest : a < b ? -1 : 1; // `a02` and `a2`: equal numbers, still one order
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
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
