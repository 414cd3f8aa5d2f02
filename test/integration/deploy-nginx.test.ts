/**
 * deploy/nginx/topicast.conf, as shipped (only its ports and web root are pointed at the test's), in
 * Debian's nginx in front of a real broker: nginx keeps serving its own pages, and /ws (SDK), /mqtt
 * (MQTT over WebSocket), /api/publish, /healthz, the dashboard and the SDK bundle reach the broker.
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
const haveNginx = spawnSync('sh', ['-c', 'command -v nginx || test -x /usr/sbin/nginx']).status === 0;
if (!haveNginx && process.env.CI) throw new Error('nginx is required under CI (apt-get install nginx)');
const NGINX = spawnSync('sh', ['-c', 'command -v nginx || echo /usr/sbin/nginx'], { encoding: 'utf8' }).stdout.trim();
const shipped = readFileSync(new URL('../../../deploy/nginx/topicast.conf', import.meta.url), 'utf8');

const dir = mkdtempSync(join(tmpdir(), 'topicast-nginx-'));
let broker: BrokerProcess | undefined;
let nginx: ChildProcess | undefined;
let base = '';
process.on('exit', () => nginx?.kill('SIGKILL')); // last resort if the file dies before after()
after(async () => {
  nginx?.kill('SIGQUIT');
  await broker?.stop();
  rmSync(dir, { recursive: true, force: true });
});

before(async () => {
  if (!haveNginx) return;
  broker = await startBroker({ mqttOff: true });
  const port = await freePort();
  base = `http://127.0.0.1:${port}`;
  const site = join(dir, 'site');
  mkdirSync(site);
  writeFileSync(join(site, 'index.html'), '<title>my board</title>');
  for (const [from, to] of [['    listen 80;', `    listen 127.0.0.1:${port};`], ['    server 127.0.0.1:8080;', `    server 127.0.0.1:${broker.port};`], ['    root /var/www/html;', `    root ${site};`]] as const) {
    assert.ok(shipped.includes(from), `the shipped file has "${from.trim()}"`);
  }
  const conf = shipped
    .replace('    listen 80;', `    listen 127.0.0.1:${port};`)
    .replace('    server 127.0.0.1:8080;', `    server 127.0.0.1:${broker.port};`)
    .replace('    root /var/www/html;', `    root ${site};`);
  writeFileSync(join(dir, 'topicast.conf'), conf);
  // A minimal main file around it, as /etc/nginx/nginx.conf's http { } includes conf.d/*.conf.
  writeFileSync(join(dir, 'nginx.conf'), `daemon off;
${process.getuid?.() === 0 ? 'user root;' : ''}
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
  include ${dir}/topicast.conf;
}
`);
  await run(NGINX, ['-t', '-q', '-p', dir, '-c', join(dir, 'nginx.conf')]);
  nginx = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: ['ignore', 'ignore', 'pipe'] });
  await waitFor(() => fetch(`${base}/`).then((r) => r.ok, () => false), 'nginx listening', 10_000);
});

test('deploy/nginx: the site stays nginx\'s; WebSocket, MQTT over WebSocket, HTTP publish, /healthz, dashboard and SDK go to the broker', { skip: haveNginx ? false : 'nginx not installed (apt-get install nginx)' }, async () => {
  await checkProxiedBroker(base, 'nginx');
});
