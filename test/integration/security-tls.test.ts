/**
 * TLS on the broker port (https://, wss:// through uWS SSLApp) and on MQTT (mqtts://
 * through node:tls), with certificates the test generates with openssl; SIGHUP swaps
 * the certificate for new connections while open ones keep working; a bad pair on
 * reload is refused and the running certificate stays. Tokens are checked over TLS.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { connect as netConnect, createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import type { TLSSocket } from 'node:tls';
import mqtt, { type MqttClient } from 'mqtt';
import mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { Op, SUBPROTOCOL, decodeServerFrame, encodeFrame } from 'topicast/protocol';
import { startBroker, waitFor } from '../helpers/broker.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'topicast-tls-'));
const cleanups: (() => unknown)[] = [];
after(async () => {
  for (const c of cleanups) await c();
  rmSync(dir, { recursive: true, force: true });
});

const haveOpenssl = await run('openssl', ['version']).then(() => true, () => false);
if (!haveOpenssl && process.env.CI) throw new Error('openssl is required in CI');

async function certificate(name: string): Promise<{ cert: string; key: string; pem: Buffer }> {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1']);
  return { cert, key, pem: readFileSync(cert) };
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  await new Promise((r) => server.close(r));
  return port;
}

const TOKEN = 'tls-client-token-0123456789';

/** A wss connection offering the token; resolves after WELCOME with the server certificate's CN. */
async function wss(port: number, ca: Buffer): Promise<{ ws: WebSocket; cn: string }> {
  const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, [SUBPROTOCOL, `topicast.token.${Buffer.from(TOKEN).toString('base64url')}`], { ca });
  cleanups.push(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('message', (d: Buffer) => (decodeServerFrame(d).op === Op.welcome ? resolve() : reject(new Error('no WELCOME'))));
    ws.once('error', reject);
    ws.once('close', (code) => reject(new Error(`closed ${code}`)));
  });
  return { ws, cn: (ws as unknown as { _socket: TLSSocket })._socket.getPeerCertificate().subject.CN as string };
}

async function ping(ws: WebSocket): Promise<void> {
  ws.send(encodeFrame({ op: Op.ping, id: 77 }));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error('no PONG')), 3000);
    ws.on('message', (d: Buffer) => {
      const f = decodeServerFrame(d);
      if (f.op === Op.pong && f.id === 77) {
        clearTimeout(t);
        resolve();
      }
    });
  });
}

async function mqtts(port: number, ca: Buffer): Promise<{ client: MqttClient; cn: string }> {
  const client = await mqtt.connectAsync(`mqtts://127.0.0.1:${port}`, { ca, reconnectPeriod: 0, connectTimeout: 3000, username: 'tls', password: TOKEN });
  cleanups.push(() => client.endAsync(true));
  return { client, cn: (client.stream as TLSSocket).getPeerCertificate().subject.CN as string };
}

/** Sends a plain MQTT CONNECT; true if a CONNACK comes back within 2 s. */
function plainMqttAnswered(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect(port, '127.0.0.1');
    const done = (answered: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(answered);
    };
    const timer = setTimeout(() => done(false), 2000);
    socket.once('connect', () => socket.write(mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: 'plain', keepalive: 30 })));
    socket.on('data', (d: Buffer) => {
      if (d[0] === 0x20) done(true);
    });
    socket.once('close', () => done(false));
    socket.once('error', () => done(false));
  });
}

function httpsGet(port: number, path: string, ca: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, ca, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.once('error', reject);
    req.end();
  });
}

test('TLS: https, wss and mqtts with a generated certificate; SIGHUP reloads it without dropping open connections', { skip: haveOpenssl ? false : 'openssl not installed', timeout: 60_000 }, async () => {
  const first = await certificate('first');
  const second = await certificate('second');
  const live = { cert: join(dir, 'live.crt'), key: join(dir, 'live.key') };
  copyFileSync(first.cert, live.cert);
  copyFileSync(first.key, live.key);
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ tokens: [{ token: TOKEN, sub: 'tls', publish: ['tls/#'], subscribe: ['tls/#'] }] }));
  const mqttTlsPort = await freePort();
  const broker = await startBroker({
    mqttOff: true,
    args: ['--tls-cert-file', live.cert, '--tls-key-file', live.key, '--mqtt-tls-port', String(mqttTlsPort), '--auth-token-file', join(dir, 'tokens.json')],
  });
  assert.ok(broker.logs.some((l) => l.includes('TLS on')), broker.logs.join('\n'));

  const health = await httpsGet(broker.port, '/healthz', first.pem);
  assert.equal(health.status, 200);
  const old = await wss(broker.port, first.pem);
  assert.equal(old.cn, 'first');
  const oldMqtt = await mqtts(mqttTlsPort, first.pem);
  assert.equal(oldMqtt.cn, 'first');
  // Plain text on the TLS port is not served.
  await assert.rejects(httpsGet(broker.port, '/healthz', second.pem), 'a client trusting only another CA refuses the handshake');
  assert.equal(await plainMqttAnswered(mqttTlsPort), false, 'a plain-text CONNECT gets no CONNACK on the TLS port');

  copyFileSync(second.cert, live.cert);
  copyFileSync(second.key, live.key);
  broker.kill('SIGHUP');
  await waitFor(() => broker.logs.some((l) => l.includes('TLS certificate reloaded')), 'reload logged').catch((err: Error) => {
    throw new Error(`${err.message}: exit ${broker.proc.exitCode} ${broker.proc.signalCode}\n${broker.logs.slice(-5).join('\n')}`);
  });
  const fresh = await wss(broker.port, second.pem);
  assert.equal(fresh.cn, 'second');
  const freshMqtt = await mqtts(mqttTlsPort, second.pem);
  assert.equal(freshMqtt.cn, 'second');
  // The connections opened before the reload still work, both ways.
  await ping(old.ws);
  await oldMqtt.client.subscribeAsync('tls/x', { qos: 1 });
  const got = new Promise<string>((resolve) => oldMqtt.client.once('message', (_t, p) => resolve(p.toString())));
  await freshMqtt.client.publishAsync('tls/x', 'across the reload', { qos: 1 });
  assert.equal(await got, 'across the reload');

  // mosquitto_pub over mqtts, verifying the reloaded certificate.
  if (await run('which', ['mosquitto_pub']).then(() => true, () => false)) {
    await freshMqtt.client.subscribeAsync('tls/m', { qos: 1 });
    const viaMosquitto = new Promise<string>((resolve) => freshMqtt.client.once('message', (_t, p) => resolve(p.toString())));
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(mqttTlsPort), '--cafile', second.cert, '-u', 'tls', '-P', TOKEN, '-t', 'tls/m', '-m', 'from mosquitto', '-q', '1']);
    assert.equal(await viaMosquitto, 'from mosquitto');
  } else if (process.env.CI) {
    assert.fail('mosquitto-clients missing under CI');
  }

  // A bad pair on reload: refused, logged, and the running certificate stays.
  writeFileSync(live.cert, 'not a certificate');
  broker.kill('SIGHUP');
  await waitFor(() => broker.logs.some((l) => l.includes('TLS reload failed')), 'failed reload logged');
  assert.equal((await wss(broker.port, second.pem)).cn, 'second');
  assert.equal((await mqtts(mqttTlsPort, second.pem)).cn, 'second');
  assert.ok(!broker.logs.join('\n').includes(TOKEN));
  assert.equal(broker.proc.exitCode, null, 'SIGHUP does not end the broker');
});

test('TLS: a key that does not match the certificate stops start-up naming the settings', { skip: haveOpenssl ? false : 'openssl not installed' }, async () => {
  const a = await certificate('a');
  const b = await certificate('b');
  await assert.rejects(startBroker({ args: ['--tls-cert-file', a.cert, '--tls-key-file', b.key] }), /tlsCertFile\/tlsKeyFile/);
});

test('an X.509 certificate as --auth-jwt-key-file verifies JWTs signed with its key', { skip: haveOpenssl ? false : 'openssl not installed' }, async () => {
  const { auth } = await import('../unit/broker/auth/load.js');
  const { signJwt, nowSec } = await import('../unit/broker/auth/jwt-sign.js');
  const { loadConfig } = await import('@topicast/broker');
  const { createPrivateKey } = await import('node:crypto');
  const issuer = await certificate('issuer');
  const a = auth.createAuth(loadConfig(['--auth-jwt-key-file', issuer.cert], {}));
  const good = await a.authenticate(signJwt('ES256', createPrivateKey(readFileSync(issuer.key)), { sub: 'x', exp: nowSec() + 60 }));
  assert.ok(good.ok);
  const other = await certificate('other');
  const bad = await a.authenticate(signJwt('ES256', createPrivateKey(readFileSync(other.key)), { sub: 'x', exp: nowSec() + 60 }));
  assert.deepEqual(bad, { ok: false, reason: 'token signature invalid' });
});
