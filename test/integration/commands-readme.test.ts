/**
 * The README's "Commands to devices" and "Home Assistant" sections work as written: the shell block
 * runs as is (with `topicast-agent` on the PATH and the broker's address in TOPICAST_AGENT_URL), each
 * mosquitto line prints what its comment says (the broker's address in the clients' own config
 * files, $XDG_CONFIG_HOME/mosquitto_rr etc.), the SDK line resolves to what its comment says, and
 * the `--homeassistant` line publishes discovery configs.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { connect, type Client } from 'topicast';
import { startBroker } from '../helpers/broker.js';
import { AGENT_CLI, eventually } from '../unit/sdk/agent/spawn-agent.js';

const run = promisify(execFile);
const haveClients = await run('sh', ['-c', 'command -v mosquitto_rr && command -v mosquitto_sub']).then(() => true, () => false);
if (!haveClients && process.env.CI) throw new Error('mosquitto-clients is required under CI');

const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
function section(title: string): string {
  const start = readme.indexOf(`## ${title}\n`);
  assert.ok(start >= 0, `README section ${title}`);
  return readme.slice(start, readme.indexOf('\n## ', start + 3));
}
function blocks(text: string, lang: string): string[] {
  return [...text.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))].map((m) => m[1]!);
}

const dir = mkdtempSync(join(tmpdir(), 'topicast-readme-cmd-'));
const bin = join(dir, 'bin');
const xdg = join(dir, 'xdg');
const work = join(dir, 'work');
after(() => rmSync(dir, { recursive: true, force: true }));

test('Commands to devices, as written: the script actuator, the mosquitto_rr/pub/sub lines, the SDK request', { skip: haveClients ? false : 'mosquitto-clients not installed' }, async () => {
  const commands = section('Commands to devices');
  const [setup, clients] = blocks(commands, 'sh');
  const [sdkLine] = blocks(commands, 'ts');
  assert.ok(setup && clients && sdkLine);
  const broker = await startBroker();
  for (const d of [bin, xdg, work]) mkdirSync(d, { recursive: true });
  writeFileSync(join(bin, 'topicast-agent'), `#!/bin/sh\nexec '${process.execPath}' '${AGENT_CLI}' "$@"\n`);
  chmodSync(join(bin, 'topicast-agent'), 0o755);
  for (const tool of ['mosquitto_rr', 'mosquitto_pub', 'mosquitto_sub']) writeFileSync(join(xdg, tool), `-h 127.0.0.1\n-p ${broker.mqttPort}\n`);
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, TOPICAST_AGENT_URL: broker.url, TOPICAST_AGENT_READERS: 'none', XDG_CONFIG_HOME: xdg };
  const agent = spawn('sh', ['-c', setup], { cwd: work, env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let agentLog = '';
  agent.stderr!.on('data', (d: Buffer) => (agentLog += d.toString()));
  let client: Client | undefined;
  try {
    client = await connect(broker.url);
    let actuators = 0;
    let led: unknown;
    await client.subscribe('devices/pi-01/info', (info) => (actuators = ((info as { actuators?: unknown[] }).actuators ?? []).length));
    await client.subscribe('devices/pi-01/led', (v) => (led = v));
    await eventually(() => actuators === 2, 'the agent of the README with its two actuators', 20_000, () => agentLog);

    for (const line of clients.trim().split('\n')) {
      const hash = line.indexOf('#');
      const command = line.slice(0, hash).trim();
      const expected = line.slice(hash + 1).trim();
      const { stdout } = await run('sh', ['-c', command.startsWith('mosquitto_rr') ? `${command} -W 20` : command], { cwd: work, env, timeout: 30_000 });
      if (command.startsWith('mosquitto_pub')) {
        await eventually(() => led === false, 'the state after the mosquitto_pub command', 10_000, () => agentLog);
        continue;
      }
      assert.equal(stdout.trim(), expected, command);
    }
    assert.equal(readFileSync(join(work, 'led.state'), 'utf8'), '0\n', 'led.sh wrote the file');

    // The SDK fragment, run as written with a connected client.
    const AsyncFunction = Object.getPrototypeOf(async () => {}).constructor as new (...args: string[]) => (c: Client) => Promise<unknown>;
    const result = await new AsyncFunction('client', `${sdkLine}\nreturn result;`)(client);
    assert.deepEqual(result, { ok: true, state: true });
    assert.match(sdkLine, /\/\/ \{ ok: true, state: true \}/);
    assert.equal(readFileSync(join(work, 'led.state'), 'utf8'), '1\n');
    // The fan's shell command line takes the value from the environment, as data.
    assert.deepEqual(await client.request('devices/pi-01/set/fan', 45), { ok: true, state: 45 });
    assert.equal(readFileSync(join(work, 'fan.state'), 'utf8'), '45\n');
  } finally {
    await client?.close();
    try {
      process.kill(-agent.pid!, 'SIGTERM');
    } catch {
      // gone already
    }
    await new Promise((resolve) => (agent.exitCode !== null ? resolve(undefined) : agent.once('exit', resolve)));
    await broker.stop();
  }
});

test('Commands to devices: the token file lets the operator command and refuses the viewer', async () => {
  const [json] = blocks(section('Commands to devices'), 'json');
  assert.ok(json);
  const file = join(dir, 'tokens.json');
  writeFileSync(file, json);
  const tokens = (JSON.parse(json) as { tokens: { token: string; sub: string }[] }).tokens;
  const token = (sub: string) => tokens.find((t) => t.sub === sub)!.token;
  mkdirSync(work, { recursive: true });
  writeFileSync(join(dir, 'agent-sec.json'), JSON.stringify({ actuators: [{ name: 'led', type: 'boolean', command: 'echo "$TOPICAST_VALUE"' }] }));
  const broker = await startBroker({ args: ['--auth-token-file', file] });
  const agent = spawn(process.execPath, [AGENT_CLI, '--url', broker.url, '--id', 'pi-01', '--token', token('pi-01'), '--readers', 'none', '--config', join(dir, 'agent-sec.json')], { stdio: 'ignore' });
  const operator = await connect(broker.url, { token: token('operator') });
  const viewer = await connect(broker.url, { token: token('viewer') });
  try {
    await new Promise<void>((resolve) => void operator.subscribe('devices/pi-01/info', (info) => (info as { actuators?: unknown }).actuators && resolve()));
    assert.deepEqual(await operator.request('devices/pi-01/set/led', true), { ok: true, state: true });
    await assert.rejects(viewer.request('devices/pi-01/set/led', false), /not authorized to publish to "devices\/pi-01\/set\/led"/);
    const v5 = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, username: 'viewer', password: token('viewer') });
    await assert.rejects(v5.publishAsync('devices/pi-01/set/led', 'false', { qos: 1 }), (e: Error & { code?: number }) => e.code === 0x87);
    await v5.endAsync();
    const http = await fetch(`${broker.httpUrl}/api/publish/devices/pi-01/set/led`, { method: 'POST', headers: { Authorization: `Bearer ${token('viewer')}` }, body: 'false' });
    assert.equal(http.status, 403);
  } finally {
    await operator.close();
    await viewer.close();
    agent.kill('SIGTERM');
    await new Promise((resolve) => (agent.exitCode !== null ? resolve(undefined) : agent.once('exit', resolve)));
    await broker.stop();
  }
});

test('Home Assistant, as written: topicast-agent --id pi-01 --homeassistant publishes discovery configs', async () => {
  const [line] = blocks(section('Home Assistant'), 'sh');
  assert.equal(line!.trim(), 'topicast-agent --id pi-01 --homeassistant');
  const broker = await startBroker();
  for (const d of [bin, work]) mkdirSync(d, { recursive: true });
  writeFileSync(join(bin, 'topicast-agent'), `#!/bin/sh\nexec '${process.execPath}' '${AGENT_CLI}' "$@"\n`);
  chmodSync(join(bin, 'topicast-agent'), 0o755);
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH}`, TOPICAST_AGENT_URL: broker.url, TOPICAST_AGENT_READERS: 'memory' };
  const agent = spawn('sh', ['-c', line!], { cwd: work, env, stdio: 'ignore', detached: true });
  const ha = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`);
  try {
    const configs = new Map<string, { [k: string]: unknown }>();
    ha.on('message', (topic, payload) => configs.set(topic, JSON.parse(payload.toString()) as { [k: string]: unknown }));
    await ha.subscribeAsync('homeassistant/#');
    await eventually(() => configs.has('homeassistant/sensor/pi-01_memory_used/config'), 'a discovery config', 20_000, () => [...configs.keys()].join('\n'));
    const c = configs.get('homeassistant/sensor/pi-01_memory_used/config')!;
    assert.equal(c.unique_id, 'topicast_pi-01_memory_used');
    assert.equal(c.availability_topic, 'devices/pi-01/status');
  } finally {
    await ha.endAsync();
    try {
      process.kill(-agent.pid!, 'SIGTERM');
    } catch {
      // gone already
    }
    await new Promise((resolve) => (agent.exitCode !== null ? resolve(undefined) : agent.once('exit', resolve)));
    await broker.stop();
  }
});
