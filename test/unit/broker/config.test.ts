import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '@topicast/broker';

test('defaults match DESIGN.md', () => {
  const c = loadConfig([], {});
  assert.equal(c.host, '0.0.0.0');
  assert.equal(c.port, 8080);
  assert.equal(c.mqttPort, 1883);
  assert.equal(c.slowConsumerPolicy, 'conflate');
});

test('precedence: flags over env over file over defaults', () => {
  const dir = mkdtempSync(join(tmpdir(), 'topicast-config-'));
  const file = join(dir, 'c.json');
  writeFileSync(file, JSON.stringify({ port: 1000, maxPayloadBytes: 2000, logLevel: 'warn' }));
  const c = loadConfig(['--config', file, '--port=3000'], { TOPICAST_PORT: '2000', TOPICAST_MAX_PAYLOAD_BYTES: '4000' });
  assert.equal(c.port, 3000);
  assert.equal(c.maxPayloadBytes, 4000);
  assert.equal(c.logLevel, 'warn');
});

test('bad settings name the setting and the value', () => {
  const cases: [string[], NodeJS.ProcessEnv, RegExp][] = [
    [['--port', 'abc'], {}, /--port: "abc" is not an integer/],
    [['--port', '70000'], {}, /--port: "70000" is outside 0\.\.65535/],
    [[], { TOPICAST_PORT: 'x' }, /TOPICAST_PORT: "x"/],
    [['--slow-consumer-policy', 'lol'], {}, /--slow-consumer-policy: "lol" is not one of drop, conflate, disconnect/],
    [['--nope', '1'], {}, /unknown setting --nope/],
    [['--port'], {}, /--port: a value is required/],
    [['--idle-timeout-sec', '10'], {}, /idleTimeoutSec: 10/],
    [['--config', '/nonexistent/x.json'], {}, /--config: cannot read/],
    [['extra'], {}, /unexpected argument "extra"/],
  ];
  for (const [argv, env, re] of cases) assert.throws(() => loadConfig(argv, env), (e: unknown) => e instanceof ConfigError && re.test(e.message), argv.join(' '));
  const dir = mkdtempSync(join(tmpdir(), 'topicast-config-'));
  writeFileSync(join(dir, 'bad.json'), JSON.stringify({ colour: 'red' }));
  assert.throws(() => loadConfig(['--config', join(dir, 'bad.json')], {}), /unknown setting "colour"/);
});

test('flags: a boolean setting is a flag, its value only attached; a value never looks like an option', () => {
  assert.equal(loadConfig(['--agent'], {}).agent, true);
  assert.equal(loadConfig(['--agent=false'], { TOPICAST_AGENT: '1' }).agent, false, 'a flag turns off what the environment turned on');
  assert.equal(loadConfig(['--data-recover=yes', '--port', '0'], {}).dataRecover, true);
  assert.equal(loadConfig(['--port', '1', '--port=2'], {}).port, 2, 'the last occurrence wins');
  const cases: [string[], RegExp][] = [
    [['--agent', 'somefile'], /^unexpected argument "somefile" \(--agent is a boolean and takes no separate value: give --agent or --agent=false\)$/],
    [['--data-recover', 'false'], /^unexpected argument "false" \(--data-recover is a boolean .* or --data-recover=false\)$/],
    [['--a\nb'], /^unknown setting "--a\\nb" \(see --help\)$/],
    [['--agent=maybe'], /^invalid setting --agent: "maybe" is not a boolean/],
    [['--static', '--port', '1'], /^invalid setting --static: a value is required$/],
    [['-p', '1'], /^unknown setting -p \(see --help\)$/],
    [['--nope=1'], /^unknown setting --nope \(see --help\)$/],
  ];
  for (const [argv, re] of cases) assert.throws(() => loadConfig(argv, {}), (e: unknown) => e instanceof ConfigError && re.test(e.message), argv.join(' '));
});

test('the README configuration reference is the one the broker prints', async () => {
  const { readFileSync } = await import('node:fs');
  const { settingsReference } = await import('@topicast/broker');
  const readme = readFileSync(new URL('../../../../README.md', import.meta.url), 'utf8');
  assert.ok(readme.includes(settingsReference()), 'README.md configuration table is stale: regenerate it from `topicast --help`');
});
