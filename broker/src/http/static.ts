/**
 * Static files for `GET /` and friends: the dashboard or `--static DIR`.
 * The URL path is percent-decoded once and must not contain `..` or `.`
 * segments, backslashes or NUL; the resolved file must lie inside the root
 * (plain and percent-encoded traversal both refused with 400). Symbolic links are
 * followed only where they stay inside the root: the file's real path (fs.realpath)
 * is checked against the root's, and anything outside answers 404 like a missing file.
 */
import { readFile, realpath, stat } from 'node:fs/promises';
import { extname, join, resolve, sep } from 'node:path';

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.jpg': 'image/jpeg',
  '.jpeg': 'image/jpeg',
  '.gif': 'image/gif',
  '.ico': 'image/x-icon',
  '.webp': 'image/webp',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
  '.wasm': 'application/wasm',
  '.webmanifest': 'application/manifest+json',
};

export function contentType(path: string): string {
  return CONTENT_TYPES[extname(path).toLowerCase()] ?? 'application/octet-stream';
}

export type StaticResult =
  | { kind: 'file'; path: string; body: Buffer; contentType: string }
  | { kind: 'bad-path' }
  | { kind: 'not-found' };

/** Largest file served; bigger files are not what this server is for. */
const MAX_STATIC_BYTES = 64 * 1024 * 1024;

/** Resolves a URL path to a file under `root`; never escapes it. */
export function resolveStaticPath(root: string, urlPath: string): string | undefined {
  let decoded: string;
  try {
    decoded = decodeURIComponent(urlPath);
  } catch {
    return undefined;
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return undefined;
  const segments = decoded.split('/');
  if (segments.some((s) => s === '..' || s === '.')) return undefined;
  const absRoot = resolve(root);
  const file = resolve(join(absRoot, decoded.endsWith('/') ? `${decoded}index.html` : decoded));
  if (file !== absRoot && !file.startsWith(absRoot + sep)) return undefined;
  return file;
}

export async function loadStatic(root: string, urlPath: string): Promise<StaticResult> {
  const file = resolveStaticPath(root, urlPath);
  if (file === undefined) return { kind: 'bad-path' };
  try {
    let path = file;
    let info = await stat(path);
    if (info.isDirectory()) {
      path = join(path, 'index.html');
      info = await stat(path);
    }
    if (!info.isFile() || info.size > MAX_STATIC_BYTES) return { kind: 'not-found' };
    // A link inside the root may point anywhere (docs/SECURITY.md): only real paths under the root's own are served.
    const [realRoot, realFile] = await Promise.all([realpath(root), realpath(path)]);
    if (!realFile.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep)) return { kind: 'not-found' };
    return { kind: 'file', path, body: await readFile(realFile), contentType: contentType(path) };
  } catch {
    return { kind: 'not-found' };
  }
}
