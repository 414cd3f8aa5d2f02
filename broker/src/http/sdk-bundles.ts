/**
 * The SDK's browser bundles, served by every broker at `/topicast.js` (with MessagePack) and
 * `/topicast-core.js` (JSON by default), so a page of your own imports the client from the broker it
 * talks to instead of copying the file. The build copies them next to the broker (dist/sdk/).
 *
 * Caching: a strong ETag (content hash) and `Cache-Control: no-cache`: a browser keeps the file and
 * revalidates it each load (a 304 of a few bytes), so an upgraded broker is never paired with a
 * stale client. Read once on first request and kept (about 80 KB for both).
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export const SDK_BUNDLES = { '/topicast.js': 'topicast.js', '/topicast-core.js': 'topicast-core.js' } as const;
export type SdkBundlePath = keyof typeof SDK_BUNDLES;

export interface SdkBundle {
  body: Buffer;
  etag: string;
}

export function isSdkBundlePath(path: string): path is SdkBundlePath {
  return Object.hasOwn(SDK_BUNDLES, path);
}

/** Loads bundles from `root` on first use and keeps them; a missing file rejects (the caller answers 404). */
export function sdkBundleLoader(root: string): (path: SdkBundlePath) => Promise<SdkBundle> {
  const cache = new Map<SdkBundlePath, Promise<SdkBundle>>();
  return (path) => {
    let p = cache.get(path);
    if (p === undefined) {
      p = readFile(join(root, SDK_BUNDLES[path])).then((body) => ({ body, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` }));
      p.catch(() => cache.delete(path)); // a later build may add it
      cache.set(path, p);
    }
    return p;
  };
}

/** Whether an `If-None-Match` header value matches `etag` (a list, `*`, or weak validators). */
export function etagMatches(ifNoneMatch: string, etag: string): boolean {
  if (ifNoneMatch === '') return false;
  if (ifNoneMatch.trim() === '*') return true;
  return ifNoneMatch.split(',').some((t) => t.trim().replace(/^W\//, '') === etag);
}
