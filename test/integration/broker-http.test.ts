/**
 * The broker's HTTP side on its one port, over raw HTTP/1.1 requests (so no
 * client library normalises the paths we send): HTTP publish reaching WebSocket
 * subscribers, status codes (413, 400, 405 with Allow, 404, 426), /healthz and
 * /metrics, static files with their content types, and path traversal attempts
 * (plain, percent-encoded, double-encoded, backslashes) that must never return a
 * file outside the static root.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { ErrorCode, Flag } from 'topicast/protocol';
import { startBroker } from '../helpers/broker.js';
import { bytes, isDelivery, NativeClient, scrapeMetrics, text } from '../helpers/native-client.js';

const SECRET = `SECRET-${randomBytes(8).toString('hex')}`;
const dir = mkdtempSync(join(tmpdir(), 'topicast-http-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const www = join(dir, 'www');
mkdirSync(join(www, 'sub'), { recursive: true });
mkdirSync(join(dir, 'www2'));
writeFileSync(join(dir, 'secret.txt'), SECRET);
writeFileSync(join(dir, 'www2', 'secret.txt'), SECRET); // a sibling whose name starts like the root's
writeFileSync(join(www, 'index.html'), '<!doctype html><title>root index</title>');
writeFileSync(join(www, 'sub', 'index.html'), '<!doctype html><title>sub index</title>');
writeFileSync(join(www, 'app.js'), 'export const x = 1;\n');
writeFileSync(join(www, 'style.css'), 'body { color: red }\n');
writeFileSync(join(www, 'data.json'), '{"a":1}');
writeFileSync(join(www, 'logo.svg'), '<svg xmlns="http://www.w3.org/2000/svg"/>');
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), randomBytes(64)]);
writeFileSync(join(www, 'image.png'), PNG);
writeFileSync(join(www, 'noext'), 'opaque');
writeFileSync(join(www, 'with space.txt'), 'spaced');

const broker = await startBroker({ args: ['--static', www, '--max-payload-bytes', '1024', '--sys-interval-sec', '0'], mqttOff: true });

interface RawResponse {
  status: number;
  headers: Map<string, string>;
  body: Buffer;
}

/** One HTTP/1.1 request written byte for byte (the path is sent exactly as given). */
function raw(method: string, path: string, body?: Uint8Array, headers: Record<string, string> = {}, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = netConnect(broker.port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`${method} ${path}: no complete response in ${timeoutMs} ms`));
    }, timeoutMs);
    let done = false;
    const tryParse = (final: boolean): void => {
      if (done) return;
      const all = Buffer.concat(chunks);
      const end = all.indexOf('\r\n\r\n');
      if (end < 0) {
        if (final) fail(new Error(`${method} ${path}: connection closed before the headers (${all.length} bytes)`));
        return;
      }
      const lines = all.subarray(0, end).toString('latin1').split('\r\n');
      const status = Number(lines[0]!.split(' ')[1]);
      const map = new Map<string, string>();
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        map.set(l.slice(0, i).trim().toLowerCase(), l.slice(i + 1).trim());
      }
      const length = map.has('content-length') ? Number(map.get('content-length')) : undefined;
      const bodyBytes = all.subarray(end + 4);
      const complete = method === 'HEAD' || status === 204 || (length !== undefined && bodyBytes.length >= length);
      if (!complete && !final) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ status, headers: map, body: method === 'HEAD' ? Buffer.alloc(0) : bodyBytes.subarray(0, length ?? bodyBytes.length) });
    };
    const fail = (err: Error): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      tryParse(false);
    });
    socket.on('end', () => tryParse(true));
    socket.on('close', () => tryParse(true));
    socket.on('error', (err) => (chunks.length > 0 ? tryParse(true) : fail(err)));
    const head = [`${method} ${path} HTTP/1.1`, 'Host: 127.0.0.1', 'Connection: close'];
    for (const [k, v] of Object.entries(headers)) head.push(`${k}: ${v}`);
    if (body && !('Transfer-Encoding' in headers)) head.push(`Content-Length: ${body.length}`);
    socket.write(head.join('\r\n') + '\r\n\r\n');
    if (body) socket.write(body);
  });
}

const json = (r: RawResponse): { error?: { code: number; message: string } } & Record<string, unknown> => JSON.parse(r.body.toString('utf8')) as never;

test('POST /api/publish/<topic> reaches a WebSocket subscriber byte for byte; ?retain=1 keeps it; an empty retained body deletes it', async () => {
  const sub = await NativeClient.connect(broker.url);
  await sub.subscribe(['http/#']);
  const payload = new Uint8Array([0, 1, 2, 0xff, 0x0d, 0x0a, 0x0d, 0x0a, 0x80]);
  const r = await raw('POST', '/api/publish/http/a?retain=1', payload, { 'Content-Type': 'application/octet-stream' });
  assert.equal(r.status, 200, r.body.toString());
  assert.match(r.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(json(r), { topic: 'http/a', retain: true, deliveries: 1 });
  const d = await sub.expect(isDelivery('http/a'));
  assert.deepEqual([...d.payload], [...payload]);
  assert.equal(d.flags, 0, 'a live delivery');

  // Percent-encoded topic levels, UTF-8 included; no retain.
  const r2 = await raw('POST', '/api/publish/http%2Fenc/%C3%A9t%C3%A9', bytes('summer'));
  assert.equal(r2.status, 200, r2.body.toString());
  assert.equal(json(r2).topic, 'http/enc/été');
  assert.equal(text((await sub.expect(isDelivery('http/enc/été'))).payload), 'summer');

  // A chunked body (curl reading stdin sends one) in two chunks.
  const chunked = await raw('POST', '/api/publish/http/chunked', bytes('6\r\nhello-\r\n7\r\nchunked\r\n0\r\n\r\n'), { 'Transfer-Encoding': 'chunked' });
  assert.equal(chunked.status, 200, chunked.body.toString());
  assert.equal(text((await sub.expect(isDelivery('http/chunked'))).payload), 'hello-chunked');

  const late = await NativeClient.connect(broker.url);
  const s = await late.subscribe(['http/#']);
  assert.deepEqual(s.retained.map((x) => [x.topic, [...x.payload], x.flags]), [['http/a', [...payload], Flag.retain]]);

  const del = await raw('POST', '/api/publish/http/a?retain=1', new Uint8Array(0));
  assert.equal(del.status, 200);
  const later = await NativeClient.connect(broker.url);
  assert.equal((await later.subscribe(['http/#'])).count, 0, 'deleted');
  await Promise.all([sub.close(), late.close(), later.close()]);
});

test('HTTP publish refusals: 413 too large, 400 invalid topic, nothing routed', async () => {
  const sub = await NativeClient.connect(broker.url);
  await sub.subscribe(['#']);
  const atLimit = await raw('POST', '/api/publish/http/big', new Uint8Array(1024));
  assert.equal(atLimit.status, 200, 'exactly maxPayloadBytes is accepted');
  const big = await raw('POST', '/api/publish/http/big', new Uint8Array(1025));
  assert.equal(big.status, 413);
  assert.equal(json(big).error?.code, ErrorCode.payloadTooLarge);
  const bigger = await raw('POST', '/api/publish/http/big', new Uint8Array(200_000));
  assert.equal(bigger.status, 413);
  for (const path of ['/api/publish/a/+/b', '/api/publish/a/%23', '/api/publish/a/#', '/api/publish/', '/api/publish/a%00b', '/api/publish/%E0%A4%A', `/api/publish/${'x/'.repeat(40)}x`]) {
    const r = await raw('POST', path, bytes('x'));
    assert.equal(r.status, 400, `${path}: ${r.status} ${r.body.toString()}`);
    assert.equal(json(r).error?.code, ErrorCode.invalidTopic, path);
  }
  await sub.ping();
  assert.equal(sub.deliveries().length, 1, `only the accepted publish was routed: ${sub.deliveries().map((d) => d.topic).join(', ')}`);
  await sub.close();
});

test('wrong methods get 405 with Allow; unknown API paths 404; /ws without an upgrade 426', async () => {
  for (const [method, path, allow] of [
    ['GET', '/api/publish/x', 'POST'],
    ['PUT', '/api/publish/x', 'POST'],
    ['DELETE', '/api/publish/x', 'POST'],
    ['POST', '/healthz', 'GET, HEAD'],
    ['DELETE', '/metrics', 'GET, HEAD'],
    ['POST', '/index.html', 'GET, HEAD'],
    ['PUT', '/', 'GET, HEAD'],
  ] as const) {
    const r = await raw(method, path, method === 'GET' || method === 'DELETE' ? undefined : bytes('x'));
    assert.equal(r.status, 405, `${method} ${path}`);
    assert.equal(r.headers.get('allow'), allow, `${method} ${path} Allow`);
  }
  for (const [method, path] of [['GET', '/api/unknown'], ['POST', '/api/unknown'], ['GET', '/api/'], ['POST', '/api/publishx/a'], ['GET', '/missing.html'], ['GET', '/sub/missing.js']] as const) {
    const r = await raw(method, path, method === 'POST' ? bytes('x') : undefined);
    assert.equal(r.status, 404, `${method} ${path}`);
  }
  const ws = await raw('GET', '/ws');
  assert.equal(ws.status, 426);
});

test('/healthz and /metrics: content types and content', async () => {
  const c = await NativeClient.connect(broker.url);
  const h = await raw('GET', '/healthz');
  assert.equal(h.status, 200);
  assert.match(h.headers.get('content-type') ?? '', /^application\/json/);
  const body = json(h);
  assert.equal(body.status, 'ok');
  assert.equal(typeof body.version, 'string');
  assert.equal(typeof body.uptimeSec, 'number');
  assert.ok((body.connections as number) >= 1);

  const before = await scrapeMetrics(broker.httpUrl);
  await c.publish('metrics/x', bytes('12345'));
  const m = await raw('GET', '/metrics');
  assert.equal(m.status, 200);
  assert.equal(m.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
  const textBody = m.body.toString('utf8');
  const names = new Set<string>();
  for (const line of textBody.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    assert.match(line, /^[a-z_][a-z0-9_]*(\{[^}]*\})? -?\d+(\.\d+)?(e[+-]?\d+)?$/, `a valid sample line: ${line}`);
    const name = line.split(/[{ ]/, 1)[0]!;
    names.add(name);
    assert.ok(textBody.includes(`# TYPE ${name} `), `TYPE for ${name}`);
  }
  for (const n of ['topicast_connections_open', 'topicast_messages_received_total', 'topicast_deliveries_total', 'topicast_dropped_total', 'topicast_conflated_total', 'topicast_slow_consumer_disconnects_total', 'topicast_retained_messages', 'topicast_bytes_received_total', 'topicast_uptime_seconds']) {
    assert.ok(names.has(n), `${n} exported`);
  }
  const after = await scrapeMetrics(broker.httpUrl);
  assert.equal((after.get('topicast_messages_received_total') ?? 0) - (before.get('topicast_messages_received_total') ?? 0), 1);
  assert.equal((after.get('topicast_bytes_received_total') ?? 0) - (before.get('topicast_bytes_received_total') ?? 0), 5);
  assert.ok((after.get('topicast_connections_open') ?? 0) >= 1);
  await c.close();
});

test('static files from --static with their content types; / and directories serve index.html', async () => {
  const cases: [string, string, string | Buffer][] = [
    ['/', 'text/html; charset=utf-8', '<!doctype html><title>root index</title>'],
    ['/index.html', 'text/html; charset=utf-8', '<!doctype html><title>root index</title>'],
    ['/sub/', 'text/html; charset=utf-8', '<!doctype html><title>sub index</title>'],
    ['/sub', 'text/html; charset=utf-8', '<!doctype html><title>sub index</title>'],
    ['/app.js', 'text/javascript; charset=utf-8', 'export const x = 1;\n'],
    ['/style.css', 'text/css; charset=utf-8', 'body { color: red }\n'],
    ['/data.json', 'application/json', '{"a":1}'],
    ['/logo.svg', 'image/svg+xml', '<svg xmlns="http://www.w3.org/2000/svg"/>'],
    ['/image.png', 'image/png', PNG],
    ['/noext', 'application/octet-stream', 'opaque'],
    ['/with%20space.txt', 'text/plain; charset=utf-8', 'spaced'],
    ['/app.js?v=123', 'text/javascript; charset=utf-8', 'export const x = 1;\n'],
  ];
  for (const [path, type, content] of cases) {
    const r = await raw('GET', path);
    assert.equal(r.status, 200, path);
    assert.equal(r.headers.get('content-type'), type, path);
    assert.deepEqual(r.body, Buffer.isBuffer(content) ? content : Buffer.from(content), path);
    assert.equal(r.headers.get('x-content-type-options'), 'nosniff', path);
  }
  const head = await raw('HEAD', '/app.js');
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(Buffer.byteLength('export const x = 1;\n')));
});

test('path traversal attempts never return a file outside the static root', async () => {
  const attempts = [
    '/../secret.txt',
    '/../../secret.txt',
    '/sub/../../secret.txt',
    '/./../secret.txt',
    '/%2e%2e/secret.txt',
    '/%2E%2E/secret.txt',
    '/%2e%2e%2fsecret.txt',
    '/..%2fsecret.txt',
    '/..%2Fsecret.txt',
    '/sub%2F..%2F..%2Fsecret.txt',
    '/sub/%2F..%2F..%2Fsecret.txt',
    '/.%2e/secret.txt',
    '/%2e./secret.txt',
    '/%252e%252e%252fsecret.txt',
    '/%252e%252e/secret.txt',
    '/..%252fsecret.txt',
    '/..\\secret.txt',
    '/sub\\..\\..\\secret.txt',
    '/..%5csecret.txt',
    '/..%5Csecret.txt',
    '/%5c..%5csecret.txt',
    '/%2e%2e%5csecret.txt',
    '/%c0%ae%c0%ae/secret.txt',
    '/%c0%ae%c0%ae%c0%afsecret.txt',
    '/..%00/secret.txt',
    '/secret.txt%00.html',
    '//../secret.txt',
    '/../www2/secret.txt',
    '/%2e%2e/www2/secret.txt',
    `/%2F${dir.slice(1).replace(/\//g, '%2F')}%2Fsecret.txt`,
    `/${dir}/secret.txt`,
    `/..${dir}/secret.txt`,
    'http://127.0.0.1/../secret.txt',
    '../secret.txt',
    '/..;/secret.txt',
  ];
  for (const path of attempts) {
    const r = await raw('GET', path);
    assert.ok(!r.body.toString('latin1').includes(SECRET), `${path} leaked the secret (status ${r.status})`);
    assert.notEqual(r.status, 200, `${path} answered 200`);
    // 400 (refused) or 404 from the broker; uWS itself answers 505 to request targets it does not parse.
    assert.ok(r.status === 400 || r.status === 404 || r.status === 505, `${path}: ${r.status}`);
  }
  // The server is still fine afterwards.
  assert.equal((await raw('GET', '/')).status, 200);
});

// Last, so a crash here cannot take the tests above down with it.
test('HEAD on /healthz, /metrics and static files: headers only, and the broker survives', async () => {
  for (const path of ['/app.js', '/', '/healthz', '/metrics']) {
    const r = await raw('HEAD', path).catch((err: Error) => err);
    assert.ok(!(r instanceof Error), `HEAD ${path}: ${r instanceof Error ? r.message : ''}; broker exit: ${broker.proc.exitCode ?? broker.proc.signalCode ?? 'running'}; ${broker.logs.slice(-2).join(' | ')}`);
    assert.equal(r.status, 200, `HEAD ${path}`);
    assert.ok(Number(r.headers.get('content-length')) > 0, `HEAD ${path} announces the GET body length`);
  }
  assert.equal((await raw('GET', '/healthz')).status, 200, 'still alive');
});

test('hostile HTTP: 600 malformed or odd requests (methods, paths, broken upgrades and bodies) never take the broker down', async () => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const pick = <T>(xs: readonly T[]): T => xs[rnd(xs.length)]!;
  const methods = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'OPTIONS', 'PATCH', 'TRACE', 'CONNECT', 'get', 'FOO', 'G\u00e9T'];
  const paths = ['/', '/healthz', '/metrics', '/ws', '/mqtt', '/api/publish/a/b', '/api/publish/', '/api/publish/%', '/api/publish/%zz', '/api/', '/api', '/index.html',
    '/%', '/%%', '/%u002e', '/' + 'a'.repeat(3000), '/?' + 'q'.repeat(2000), '*', '/\t', '/a b', '/healthz?x=%00', '/api/publish/a?retain=%ff', '/sub/..'];
  const headerSets: Record<string, string>[] = [
    {},
    { Upgrade: 'websocket', Connection: 'Upgrade' }, // no key, no version
    { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': 'not-base64!', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Protocol': 'topicast.v1' },
    { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '8', 'Sec-WebSocket-Protocol': 'topicast.v1' },
    { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': '', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Protocol': 'topicast.v1, mqtt' },
    { Upgrade: 'websocket', Connection: 'Upgrade', 'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==', 'Sec-WebSocket-Version': '13', 'Sec-WebSocket-Protocol': ',,,' },
    { 'Transfer-Encoding': 'chunked' },
    { 'Content-Length': '-1' },
    { 'Content-Length': '99999999999999999999' },
    { 'Content-Length': '5', 'Transfer-Encoding': 'chunked' },
    { Expect: '100-continue' },
    { Range: 'bytes=0-1' },
    { 'X-Long': 'x'.repeat(5000) },
  ];
  const bodies = [undefined, bytes('hello'), bytes('zz\r\nnot chunked\r\n'), bytes('5\r\nabc\r\n0\r\n\r\n'), new Uint8Array(5000), bytes('0\r\n\r\n')];
  let answered = 0;
  let dropped = 0;
  const one = async (): Promise<void> => {
    const method = pick(methods);
    const path = pick(paths);
    const headers = pick(headerSets);
    const body = pick(bodies);
    try {
      // A request announcing a body it never sends may rightly wait for it: 1 s is enough to tell.
      const r = await raw(method, path, body, headers, 1000);
      answered++;
      if (path === '/' + 'a'.repeat(3000)) assert.ok(r.status >= 400);
    } catch {
      dropped++; // closing on garbage is fine; only the process's survival matters here
    }
  };
  for (let round = 0; round < 75; round++) await Promise.all(Array.from({ length: 8 }, one));
  assert.equal(broker.proc.exitCode, null, `broker exited: ${broker.logs.slice(-3).join(' | ')}`);
  assert.equal(broker.proc.signalCode, null);
  assert.equal((await raw('GET', '/healthz')).status, 200, `alive after ${answered} answered and ${dropped} dropped requests`);
  const c = await NativeClient.connect(broker.url);
  await c.ping();
  await c.close();
});
