/**
 * The agent over MQTT with username and password in the URL, against an authenticated broker:
 * it connects (the password is its token) and never writes the password to its log.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { startBroker, waitFor } from '../helpers/broker.js';
import { spawnAgent } from '../unit/sdk/agent/spawn-agent.js';

const FIXTURE = fileURLToPath(new URL('../../../test/fixtures/agent/pi', import.meta.url));

test('agent MQTT credentials from the URL: accepted by an authenticated broker, never logged', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'topicast-agent-cred-'));
  const secret = 'agent-secret-3b1f9c';
  const tokens = join(dir, 'tokens.json');
  writeFileSync(tokens, JSON.stringify({ tokens: [
    { token: secret, sub: 'pi-cred', publish: ['devices/{sub}/#'], subscribe: [] },
    { token: 'watcher-token-77', sub: 'watcher', subscribe: ['devices/#'] },
  ] }));
  const broker = await startBroker({ args: ['--auth-token-file', tokens] });
  const watcher = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { username: 'watcher', password: 'watcher-token-77', reconnectPeriod: 0 });
  const seen = new Map<string, string>();
  watcher.on('message', (topic, payload) => seen.set(topic, payload.toString()));
  await watcher.subscribeAsync('devices/#');
  const agent = spawnAgent(['--url', `mqtt://pi-cred:${secret}@127.0.0.1:${broker.mqttPort}`, '--transport', 'mqtt', '--id', 'pi-cred', '--root', FIXTURE, '--interval', '1']);
  try {
    await waitFor(() => seen.get('devices/pi-cred/status') === 'online', 'the agent online through MQTT with its token', 10000);
    assert.ok([...seen.keys()].some((t) => t.startsWith('devices/pi-cred/') && !t.endsWith('/status') && !t.endsWith('/info')), 'readings arrive');
    assert.equal(agent.logs.some((l) => l.includes(secret)), false, `the password is not in the agent log:\n${agent.logs.join('\n')}`);
    assert.ok(agent.logs.some((l) => l.includes('mqtt://pi-cred:***@127.0.0.1')), 'the log names the broker with the password masked');
    assert.equal(broker.logs.some((l) => l.includes(secret)), false, 'nor in the broker log');
  } finally {
    agent.kill('SIGKILL');
    await watcher.endAsync();
  }
});
