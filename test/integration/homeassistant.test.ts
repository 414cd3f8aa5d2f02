/**
 * Home Assistant MQTT discovery (`topicast-agent --homeassistant`), seen the way Home Assistant
 * sees it: an MQTT subscriber on `homeassistant/#` and on the device's topics. Every discovery
 * payload is checked field by field against the schema the README documents; the configs are
 * published again on HA's birth message; availability follows a kill -9 of the agent (its will).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import mqtt from 'mqtt';
import { startBroker } from '../helpers/broker.js';
import { eventually, spawnAgent } from '../unit/sdk/agent/spawn-agent.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-ha-'));
after(() => rmSync(dir, { recursive: true, force: true }));

type Json = { [key: string]: unknown };

test('discovery configs per sensor and actuator, re-announced on the birth message, availability after kill -9', async () => {
  const set = join(dir, 'set.sh');
  writeFileSync(set, '#!/bin/sh\necho "$TOPICAST_VALUE"\n');
  chmodSync(set, 0o755);
  writeFileSync(
    join(dir, 'agent.json'),
    JSON.stringify({
      exec: [{ name: 'room', command: 'echo 21.5', intervalSec: 1, unit: '°C' }],
      actuators: [
        { name: 'led', type: 'boolean', command: [set] },
        { name: 'fan', type: 'number', min: 0, max: 100, step: 5, unit: '%', command: [set] },
        { name: 'mode', type: 'string', options: ['auto', 'eco'], command: [set] },
        { name: 'label', type: 'string', command: [set] },
        { name: 'reboot', type: 'button', command: [set] },
      ],
    }),
  );
  const broker = await startBroker();
  const ha = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, clientId: 'home-assistant' });
  const configs = new Map<string, Json>();
  const announced: string[] = [];
  const device = new Map<string, string>();
  ha.on('message', (topic, payload) => {
    if (topic.startsWith('homeassistant/') && topic.endsWith('/config')) {
      configs.set(topic, JSON.parse(payload.toString()) as Json);
      announced.push(topic);
    } else device.set(topic, payload.toString());
  });
  await ha.subscribeAsync(['homeassistant/#', 'devices/ha-01/#']);
  const agent = spawnAgent(['--url', broker.url, '--id', 'ha-01', '--readers', 'memory', '--homeassistant', '--config', join(dir, 'agent.json')]);
  try {
    const expected = [
      'homeassistant/sensor/ha-01_exec_room/config',
      'homeassistant/sensor/ha-01_memory_used/config',
      'homeassistant/sensor/ha-01_memory_usage/config',
      'homeassistant/switch/ha-01_led/config',
      'homeassistant/number/ha-01_fan/config',
      'homeassistant/select/ha-01_mode/config',
      'homeassistant/text/ha-01_label/config',
      'homeassistant/button/ha-01_reboot/config',
    ];
    const ctx = () => `configs: ${[...configs.keys()].join(', ')}\nagent: ${agent.logs.join('\n')}`;
    await eventually(() => expected.every((t) => configs.has(t)) && device.has('devices/ha-01/exec/room') && device.has('devices/ha-01/info'), 'every discovery config', 20_000, ctx);

    // The device block every config shares: the device id, its model (from info), the agent version.
    const info = JSON.parse(device.get('devices/ha-01/info')!) as Json;
    const deviceBlock = { identifiers: ['topicast_ha-01'], name: 'ha-01', manufacturer: 'Topicast', model: `${info.os as string} ${info.arch as string}`, sw_version: info.agentVersion };
    const common = (path: string) => ({
      unique_id: `topicast_ha-01_${path.replaceAll('/', '_')}`,
      name: path,
      device: deviceBlock,
      availability_topic: 'devices/ha-01/status',
      payload_available: 'online',
      payload_not_available: 'offline',
    });
    assert.deepEqual(configs.get('homeassistant/sensor/ha-01_exec_room/config'), {
      ...common('exec/room'),
      state_topic: 'devices/ha-01/exec/room',
      value_template: '{{ value_json.value }}',
      unit_of_measurement: '°C',
      device_class: 'temperature',
      state_class: 'measurement',
    });
    assert.deepEqual(configs.get('homeassistant/sensor/ha-01_memory_used/config'), {
      ...common('memory/used'),
      state_topic: 'devices/ha-01/memory/used',
      value_template: '{{ value_json.value }}',
      unit_of_measurement: 'B',
      device_class: 'data_size',
      state_class: 'measurement',
    });
    assert.deepEqual(configs.get('homeassistant/sensor/ha-01_memory_usage/config'), {
      ...common('memory/usage'),
      state_topic: 'devices/ha-01/memory/usage',
      value_template: '{{ value_json.value }}',
      unit_of_measurement: '%',
      state_class: 'measurement',
    });
    assert.deepEqual(configs.get('homeassistant/switch/ha-01_led/config'), {
      ...common('led'),
      command_topic: 'devices/ha-01/set/led',
      state_topic: 'devices/ha-01/led',
      payload_on: 'true',
      payload_off: 'false',
      state_on: 'true',
      state_off: 'false',
    });
    assert.deepEqual(configs.get('homeassistant/number/ha-01_fan/config'), {
      ...common('fan'),
      command_topic: 'devices/ha-01/set/fan',
      state_topic: 'devices/ha-01/fan',
      mode: 'slider',
      min: 0,
      max: 100,
      step: 5,
      unit_of_measurement: '%',
    });
    assert.deepEqual(configs.get('homeassistant/select/ha-01_mode/config'), { ...common('mode'), command_topic: 'devices/ha-01/set/mode', state_topic: 'devices/ha-01/mode', options: ['auto', 'eco'] });
    assert.deepEqual(configs.get('homeassistant/text/ha-01_label/config'), { ...common('label'), command_topic: 'devices/ha-01/set/label', state_topic: 'devices/ha-01/label' });
    assert.deepEqual(configs.get('homeassistant/button/ha-01_reboot/config'), { ...common('reboot'), command_topic: 'devices/ha-01/set/reboot', payload_press: 'press' });

    // What HA's templates read: readings as JSON with a value, status as plain text.
    assert.equal((JSON.parse(device.get('devices/ha-01/exec/room')!) as Json).value, 21.5);
    assert.equal(device.get('devices/ha-01/status'), 'online');

    // HA's commands as it sends them (payload_on / payload_press) work, and the state reads back as HA expects.
    await ha.publishAsync('devices/ha-01/set/led', 'true');
    await eventually(() => device.get('devices/ha-01/led') === 'true', 'the switch state', 10_000, ctx);
    await ha.publishAsync('devices/ha-01/set/fan', '55');
    await eventually(() => device.get('devices/ha-01/fan') === '55', 'the number state', 10_000, ctx);

    // HA restarts: its birth message brings every config again.
    announced.length = 0;
    await ha.publishAsync('homeassistant/status', 'online');
    await eventually(() => expected.every((t) => announced.includes(t)), 'configs re-announced after the birth message', 10_000, ctx);

    // The agent dies without a word: its will makes every entity unavailable.
    agent.kill('SIGKILL');
    await agent.exited;
    await eventually(() => device.get('devices/ha-01/status') === 'offline', 'availability offline after kill -9', 10_000, ctx);
  } finally {
    agent.kill('SIGKILL');
    await ha.endAsync();
    await broker.stop();
  }
});
