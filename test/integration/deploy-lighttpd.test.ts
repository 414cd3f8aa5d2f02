/**
 * deploy/lighttpd/topicast.conf, as shipped (only the broker's port is pointed at the test's), included
 * by a minimal lighttpd.conf in Debian's lighttpd in front of a real broker, as docs/EMBEDDED.md says:
 * lighttpd keeps serving its own pages, and /ws (SDK), /mqtt (MQTT over WebSocket), /api/publish,
 * /healthz, the dashboard and the SDK bundle reach the broker.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, startBroker, waitFor, type BrokerProcess } from '../helpers/broker.js';
import { checkProxiedBroker } from '../helpers/proxied-broker.js';

const run = promisify(execFile);
const LIGHTTPD = spawnSync('sh', ['-c', 'command -v lighttpd || echo /usr/sbin/lighttpd'], { encoding: 'utf8' }).stdout.trim();
const haveLighttpd = spawnSync('test', ['-x', LIGHTTPD]).status === 0;
if (!haveLighttpd && process.env.CI) throw new Error('lighttpd is required under CI (apt-get install lighttpd)');
const shipped = readFileSync(new URL('../../../deploy/lighttpd/topicast.conf', import.meta.url), 'utf8');

const dir = mkdtempSync(join(tmpdir(), 'topicast-lighttpd-'));
let broker: BrokerProcess | undefined;
let lighttpd: ChildProcess | undefined;
let errors = '';
let base = '';
process.on('exit', () => lighttpd?.kill('SIGKILL')); // last resort if the file dies before after()
after(async () => {
  lighttpd?.kill('SIGTERM');
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

before(async () => {
  if (!haveLighttpd) return;
  broker = await startBroker({ mqttOff: true });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const site = join(dir, 'site');
  mkdirSync(site);
  writeFileSync(join(site, 'index.html'), '<title>my board</title>');
  const from = '"port" => 8080';
  assert.ok(shipped.includes(from), `the shipped file has ${from}`);
  writeFileSync(join(dir, '50-topicast.conf'), shipped.replace(from, `"port" => ${broker.port}`));
  // What Debian's /etc/lighttpd/lighttpd.conf holds, cut to the test's ports and folders; it includes
  // conf-enabled/*.conf, where `lighty-enable-mod topicast` links the shipped file.
  writeFileSync(join(dir, 'lighttpd.conf'), `server.document-root = "${site}"
server.bind = "127.0.0.1"
server.port = ${port}
server.errorlog = "${dir}/error.log"
server.pid-file = "${dir}/lighttpd.pid"
index-file.names = ( "index.html" )
mimetype.assign = ( ".html" => "text/html" )
include "${dir}/50-topicast.conf"
`);
  await run(LIGHTTPD, ['-tt', '-f', join(dir, 'lighttpd.conf')]);
  lighttpd = spawn(LIGHTTPD, ['-D', '-f', join(dir, 'lighttpd.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  lighttpd.stderr!.on('data', (b: Buffer) => (errors += b.toString()));
  await waitFor(() => fetch(`${base}/`).then((r) => r.ok, () => false), `lighttpd listening (${errors.trim()})`, 10_000);
});

test('deploy/lighttpd: the site stays lighttpd\'s; WebSocket, MQTT over WebSocket, HTTP publish, /healthz, dashboard and SDK go to the broker', { skip: haveLighttpd ? false : 'lighttpd not installed (apt-get install lighttpd)' }, async () => {
  await checkProxiedBroker(base, 'lighttpd');
});
