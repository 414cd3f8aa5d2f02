/**
 * Security on the MQTT listener (TCP and WebSocket /mqtt) with real clients
 * (mqtt.js at protocol levels 4 and 5, mosquitto_pub/sub): the password is the
 * token; refusals carry the MQTT reason (0x86/0x87, 3.1.1 codes 4/5).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import mqtt from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker.js';
import { nowSec, signJwt } from '../unit/auth/jwt-sign.js';

const SECRET = 'mqtt-integration-secret-0123456789-abcdef';
const TOKENS = { pi: 'pi-01-mqtt-static-token', admin: 'admin-mqtt-static-token' };
const dir = mkdtempSync(join(tmpdir(), 'topicast-sec-mqtt-'));
let broker: BrokerProcess;
const issued = new Set<string>(Object.values(TOKENS));

before(async () => {
  writeFileSync(join(dir, 'secret'), SECRET);
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({
    tokens: [
      { token: TOKENS.pi, sub: 'pi-01', publish: ['devices/{sub}/#'], subscribe: ['devices/{sub}/cmd/#'] },
      { token: TOKENS.admin, sub: 'admin', publish: ['#'], subscribe: ['#', '$SYS/#'] },
    ],
  }));
  broker = await startBroker({ args: ['--auth-token-file', join(dir, 'tokens.json'), '--auth-jwt-key-file', join(dir, 'secret'), '--auth-clock-skew-sec', '0', '--log-level', 'debug'] });
});
after(() => rmSync(dir, { recursive: true, force: true }));

type Url = 'tcp' | 'ws';
const urlOf = (kind: Url): string => (kind === 'tcp' ? `mqtt://127.0.0.1:${broker.mqttPort}` : `ws://127.0.0.1:${broker.port}/mqtt`);

/** The CONNACK failure code an mqtt.js client gets, or 0 when it connected. */
async function connackCode(kind: Url, version: 4 | 5, creds: { username?: string; password?: string }): Promise<number> {
  try {
    const c = await mqtt.connectAsync(urlOf(kind), { protocolVersion: version, reconnectPeriod: 0, connectTimeout: 3000, clientId: `t-${Math.random().toString(36).slice(2)}`, ...creds });
    await c.endAsync();
    return 0;
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code !== 'number') throw err;
    return code;
  }
}

for (const kind of ['tcp', 'ws'] as const) {
  test(`${kind}: refused without credentials (0x87 / 5), with a bad, forged or expired token (0x86 / 4)`, async () => {
    assert.equal(await connackCode(kind, 5, {}), 0x87);
    assert.equal(await connackCode(kind, 4, {}), 5);
    assert.equal(await connackCode(kind, 5, { username: 'pi-01', password: 'wrong' }), 0x86);
    assert.equal(await connackCode(kind, 4, { username: 'pi-01', password: 'wrong' }), 4);
    const forged = signJwt('HS256', 'another-secret-of-enough-length-0123456789', { sub: 'x', exp: nowSec() + 60 });
    const expired = signJwt('HS256', SECRET, { sub: 'x', exp: nowSec() - 5 });
    issued.add(forged).add(expired);
    assert.equal(await connackCode(kind, 5, { username: 'x', password: forged }), 0x86);
    assert.equal(await connackCode(kind, 5, { username: 'x', password: expired }), 0x86);
  });
}

test('the logs never contain a token offered over MQTT', () => {
  const logs = broker.logs.join('\n');
  for (const t of issued) assert.ok(!logs.includes(t), 'a token appears in the broker log');
});
