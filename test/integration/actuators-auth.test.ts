/**
 * Who may command is the broker's permission rules (README "Commands to devices"): with the
 * documented token file, a viewer's command is refused on every protocol — native (the SDK's
 * request rejects with notAuthorized), MQTT 5 (PUBACK 0x87), MQTT 3.1.1 (acknowledged, dropped,
 * counted), HTTP (403) — and the device program never runs; an operator's command runs.
 */
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import mqtt from 'mqtt';
import { connect, ErrorCode, RequestError } from 'topicast';
import { startBroker } from '../helpers/broker.js';
import { spawnAgent } from '../unit/sdk/agent/spawn-agent.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-actuators-auth-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const COMMAND_TOKENS = {
  tokens: [
    { token: 'agent-secret', sub: 'pi-01', publish: ['devices/{sub}/#', 'replies/#'], subscribe: ['devices/{sub}/set/#'] },
    { token: 'operator-secret', sub: 'operator', publish: ['devices/+/set/#'], subscribe: ['devices/#', 'replies/{sub}/#'] },
    { token: 'viewer-secret', sub: 'viewer', subscribe: ['devices/#'] },
  ],
};

test('a viewer token cannot command on any protocol; an operator can', async () => {
  const runs = join(dir, 'runs');
  const led = join(dir, 'led.sh');
  writeFileSync(led, `#!/bin/sh\necho run >> '${runs}'\necho "$TOPICAST_VALUE"\n`);
  chmodSync(led, 0o755);
  writeFileSync(join(dir, 'agent.json'), JSON.stringify({ actuators: [{ name: 'led', type: 'boolean', command: [led] }] }));
  writeFileSync(join(dir, 'tokens.json'), JSON.stringify(COMMAND_TOKENS));
  const broker = await startBroker({ args: ['--auth-token-file', join(dir, 'tokens.json')] });
  const agent = spawnAgent(['--url', broker.url, '--id', 'pi-01', '--token', 'agent-secret', '--readers', 'none', '--config', join(dir, 'agent.json')]);
  const operator = await connect(broker.url, { token: 'operator-secret', replyTopic: 'replies/operator/dash-1' });
  const viewer = await connect(broker.url, { token: 'viewer-secret', replyTopic: 'replies/viewer/dash-1' });
  const runCount = () => (existsSync(runs) ? readFileSync(runs, 'utf8').split('\n').filter(Boolean).length : 0);
  try {
    await new Promise<void>((resolve) => void operator.subscribe('devices/pi-01/info', (info) => (info as { actuators?: unknown }).actuators && resolve()));
    assert.deepEqual(await operator.request('devices/pi-01/set/led', true), { ok: true, state: true });
    assert.equal(runCount(), 1);

    // native: the request's publish is refused; the reply subscription itself was allowed.
    await assert.rejects(viewer.request('devices/pi-01/set/led', false), (e: unknown) => e instanceof RequestError && e.code === ErrorCode.notAuthorized && /not authorized to publish to "devices\/pi-01\/set\/led"/.test(e.message));
    // MQTT 5: PUBACK 0x87 (not authorized).
    const v5 = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, username: 'viewer', password: 'viewer-secret', clientId: 'viewer-5' });
    await assert.rejects(v5.publishAsync('devices/pi-01/set/led', 'false', { qos: 1, properties: { responseTopic: 'replies/viewer/x' } }), (e: Error & { code?: number }) => e.code === 0x87);
    await v5.endAsync();
    // MQTT 3.1.1: acknowledged and dropped [MQTT-3.3.5-2], counted.
    const deniedBefore = await denied(broker.httpUrl);
    const v4 = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 4, username: 'viewer', password: 'viewer-secret', clientId: 'viewer-4' });
    await v4.publishAsync('devices/pi-01/set/led', 'false', { qos: 1 });
    await v4.endAsync();
    assert.ok((await denied(broker.httpUrl)) > deniedBefore, 'the MQTT 3.1.1 publish was counted as denied');
    // HTTP: 403.
    const http = await fetch(`${broker.httpUrl}/api/publish/devices/pi-01/set/led`, { method: 'POST', headers: { Authorization: 'Bearer viewer-secret' }, body: 'false' });
    assert.equal(http.status, 403);

    // Every refusal was decided before its answer; the operator's next command runs exactly once more.
    assert.deepEqual(await operator.request('devices/pi-01/set/led', 'off'), { ok: true, state: false });
    assert.equal(runCount(), 2, 'no viewer command reached the program');
  } finally {
    await operator.close();
    await viewer.close();
    agent.kill('SIGTERM');
    await agent.exited;
    await broker.stop();
  }
});

async function denied(httpUrl: string): Promise<number> {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  const m = /^topicast_auth_denied_total (\d+)/m.exec(text);
  assert.ok(m, 'topicast_auth_denied_total in /metrics');
  return Number(m[1]);
}
