/** The scale-out settings (cluster/settings.ts): the bus URL is checked at start-up, one clear line, exit 2. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { ConfigError, loadConfig } from '@topicast/broker';

const main = fileURLToPath(new URL('../../../../../broker/dist/main.js', import.meta.url));

test('bus: a single node by default; NATS lists and MQTT URLs accepted', () => {
  assert.equal(loadConfig([], {}).bus, undefined);
  assert.equal(loadConfig(['--bus', 'nats://n1:4222,nats://n2:4222'], {}).bus, 'nats://n1:4222,nats://n2:4222');
  assert.equal(loadConfig([], { TOPICAST_BUS: 'mqtts://broker.example:8883', TOPICAST_NODE_ID: 'pod-1' }).nodeId, 'pod-1');
});

test('bus: bad URLs name the setting and the problem', () => {
  const bad: [string, RegExp][] = [
    ['redis://h:6379', /scheme "redis:" is not nats:, mqtt: or mqtts:/],
    ['not a url', /is not a URL/],
    ['nats://h:4222,mqtt://h:1883', /mixes NATS and MQTT/],
    ['mqtt://a:1883,mqtt://b:1883', /an MQTT upstream takes one URL/],
    ['memory:', /scheme "memory:"/],
  ];
  for (const [url, why] of bad) {
    assert.throws(() => loadConfig(['--bus', url], {}), (err: Error) => err instanceof ConfigError && /^invalid setting bus: /.test(err.message) && why.test(err.message), url);
  }
});

test('a bad bus URL stops start-up with one line on stderr and exit code 2', () => {
  const r = spawnSync(process.execPath, [main, '--port', '0', '--mqtt-port', '0', '--bus', 'redis://127.0.0.1:6379'], { encoding: 'utf8', timeout: 10_000 });
  assert.equal(r.status, 2);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /^topicast: invalid setting bus: scheme "redis:"/);
});
