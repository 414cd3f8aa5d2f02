// Actuators and Home Assistant discovery, the pure parts: value checks, configuration, discovery
// payloads, the birth message, and `info` listing the actuators. Programs run in the integration
// tests (test/integration/actuators.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Actuators, Agent, ConfigError, commandValue, discoveryConfigs, HomeAssistantDiscovery, objectId, parseAgentArgs,
  type ActuatorConfig, type AgentConfig, type Inbound,
} from 'topicast/agent';
import { FakeClock, FakeTransport } from './fakes.js';

const fan: ActuatorConfig = { name: 'fan', type: 'number', min: 0, max: 100, step: 5, command: ['x'] };

test('commandValue: types, words, ranges and steps', () => {
  const led: ActuatorConfig = { name: 'led', type: 'boolean', command: ['x'] };
  for (const v of [true, 'true', 'ON', 'on', 1, '1', 'yes']) assert.deepEqual(commandValue(led, v), { value: true, text: 'true' }, String(v));
  for (const v of [false, 'false', 'OFF', 0, '0', 'no']) assert.deepEqual(commandValue(led, v), { value: false, text: 'false' }, String(v));
  assert.deepEqual(commandValue(led, 'maybe'), { error: 'led takes true or false, got "maybe"' });
  assert.deepEqual(commandValue(led, { on: true }), { error: 'led takes true or false, got {"on":true}' });
  assert.deepEqual(commandValue(fan, 35), { value: 35, text: '35' });
  assert.deepEqual(commandValue(fan, ' 40 '), { value: 40, text: '40' });
  assert.deepEqual(commandValue(fan, -5), { error: 'fan takes 0..100, got -5' });
  assert.deepEqual(commandValue(fan, 101), { error: 'fan takes 0..100, got 101' });
  assert.deepEqual(commandValue(fan, 7), { error: 'fan takes steps of 5 from 0, got 7' });
  assert.deepEqual(commandValue(fan, ''), { error: 'fan takes a number, got ""' });
  assert.deepEqual(commandValue(fan, NaN), { error: 'fan takes a number, got null' });
  assert.deepEqual(commandValue({ name: 't', type: 'number', step: 0.1, command: ['x'] }, 0.3), { value: 0.3, text: '0.3' }, 'float steps tolerate rounding');
  const mode: ActuatorConfig = { name: 'mode', type: 'string', options: ['auto', 'eco'], command: ['x'] };
  assert.deepEqual(commandValue(mode, 'eco'), { value: 'eco', text: 'eco' });
  assert.deepEqual(commandValue(mode, 'turbo'), { error: 'mode takes one of auto, eco, got "turbo"' });
  const label: ActuatorConfig = { name: 'label', type: 'string', maxLength: 4, command: ['x'] };
  assert.deepEqual(commandValue(label, 'a\nb'), { value: 'a\nb', text: 'a\nb' }, 'a per-command program takes line breaks as data');
  assert.deepEqual(commandValue(label, 'abcde'), { error: 'label takes at most 4 characters, got 5' });
  assert.deepEqual(commandValue(label, 'a\u0000'), { error: 'label cannot take a NUL character' });
  assert.deepEqual(commandValue({ ...label, mode: 'long-running' }, 'a\nb'), { error: 'label reads one command per line: a value cannot hold a line break' });
  assert.deepEqual(commandValue({ name: 'go', type: 'button', command: ['x'] }, { anything: 1 }), { value: 'press', text: 'press' });
});

function parse(file: unknown, argv: string[] = []): AgentConfig {
  const r = parseAgentArgs(['--config', 'c.json', ...argv], { readFile: () => JSON.stringify(file), hostname: () => 'h' });
  assert.equal(r.action, 'run');
  return (r as { config: AgentConfig }).config;
}

function problem(file: unknown, argv: string[] = [], env: Record<string, string> = {}): string {
  try {
    parseAgentArgs(['--config', 'c.json', ...argv], { readFile: () => JSON.stringify(file), hostname: () => 'h', env });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.ok(!err.message.includes('\n'));
    return err.message;
  }
  assert.fail('expected a ConfigError');
}

test('config: actuators and --homeassistant [PREFIX]', () => {
  assert.deepEqual(parse({ actuators: [fan] }).actuators, [fan]);
  assert.equal(parse({}).homeassistant, undefined);
  assert.equal(parse({}, ['--homeassistant']).homeassistant, 'homeassistant');
  assert.equal(parse({}, ['--homeassistant', '--id', 'x']).homeassistant, 'homeassistant', 'the prefix is optional before another flag');
  assert.equal(parse({}, ['--homeassistant', 'ha']).homeassistant, 'ha');
  assert.equal(parse({}, ['--homeassistant=ha/test']).homeassistant, 'ha/test');
  assert.equal(parse({ homeassistant: true }).homeassistant, 'homeassistant');
  assert.equal(parse({ homeassistant: false }).homeassistant, undefined);
  const env = (v: string) => parseAgentArgs([], { env: { TOPICAST_AGENT_HOMEASSISTANT: v }, hostname: () => 'h' });
  assert.equal((env('1') as { config: AgentConfig }).config.homeassistant, 'homeassistant');
  assert.equal((env('hass') as { config: AgentConfig }).config.homeassistant, 'hass');
  assert.match(problem({}, ['--homeassistant=a/#']), /^invalid --homeassistant "a\/#" \(from --homeassistant\): must be a topic prefix/);
  assert.match(problem({ homeassistant: 3 }), /invalid --homeassistant 3 \(from c.json: homeassistant\)/);
});

test('config: bad actuators stop start-up with one line', () => {
  const bad: [unknown, RegExp][] = [
    [{ actuators: {} }, /invalid actuators \{\} \(from c.json: actuators\): must be an array/],
    [{ actuators: [{ name: 'a/b', type: 'boolean', command: 'x' }] }, /actuator name .*one topic level/],
    [{ actuators: [{ name: 'set', type: 'boolean', command: 'x' }] }, /set is a topic of the device convention/],
    [{ actuators: [{ name: 'a', type: 'dimmer', command: 'x' }] }, /actuator type .*must be one of boolean, number, string, button/],
    [{ actuators: [{ name: 'a', type: 'boolean' }] }, /actuator command .*never put in it/],
    [{ actuators: [{ name: 'a', type: 'boolean', command: [] }] }, /actuator command/],
    [{ actuators: [{ name: 'a', type: 'boolean', command: 'x', min: 1 }] }, /actuator min .*number actuators only/],
    [{ actuators: [{ name: 'a', type: 'number', command: 'x', min: 5, max: 1 }] }, /actuator min .*must not exceed max/],
    [{ actuators: [{ name: 'a', type: 'number', command: 'x', step: 0 }] }, /actuator step .*> 0/],
    [{ actuators: [{ name: 'a', type: 'string', command: 'x', options: [] }] }, /actuator options .*non-empty array/],
    [{ actuators: [{ name: 'a', type: 'string', command: 'x', timeoutSec: 0 }] }, /actuator timeoutSec/],
    [{ actuators: [{ name: 'a', type: 'string', command: 'x', maxPerSec: 0.5 }] }, /actuator maxPerSec .*integer ≥ 1/],
    [{ actuators: [{ name: 'a', type: 'string', command: 'x', mode: 'daemon' }] }, /actuator mode .*per-command or long-running/],
    [{ actuators: [{ name: 'a', type: 'string', command: 'x', colour: 'red' }] }, /unknown key "colour"/],
    [{ actuators: [{ name: 'a', type: 'string', command: 'x' }, { name: 'a', type: 'boolean', command: 'y' }] }, /actuator name .*used twice/],
  ];
  for (const [file, message] of bad) assert.match(problem(file), message, JSON.stringify(file));
});

test('discovery: a bare-number agent has no value template; object ids keep only [a-zA-Z0-9_-]', () => {
  const configs = discoveryConfigs({ id: 'pi 01', payload: 'number', info: { os: 'Linux', arch: 'arm64', sensors: [{ path: 'net/eth0.1/rx', unit: 'B/s' }, { path: 'power/status', unit: '' }] } });
  assert.equal(objectId('pi 01', 'net/eth0.1/rx'), 'pi_01_net_eth0_1_rx');
  assert.deepEqual(configs.map((c) => c.topic), ['homeassistant/sensor/pi_01_net_eth0_1_rx/config', 'homeassistant/sensor/pi_01_power_status/config']);
  assert.equal(configs[0]!.config.value_template, undefined);
  assert.equal(configs[0]!.config.device_class, 'data_rate');
  assert.deepEqual(configs[1]!.config.unit_of_measurement, undefined, 'a text sensor has no unit');
  assert.equal(configs[1]!.config.state_class, undefined, 'and is no measurement');
  assert.deepEqual((configs[0]!.config.device as { model: string }).model, 'Linux arm64');
});

class CommandTransport extends FakeTransport {
  handlers = new Map<string, (m: Inbound) => void>();
  subscribe(filter: string, handler: (m: Inbound) => void): () => void {
    this.handlers.set(filter, handler);
    return () => this.handlers.delete(filter);
  }
}

test('discovery is published on info and again on the birth message, not on offline', () => {
  const clock = new FakeClock();
  const transport = new CommandTransport(clock);
  transport.setOpen(true);
  const ha = new HomeAssistantDiscovery({ id: 'd', transport, payload: 'reading', prefix: 'ha' });
  ha.start();
  assert.deepEqual([...transport.handlers.keys()], ['ha/status']);
  ha.publish({ sensors: [{ path: 'cpu/usage', unit: '%' }], actuators: [{ name: 'led', type: 'boolean' }] });
  assert.deepEqual(transport.take().map((p) => [p.topic, p.retain]), [['ha/sensor/d_cpu_usage/config', true], ['ha/switch/d_led/config', true]]);
  transport.handlers.get('ha/status')!({ topic: 'ha/status', value: 'offline', retained: false });
  assert.deepEqual(transport.take(), []);
  transport.handlers.get('ha/status')!({ topic: 'ha/status', value: 'online', retained: false });
  assert.equal(transport.take().length, 2);
  assert.equal(ha.announcements, 2);
  ha.stop();
  assert.equal(transport.handlers.size, 0);
});

test('actuators are listed in info; an unknown actuator is answered; retained commands are ignored', async () => {
  const clock = new FakeClock();
  const transport = new CommandTransport(clock);
  const agent = new Agent({ id: 'd', transport, readers: [], info: { hostname: 'h', os: 'o', arch: 'a', agentVersion: '0' }, clock });
  agent.start();
  transport.setOpen(true);
  transport.take();
  const actuators = new Actuators([fan], { id: 'd', transport, declareActuator: (a) => agent.declareActuator(a) });
  actuators.start();
  const info = transport.take().find((p) => p.topic === 'devices/d/info')!.payload as { actuators: unknown };
  assert.deepEqual(info.actuators, [{ name: 'fan', type: 'number', min: 0, max: 100, step: 5 }]);
  const command = transport.handlers.get('devices/d/set/+')!;
  command({ topic: 'devices/d/set/heater', value: 1, retained: false, responseTopic: 'r/1', correlationData: new Uint8Array([9]) });
  command({ topic: 'devices/d/set/fan', value: 500, retained: true, responseTopic: 'r/1' });
  command({ topic: 'devices/d/set/fan', value: 500, retained: false, responseTopic: 'r/1' });
  await Promise.resolve();
  assert.deepEqual(transport.take().map((p) => [p.topic, p.payload, p.retain]), [
    ['r/1', { ok: false, error: 'unknown actuator "heater" (known: fan)' }, false],
    ['r/1', { ok: false, error: 'fan takes 0..100, got 500' }, false],
  ]);
  assert.equal(actuators.byName.get('fan')!.stats.refused, 1);
  await actuators.stop();
  await agent.stop();
});
