/** The MQTT CONNECT hook: password = token, user name ignored, reasons 0x87 / 0x86, permissions and expiry handed on. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadConfig } from '@topicast/broker';
import { auth, mqttAuth } from './load.js';
import { nowSec, signJwt } from './jwt-sign.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-mqtt-hook-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const SECRET = 'mqtt-hook-secret-0123456789-0123456789';
writeFileSync(join(dir, 'secret'), SECRET);
writeFileSync(join(dir, 'tokens.json'), JSON.stringify({ tokens: [{ token: 'static', sub: 's', publish: ['c/{clientId}/#'] }] }));
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

test('authentication off: every CONNECT is accepted unchanged (true)', async () => {
  const hook = mqttAuth.createMqttAuthenticate(auth.createAuth(loadConfig([], {})));
  assert.equal(await hook(undefined, undefined, 'c1'), true);
  assert.equal(await hook('u', bytes('anything'), 'c1'), true);
});

test('authentication on: reasons, {clientId} from the CONNECT, JWT expiry handed to the listener', async () => {
  const hook = mqttAuth.createMqttAuthenticate(auth.createAuth(loadConfig(['--auth-token-file', join(dir, 'tokens.json'), '--auth-jwt-key-file', join(dir, 'secret')], {})));
  assert.deepEqual(await hook('u', undefined, 'c1'), { allowed: false, reason: 0x87, reasonString: 'token required' });
  assert.deepEqual(await hook('u', bytes(''), 'c1'), { allowed: false, reason: 0x87, reasonString: 'token required' });
  assert.deepEqual(await hook('u', bytes('wrong'), 'c1'), { allowed: false, reason: 0x86, reasonString: 'token not accepted' });
  const ok = await hook('whatever-user', bytes('static'), 'dev-9');
  assert.ok(typeof ok === 'object' && ok.allowed);
  assert.equal(ok.permissions!.canPublish('c/dev-9/x'), true);
  assert.equal(ok.permissions!.canPublish('c/dev-8/x'), false);
  assert.equal(ok.expiresAtMs, undefined);
  const exp = nowSec() + 60;
  const jwt = await hook(undefined, bytes(signJwt('HS256', SECRET, { sub: 'j', exp })), 'dev-9');
  assert.ok(typeof jwt === 'object' && jwt.allowed);
  assert.equal(jwt.expiresAtMs, exp * 1000);
});
