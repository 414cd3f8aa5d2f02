/**
 * The static token file: a JSON list of tokens, each with a subject and its
 * permissions, for installations too small for a JWT issuer.
 *
 * ```json
 * { "tokens": [
 *   { "token": "pi-01-secret", "sub": "pi-01", "publish": ["devices/{sub}/#"], "subscribe": ["devices/{sub}/cmd/#"] },
 *   { "tokenSha256": "9f86d0…", "sub": "dashboard", "subscribe": ["#", "$SYS/#"] }
 * ] }
 * ```
 * `tokenSha256` (hex SHA-256 of the token) keeps the secret itself out of the
 * file. Lookups hash the presented token and use a Map: no early-exit string
 * comparison on the secret, O(1) per connection.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { filterProblem } from 'topicast/protocol';
import type { PermissionRules } from './permissions.js';

export interface TokenEntry {
  sub: string | undefined;
  rules: PermissionRules;
}

export function sha256Hex(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

const RULE_KEYS = ['publish', 'subscribe', 'denyPublish', 'denySubscribe'] as const;

/**
 * Reads permission lists from a claim or a token file entry.
 * Returns a problem description for a malformed one (never silently ignored).
 */
export function parseRules(value: unknown, where: string): PermissionRules | string {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) return `${where} must be an object`;
  const rules: { -readonly [K in keyof PermissionRules]: string[] } = {};
  for (const key of RULE_KEYS) {
    const list = (value as Record<string, unknown>)[key];
    if (list === undefined) continue;
    if (!Array.isArray(list) || !list.every((f) => typeof f === 'string')) return `${where}.${key} must be a list of topic filters`;
    for (const f of list as string[]) {
      // Placeholders are whole levels; validate with a stand-in value.
      const problem = filterProblem(f.replace(/\{(sub|clientId)\}/g, 'x'));
      if (problem !== undefined) return `${where}.${key}: filter ${JSON.stringify(f)} ${problem}`;
    }
    rules[key] = list as string[];
  }
  return rules;
}

/**
 * Loads the token file, keyed by SHA-256 of the token.
 * @throws Error naming the file and the bad entry.
 */
export function loadTokenFile(path: string): Map<string, TokenEntry> {
  let doc: unknown;
  try {
    doc = JSON.parse(readFileSync(path, 'utf8'));
  } catch (err) {
    throw new Error(`cannot read ${path}: ${(err as Error).message}`);
  }
  const tokens = (doc as { tokens?: unknown } | null)?.tokens;
  if (!Array.isArray(tokens)) throw new Error(`${path} must hold {"tokens": [...]}`);
  const out = new Map<string, TokenEntry>();
  tokens.forEach((e: unknown, i) => {
    const where = `${path} tokens[${i}]`;
    if (!e || typeof e !== 'object') throw new Error(`${where} must be an object`);
    const entry = e as Record<string, unknown>;
    let hash: string;
    if (typeof entry.token === 'string' && entry.token.length > 0) hash = sha256Hex(entry.token);
    else if (typeof entry.tokenSha256 === 'string' && /^[0-9a-fA-F]{64}$/.test(entry.tokenSha256)) hash = entry.tokenSha256.toLowerCase();
    else throw new Error(`${where} needs "token" (non-empty) or "tokenSha256" (64 hex digits)`);
    if (entry.sub !== undefined && typeof entry.sub !== 'string') throw new Error(`${where}.sub must be a string`);
    const rules = parseRules(entry, where);
    if (typeof rules === 'string') throw new Error(rules);
    if (out.has(hash)) throw new Error(`${where} repeats a token of an earlier entry`);
    out.set(hash, { sub: entry.sub as string | undefined, rules });
  });
  return out;
}
