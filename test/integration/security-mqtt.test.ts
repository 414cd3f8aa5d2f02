/**
 * Security on the MQTT listener (TCP and WebSocket /mqtt) with real clients
 * (mqtt.js at protocol levels 4 and 5, mosquitto_pub/sub): the password is the
 * token; refusals carry the MQTT reason (0x86/0x87, 3.1.1 codes 4/5); publish,
 * subscribe, retained delivery and wills are checked against the token's permissions.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { startBroker, type BrokerProcess } from '../helpers/broker.js';
import { nowSec, signJwt } from '../unit/broker/auth/jwt-sign.js';

const SECRET = 'mqtt-integration-secret-0123456789-abcdef';
const TOKENS = { pi: 'pi-01-mqtt-static-token', admin: 'admin-mqtt-static-token', reader: 'reader-mqtt-static-token' };
const dir = mkdtempSync(join(tmpdir(), 'topicast-sec-mqtt-'));
let broker: BrokerProcess;
const issued = new Set<string>(Object.values(TOKENS));

before(async () => {
  writeFileSync(join(dir, 'secret'), SECRET);
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify({
    tokens: [
      { token: TOKENS.pi, sub: 'pi-01', publish: ['devices/{sub}/#', 'clients/{clientId}/#'], subscribe: ['devices/{sub}/cmd/#'] },
      { token: TOKENS.reader, sub: 'reader', subscribe: ['devices/#'], denySubscribe: ['devices/+/secret/#'] },
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

const run = promisify(execFile);
const clients: MqttClient[] = [];
after(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
});

async function client(kind: Url, version: 4 | 5, password: string, extra: mqtt.IClientOptions = {}): Promise<MqttClient> {
  const c = await mqtt.connectAsync(urlOf(kind), { protocolVersion: version, reconnectPeriod: 0, connectTimeout: 3000, username: 'u', password, clientId: `c-${Math.random().toString(36).slice(2)}`, ...extra });
  clients.push(c);
  return c;
}

/** Collects messages per topic. */
function inbox(c: MqttClient): Map<string, string[]> {
  const got = new Map<string, string[]>();
  c.on('message', (topic, payload) => got.set(topic, [...(got.get(topic) ?? []), payload.toString()]));
  return got;
}

/** SUBACK codes for `filters` (mqtt.js rejects a SUBACK holding a failure; the packet is on the error). */
async function subackCodes(c: MqttClient, filters: string | string[]): Promise<number[]> {
  try {
    return (await c.subscribeAsync(filters, { qos: 1 })).map((g) => g.qos);
  } catch (err) {
    const granted = (err as { packet?: { granted?: number[] } }).packet?.granted;
    if (!granted) throw err;
    return granted;
  }
}

async function until(check: () => boolean, what: string, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

for (const kind of ['tcp', 'ws'] as const) {
  for (const version of [4, 5] as const) {
    test(`${kind} v${version}: publish and subscribe outside the permissions are refused; allowed ones flow`, async () => {
      const admin = await client(kind, 5, TOKENS.admin);
      const seen = inbox(admin);
      await admin.subscribeAsync(['devices/#', 'clients/#'], { qos: 1 });
      const pi = await client(kind, version, TOKENS.pi);
      await pi.publishAsync('devices/pi-01/temp', '21', { qos: 1 });
      if (version === 5) {
        await assert.rejects(pi.publishAsync('devices/pi-02/temp', 'spoof', { qos: 1 }), (err: unknown) => (err as { code?: number }).code === 0x87);
      } else {
        await pi.publishAsync('devices/pi-02/temp', 'spoof', { qos: 1 }); // 3.1.1: acknowledged and dropped [MQTT-3.3.5-2]
      }
      await pi.publishAsync('devices/pi-02/temp', 'spoof0', { qos: 0 });
      await until(() => seen.has('devices/pi-01/temp'), 'allowed publish');
      assert.deepEqual(await subackCodes(pi, ['devices/pi-01/cmd/#', 'devices/#']), version === 5 ? [1, 0x87] : [1, 0x80]);
      await admin.publishAsync('devices/pi-01/cmd/reboot', 'now', { qos: 1 });
      const piSeen = inbox(pi);
      await admin.publishAsync('devices/pi-01/cmd/reboot', 'again', { qos: 1 });
      await until(() => piSeen.get('devices/pi-01/cmd/reboot')?.includes('again') === true, 'delivery on the granted filter');
      await admin.publishAsync('devices/other/x', 'not for pi', { qos: 1 });
      await new Promise((r) => setTimeout(r, 100));
      assert.equal(piSeen.has('devices/other/x'), false, 'nothing through the refused filter');
      assert.equal(seen.has('devices/pi-02/temp'), false, 'the refused publishes were not routed');
      // {clientId} substitution: a client may publish under its own client id only.
      const own = await client(kind, version, TOKENS.pi, { clientId: 'dev-7' });
      await own.publishAsync('clients/dev-7/state', 'ok', { qos: 1 });
      await own.publishAsync('clients/dev-8/state', 'spoof', { qos: 0 });
      await until(() => seen.has('clients/dev-7/state'), 'publish under the own client id');
      await own.publishAsync('clients/dev-7/state', 'sync', { qos: 1 });
      await until(() => seen.get('clients/dev-7/state')?.includes('sync') === true, 'ordered after the spoof attempt');
      assert.equal(seen.has('clients/dev-8/state'), false);
    });
  }

  test(`${kind}: retained and live messages on a denied topic never pass through a broader allowed wildcard`, async () => {
    const admin = await client(kind, 5, TOKENS.admin);
    await admin.publishAsync(`devices/${kind}r/secret/key`, 'hunter2', { qos: 1, retain: true });
    await admin.publishAsync(`devices/${kind}r/status`, 'online', { qos: 1, retain: true });
    for (const version of [4, 5] as const) {
      const reader = await client(kind, version, TOKENS.reader);
      const got = inbox(reader);
      assert.deepEqual(await subackCodes(reader, 'devices/#'), [1]);
      await until(() => got.has(`devices/${kind}r/status`), 'allowed retained message');
      await admin.publishAsync(`devices/${kind}r/secret/key`, 'hunter3', { qos: 1 });
      await admin.publishAsync(`devices/${kind}r/temp`, '20', { qos: 1 });
      await until(() => got.has(`devices/${kind}r/temp`), 'allowed live message');
      assert.ok(![...got.keys()].some((t) => t.includes('/secret/')), `leaked: ${[...got.keys()].join()}`);
      assert.deepEqual(await subackCodes(reader, `devices/${kind}r/secret/#`), [version === 5 ? 0x87 : 0x80]);
    }
  });

  test(`${kind}: a will on a denied topic refuses the CONNECT (0x87 / 5) and is never published`, async () => {
    const admin = await client(kind, 5, TOKENS.admin);
    const seen = inbox(admin);
    await admin.subscribeAsync('devices/+/status', { qos: 1 });
    for (const version of [4, 5] as const) {
      const code = await connackCode(kind, version, { username: 'pi-01', password: TOKENS.pi, will: { topic: 'devices/pi-02/status', payload: Buffer.from('offline'), qos: 0, retain: false } } as never);
      assert.equal(code, version === 5 ? 0x87 : 5);
    }
    const pi = await client(kind, 4, TOKENS.pi, { will: { topic: 'devices/pi-01/status', payload: Buffer.from('offline'), qos: 0, retain: false } });
    pi.stream.destroy(); // dropped without DISCONNECT: the allowed will is published
    await until(() => seen.has('devices/pi-01/status'), 'allowed will');
    assert.equal(seen.has('devices/pi-02/status'), false);
  });
}

test('a JWT expiring while connected ends the MQTT 5 connection with DISCONNECT 0x87', async () => {
  const token = signJwt('HS256', SECRET, { sub: 'short', exp: nowSec() + 1, topicast: { subscribe: ['a/#'] } });
  issued.add(token);
  const c = await client('tcp', 5, token);
  const reason = await new Promise<number | undefined>((resolve) => {
    c.once('disconnect', (p) => resolve(p.reasonCode));
    setTimeout(() => resolve(undefined), 4000);
  });
  assert.equal(reason, 0x87);
});

test('mosquitto_pub / mosquitto_sub: -u/-P carry the token; refused without it', async (t) => {
  if (process.env.CI === undefined && !(await run('which', ['mosquitto_pub']).then(() => true, () => false))) {
    t.skip('mosquitto-clients not installed');
    return;
  }
  const port = String(broker.mqttPort);
  const sub = run('mosquitto_sub', ['-h', '127.0.0.1', '-p', port, '-u', 'pi-01', '-P', TOKENS.admin, '-t', 'devices/pi-01/mosq', '-C', '1', '-W', '5']);
  await new Promise((r) => setTimeout(r, 300));
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-u', 'pi-01', '-P', TOKENS.pi, '-t', 'devices/pi-01/mosq', '-m', 'hello', '-q', '1']);
  assert.equal((await sub).stdout.trim(), 'hello');
  const refused = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-t', 'devices/pi-01/mosq', '-m', 'x']).then(() => 'ok', (err: { stderr?: string }) => err.stderr ?? 'failed');
  assert.match(refused, /not authori[sz]ed|refused/i);
});

test('the logs never contain a token offered over MQTT', () => {
  const logs = broker.logs.join('\n');
  for (const t of issued) assert.ok(!logs.includes(t), 'a token appears in the broker log');
});
