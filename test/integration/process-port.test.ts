/**
 * Start-up failures of the broker process: each is one line on stderr naming the setting to
 * change, exit status 2, no stack trace (not on stderr, not in the JSON log), and never a hang.
 * A second broker on a port in use must refuse to start, not silently share the port (SO_REUSEPORT).
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { BROKER_MAIN, freePort, startBroker } from '../helpers/broker.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-startup-'));
const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the broker with `args` (on 127.0.0.1, MQTT off unless given) and checks the failure contract. */
function assertStartupFailure(args: string[], re: RegExp): void {
  const argv = [BROKER_MAIN, '--host', '127.0.0.1', ...(args.includes('--port') ? [] : ['--port', '0']), ...(args.includes('--mqtt-port') ? [] : ['--mqtt-port', '0']), ...args];
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', timeout: 15_000 });
  const what = `${args.join(' ')}: status ${r.status}, stderr ${JSON.stringify(r.stderr)}`;
  assert.equal(r.status, 2, what);
  assert.equal(r.stderr.split('\n').length, 2, `exactly one line: ${what}`);
  assert.match(r.stderr, /^topicast: /, what);
  assert.match(r.stderr, re, what);
  assert.doesNotMatch(r.stderr + r.stdout, /\bat .*\.js:\d+|"stack"/, `no stack trace anywhere: ${what}\n${r.stdout}`);
}

async function occupied(): Promise<number> {
  const server = createServer();
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as { port: number }).port;
}

test('a port in use stops start-up naming --port; the first broker keeps serving', async () => {
  const port = await freePort();
  const first = await startBroker({ port });
  assertStartupFailure(['--port', String(port)], new RegExp(`^topicast: cannot listen on 127\\.0\\.0\\.1:${port} \\(--port ${port}\\): the port is in use by another process; choose another --port, or stop that process$`, 'm'));
  const r = await fetch(`${first.httpUrl}/healthz`);
  assert.equal(r.status, 200, 'the first broker still serves');
});

test('an MQTT port in use names --mqtt-port', async () => {
  const port = await occupied();
  assertStartupFailure(['--mqtt-port', String(port)], new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port} \\(--mqtt-port ${port}\\): the port is in use by another process; choose another --mqtt-port`));
});

const haveOpenssl = await promisify(execFile)('openssl', ['version']).then(() => true, () => false);
if (!haveOpenssl && process.env.CI) throw new Error('openssl is required in CI');

test('an MQTT TLS port in use names --mqtt-tls-port', { skip: haveOpenssl ? false : 'openssl not installed' }, async () => {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=127.0.0.1']);
  const port = await occupied();
  assertStartupFailure(['--tls-cert-file', cert, '--tls-key-file', key, '--mqtt-tls-port', String(port)], new RegExp(`\\(--mqtt-tls-port ${port}\\): the port is in use by another process; choose another --mqtt-tls-port`));
});

test('--host that is not an address of this machine names --host', () => {
  // 192.0.2.0/24 is TEST-NET-1 (RFC 5737): never assigned to a host.
  assertStartupFailure(['--host', '192.0.2.1'], /cannot listen on 192\.0\.2\.1:0 \(--port 0\): 192\.0\.2\.1 is not an address of this machine; change --host$/m);
});

test('an unusable --data directory names --data and stops before anything opens', () => {
  const file = join(dir, 'a-file');
  writeFileSync(file, 'x');
  assertStartupFailure(['--data', file], /invalid setting --data: cannot use .*a-file \(it is a file, not a directory\); give a writable directory$/m);
  assertStartupFailure(['--data', join(file, 'data')], /invalid setting --data: cannot use .*a-file\/data \(a part of the path is a file, not a directory\); give a writable directory$/m);
  // Node's recursive mkdir never returns under /proc: the check must not hang there either.
  assertStartupFailure(['--data', '/proc/topicast-data'], /invalid setting --data: cannot use \/proc\/topicast-data/);
});

test('a --data directory that does not exist yet is created, parents included', async () => {
  const broker = await startBroker({ args: ['--data', join(dir, 'new', 'nested', 'data')] });
  assert.equal((await fetch(`${broker.httpUrl}/healthz`)).status, 200);
  await broker.stop();
});

test('a missing --static directory, an unreadable TLS or token file: one line naming the setting', () => {
  assertStartupFailure(['--static', join(dir, 'no-such-dir')], /invalid setting --static: cannot serve .*no-such-dir \(no such directory\); give a readable directory$/m);
  assertStartupFailure(['--tls-cert-file', join(dir, 'nope.pem'), '--tls-key-file', join(dir, 'nope.key')], /invalid setting tlsCertFile: cannot read .*nope\.pem/);
  assertStartupFailure(['--auth-token-file', join(dir, 'nope.json')], /invalid setting authTokenFile: cannot read .*nope\.json/);
  assertStartupFailure(['--no-such-setting', '1'], /unknown setting --no-such-setting \(see --help\)$/m);
});
