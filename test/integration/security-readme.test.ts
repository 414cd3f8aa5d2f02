/**
 * The README's "Securing Topicast" example works as written:
 * its token file starts a broker; the mosquitto_pub, curl (as fetch) and SDK lines behave as
 * their comments say; the JWT claim shown is accepted with the flags shown.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, test } from 'node:test';
import { connect } from 'topicast';
import { startBroker } from '../helpers/broker.js';
import { isDelivery, NativeClient, sleep } from '../helpers/native-client.js';
import { keyPair, nowSec, signJwt } from '../unit/broker/auth/jwt-sign.js';

const run = promisify(execFile);
const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
const section = readme.slice(readme.indexOf('## Securing Topicast'), readme.indexOf('\n## ', readme.indexOf('## Securing Topicast') + 3));
const dir = mkdtempSync(join(tmpdir(), 'topicast-readme-sec-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function between(text: string, start: string, end: string): string {
  const i = text.indexOf(start);
  assert.ok(i >= 0, `${start} not found`);
  return text.slice(i + start.length, text.indexOf(end, i + start.length));
}

test('the token file example: allowed publish delivered, other subtree dropped, curl and SDK lines work', async (t) => {
  const tokenFile = join(dir, 'tokens.json');
  writeFileSync(tokenFile, between(section, "cat > tokens.json <<'EOF'\n", '\nEOF'));
  const tokens = (JSON.parse(readFileSync(tokenFile, 'utf8')) as { tokens: { token: string; sub: string }[] }).tokens;
  const pi = tokens.find((e) => e.sub === 'pi-01')!.token;
  const dash = tokens.find((e) => e.sub === 'dashboard')!.token;
  assert.ok(section.includes(`-P ${pi} -t devices/pi-01/temp`));
  assert.ok(section.includes(`connect('ws://localhost:8080/ws', { token: '${dash}' })`));
  const broker = await startBroker({ args: ['--auth-token-file', tokenFile, '--allowed-origins', 'https://app.example.com'] });
  const watcher = await NativeClient.connect(broker.url, { protocols: ['topicast.v1', `topicast.token.${Buffer.from(dash).toString('base64url')}`] });
  await watcher.subscribe(['devices/#']);
  const haveMosquitto = await run('which', ['mosquitto_pub']).then(() => true, () => false);
  if (haveMosquitto) {
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-u', 'pi-01', '-P', pi, '-t', 'devices/pi-01/temp', '-m', '21.5']);
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-u', 'pi-01', '-P', pi, '-t', 'devices/pi-02/temp', '-m', '99']);
    await watcher.expect(isDelivery('devices/pi-01/temp', '21.5'));
  } else if (process.env.CI !== undefined) {
    assert.fail('mosquitto-clients missing under CI');
  } else {
    t.diagnostic('mosquitto-clients not installed: MQTT lines skipped');
  }
  const curl = await fetch(`${broker.httpUrl}/api/publish/devices/pi-01/temp`, { method: 'POST', headers: { Authorization: `Bearer ${pi}` }, body: '21.5' });
  assert.equal(curl.status, 200);
  const sdk = await connect(broker.url, { token: dash });
  await sdk.subscribe('devices/pi-01/#', () => {}); // granted: '#' covers it
  await sdk.close();
  await sleep(50);
  await watcher.ping();
  assert.deepEqual(watcher.deliveries('devices/pi-02/temp'), [], 'the other subtree was dropped');
  await broker.stop();
});

test('the JWT example: the claim shown is accepted with --auth-jwt-audience', async () => {
  const claim = JSON.parse(between(section, 'subject:\n\n```json\n', '\n```')) as Record<string, unknown>;
  const { privateKey, publicPem } = keyPair('RS256');
  writeFileSync(join(dir, 'issuer-public.pem'), publicPem);
  assert.ok(section.includes('topicast --auth-jwt-key-file issuer-public.pem --auth-jwt-audience topicast'));
  const broker = await startBroker({ args: ['--auth-jwt-key-file', join(dir, 'issuer-public.pem'), '--auth-jwt-audience', 'topicast'] });
  const token = signJwt('RS256', privateKey, { ...claim, exp: nowSec() + 60 });
  const client = await connect(broker.url, { token: () => token });
  await client.publish('devices/pi-01/temp', 21.5, { ack: true });
  await assert.rejects(client.publish('devices/pi-02/temp', 1, { ack: true }));
  await client.close();
  await broker.stop();
});

test('docs/SECURITY.md: the openssl-only JWT recipe makes a token the broker accepts', async (t) => {
  const guide = readFileSync(new URL('../../../docs/SECURITY.md', import.meta.url), 'utf8');
  const script = between(guide, 'A test token for a shared secret, with nothing but `openssl`:\n\n```sh\n', '\n```');
  if (!(await run('which', ['openssl']).then(() => true, () => false))) {
    if (process.env.CI) assert.fail('openssl missing under CI');
    t.skip('openssl not installed');
    return;
  }
  const work = mkdtempSync(join(dir, 'recipe-'));
  writeFileSync(join(work, 'jwt-secret'), 'a-shared-secret-of-at-least-32-bytes!!');
  const token = (await run('bash', ['-c', script], { cwd: work })).stdout.trim();
  const broker = await startBroker({ args: ['--auth-jwt-key-file', join(work, 'jwt-secret')] });
  const client = await connect(broker.url, { token }).catch((err: Error) => {
    throw new Error(`${err.message}; token ${token.length} chars; broker log:\n${broker.logs.join('\n')}`);
  });
  await client.publish('devices/pi-01/temp', 20, { ack: true });
  await assert.rejects(client.publish('devices/pi-02/temp', 20, { ack: true }));
  await client.close();
  await broker.stop();
});
