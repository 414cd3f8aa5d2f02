/**
 * Commands to devices (issue 19), end to end with real processes: a broker, the real
 * `topicast-agent` with shell-script actuators, and real clients — the SDK's request/reply,
 * `mosquitto_rr` with an MQTT 5 response topic, mqtt.js as an MQTT 5 responder.
 *
 * The actuator scripts record every run in a file, so "answered without running anything" is
 * checked by the program's own record, not by timing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import mqtt from 'mqtt';
import { connect, ClientErrorCode, type Client } from 'topicast';
import { startBroker, type BrokerProcess } from '../helpers/broker.js';
import { spawnAgent, type AgentProcess } from '../unit/sdk/agent/spawn-agent.js';

const run = promisify(execFile);
const haveRr = await run('sh', ['-c', 'command -v mosquitto_rr']).then(() => true, () => false);
if (!haveRr && process.env.CI) throw new Error('mosquitto_rr (mosquitto-clients) is required under CI');

const dir = mkdtempSync(join(tmpdir(), 'topicast-actuators-'));
const runs = join(dir, 'runs.log');

function script(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

/** Every run appends one line: the actuator name. */
const recordRun = `printf '%s\\n' "$TOPICAST_ACTUATOR" >> '${runs}'`;
const runCount = (): number => (existsSync(runs) ? readFileSync(runs, 'utf8').split('\n').filter(Boolean).length : 0);

type Info = { actuators?: unknown[] };

let broker: BrokerProcess;
let agent: AgentProcess;
let client: Client;

before(async () => {
  const led = script('led.sh', `${recordRun}\nprintf '%s\\n' "$TOPICAST_VALUE" > '${dir}/led'\ncat '${dir}/led'`);
  // Keeps the value exactly as received, from the environment and from stdin, as files.
  const echo = script('echo.sh', `${recordRun}\nprintf '%s' "$TOPICAST_VALUE" > '${dir}/env-value'\ncat > '${dir}/stdin-value'\nexit 0`);
  const flaky = script(
    'flaky.sh',
    `${recordRun}\ncase "$TOPICAST_VALUE" in\n  crash) kill -SEGV $$ ;;\n  fail) echo 'the relay is stuck' >&2; exit 3 ;;\n  hang) exec sleep 600 ;;\nesac\necho "$TOPICAST_VALUE"`,
  );
  // Holds a command until the test creates the release file (no timing): for the queue bound.
  const gate = script('gate.sh', `${recordRun}\nwhile [ ! -e '${dir}/release' ]; do sleep 0.05; done\necho "$TOPICAST_VALUE"`);
  const line = script(
    'line.sh',
    `while IFS= read -r v; do\n  ${recordRun}\n  case "$v" in\n    crash) exit 1 ;;\n    hang) sleep 600 ;;\n    bad) echo 'error: not today' ;;\n    *) echo "$v" ;;\n  esac\ndone`,
  );
  const config = {
    actuators: [
      { name: 'led', type: 'boolean', command: [led] },
      { name: 'fan', type: 'number', min: 0, max: 100, step: 5, unit: '%', command: `'${led}'` },
      { name: 'label', type: 'string', command: [echo] },
      { name: 'flaky', type: 'string', command: [flaky], timeoutSec: 1, maxPerSec: 100 },
      { name: 'line', type: 'string', mode: 'long-running', command: [line], timeoutSec: 1, maxPerSec: 100 },
      { name: 'gate', type: 'number', command: [gate], maxQueue: 1, timeoutSec: 60 },
      { name: 'burst', type: 'number', command: [gate], maxPerSec: 1, maxQueue: 20, timeoutSec: 60 },
    ],
  };
  writeFileSync(join(dir, 'agent.json'), JSON.stringify(config));
  broker = await startBroker();
  agent = spawnAgent(['--url', broker.url, '--id', 'act', '--readers', 'none', '--config', join(dir, 'agent.json'), '--log-level', 'debug']);
  client = await connect(broker.url);
  // Ready when info lists the actuators (the command subscription is made before info goes out).
  await new Promise<void>((resolve) => {
    void client.subscribe('devices/act/info', (info) => {
      if ((info as Info).actuators?.length === config.actuators.length) resolve();
    });
  });
});

after(async () => {
  await client?.close();
  agent?.kill('SIGKILL');
  await agent?.exited;
  rmSync(dir, { recursive: true, force: true });
});

test('SDK request/reply: the program switches, the answer carries the state, the state is retained', async () => {
  assert.deepEqual(await client.request('devices/act/set/led', true, { timeoutMs: 10_000 }), { ok: true, state: true });
  assert.equal(readFileSync(join(dir, 'led'), 'utf8'), 'true\n');
  assert.deepEqual(await client.request('devices/act/set/led', 'off'), { ok: true, state: false });
  assert.equal(readFileSync(join(dir, 'led'), 'utf8'), 'false\n');
  // A newcomer sees the confirmed state, retained.
  const fresh = await connect(broker.url);
  const state = await new Promise((resolve) => void fresh.subscribe('devices/act/led', (v, meta) => meta.retained && resolve(v)));
  assert.equal(state, false);
  await fresh.close();
  assert.deepEqual(await client.request('devices/act/set/fan', 35), { ok: true, state: 35 });
});

test('mosquitto_rr with an MQTT 5 response topic gets the answer as JSON', { skip: haveRr ? false : 'mosquitto_rr not installed' }, async () => {
  const rr = (topic: string, message: string) =>
    run('mosquitto_rr', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-V', '5', '-t', topic, '-e', 'replies/rr', '-m', message, '-W', '20']);
  assert.deepEqual(JSON.parse((await rr('devices/act/set/led', 'on')).stdout), { ok: true, state: true });
  assert.equal(readFileSync(join(dir, 'led'), 'utf8'), 'true\n');
  assert.deepEqual(JSON.parse((await rr('devices/act/set/fan', '200')).stdout), { ok: false, error: 'fan takes 0..100, got 200' });
});

test('values that look like shell injection reach the program as data only', async () => {
  const values = ['; rm -rf "$HOME"; touch pwned', `$(touch '${dir}/pwned')`, `\`touch '${dir}/pwned'\``, "it's\n; touch pwned\nnext line", '|| touch pwned &'];
  for (const v of values) {
    assert.deepEqual(await client.request('devices/act/set/label', v), { ok: true, state: v });
    assert.equal(readFileSync(join(dir, 'env-value'), 'utf8'), v, 'TOPICAST_VALUE holds the value as sent');
    assert.equal(readFileSync(join(dir, 'stdin-value'), 'utf8'), `${v}\n`, 'stdin holds the value as sent, then a newline');
  }
  assert.equal(existsSync(join(dir, 'pwned')), false);
  assert.equal(existsSync(join(process.cwd(), 'pwned')), false);
});

test('out of range, wrong type and unknown actuators are answered without running anything', async () => {
  await client.request('devices/act/set/led', true); // settle
  const before = runCount();
  assert.deepEqual(await client.request('devices/act/set/fan', 101), { ok: false, error: 'fan takes 0..100, got 101' });
  assert.deepEqual(await client.request('devices/act/set/fan', 33), { ok: false, error: 'fan takes steps of 5 from 0, got 33' });
  assert.deepEqual(await client.request('devices/act/set/fan', 'loud'), { ok: false, error: 'fan takes a number, got "loud"' });
  assert.deepEqual(await client.request('devices/act/set/led', 'maybe'), { ok: false, error: 'led takes true or false, got "maybe"' });
  const unknown = (await client.request('devices/act/set/toaster', 1)) as { ok: boolean; error: string };
  assert.equal(unknown.ok, false);
  assert.match(unknown.error, /^unknown actuator "toaster" \(known: led, fan, label, flaky, line, gate, burst\)$/);
  const multiline = (await client.request('devices/act/set/line', 'a\nb')) as { ok: boolean; error: string };
  assert.deepEqual(multiline, { ok: false, error: 'line reads one command per line: a value cannot hold a line break' });
  assert.equal(runCount(), before, 'no program ran');
});

test('a crashing, failing or hanging per-command program is answered with an error and the actuator keeps working', async () => {
  assert.deepEqual(await client.request('devices/act/set/flaky', 'crash'), { ok: false, error: 'exited with SIGSEGV' });
  assert.deepEqual(await client.request('devices/act/set/flaky', 'fail'), { ok: false, error: 'exited with code 3: the relay is stuck' });
  assert.deepEqual(await client.request('devices/act/set/flaky', 'hang'), { ok: false, error: 'timed out after 1 s' });
  assert.deepEqual(await client.request('devices/act/set/flaky', 'fine'), { ok: true, state: 'fine' });
});

test('a long-running line program: answers per line, errors, crash and hang recover with the next command', async () => {
  assert.deepEqual(await client.request('devices/act/set/line', 'one'), { ok: true, state: 'one' });
  assert.deepEqual(await client.request('devices/act/set/line', 'bad'), { ok: false, error: 'not today' });
  assert.deepEqual(await client.request('devices/act/set/line', 'two'), { ok: true, state: 'two' });
  const crash = (await client.request('devices/act/set/line', 'crash')) as { ok: boolean; error: string };
  assert.deepEqual(crash, { ok: false, error: 'exited with code 1' });
  assert.deepEqual(await client.request('devices/act/set/line', 'three'), { ok: true, state: 'three' }, 'restarted');
  assert.deepEqual(await client.request('devices/act/set/line', 'hang'), { ok: false, error: 'no answer within 1 s' });
  assert.deepEqual(await client.request('devices/act/set/line', 'four'), { ok: true, state: 'four' }, 'restarted after the hang');
});

test('queue bound and rate limit refuse commands without running them', async () => {
  rmSync(join(dir, 'release'), { force: true });
  // gate: one runs (held), one waits, the third finds the queue full.
  const first = client.request('devices/act/set/gate', 1, { timeoutMs: 60_000 });
  const second = client.request('devices/act/set/gate', 2, { timeoutMs: 60_000 });
  const third = await client.request('devices/act/set/gate', 3, { timeoutMs: 60_000 });
  assert.deepEqual(third, { ok: false, error: 'queue full: 1 commands for gate are waiting' });
  writeFileSync(join(dir, 'release'), '');
  assert.deepEqual(await first, { ok: true, state: 1 });
  assert.deepEqual(await second, { ok: true, state: 2 });
  // burst: 1 per second; five sent at once cannot all be accepted within the second the first took.
  const answers = (await Promise.all([1, 2, 3, 4, 5].map((n) => client.request('devices/act/set/burst', n, { timeoutMs: 60_000 })))) as { ok: boolean; error?: string }[];
  assert.equal(answers[0]!.ok, true);
  assert.ok(answers.some((a) => a.error === 'rate limited: burst takes at most 1 commands per second'), JSON.stringify(answers));
});

test('request without an answer times out with ClientErrorCode.timeout', async () => {
  await assert.rejects(client.request('nobody/answers', 1, { timeoutMs: 200 }), (e: Error & { code: number }) => e.code === ClientErrorCode.timeout && /no answer to the request on nobody\/answers within 200 ms/.test(e.message));
});

test('an SDK requester and an MQTT 5 responder (mqtt.js) interoperate; an SDK responder answers mosquitto_rr', async () => {
  const responder = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, clientId: 'responder' });
  responder.on('message', (_topic, payload, packet) => {
    const p = packet.properties!;
    responder.publish(p.responseTopic!, JSON.stringify({ doubled: Number(payload.toString()) * 2 }), { properties: { correlationData: p.correlationData, contentType: 'application/json' } });
  });
  await responder.subscribeAsync('svc/double');
  assert.deepEqual(await client.request('svc/double', 21), { doubled: 42 });
  await responder.endAsync();
  // The other way: mosquitto_rr asks, an SDK client answers with `reply`.
  await client.subscribe('svc/upper', (text, meta) => void client.reply(meta, String(text).toUpperCase()));
  if (haveRr) {
    const { stdout } = await run('mosquitto_rr', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-V', '5', '-t', 'svc/upper', '-e', 'replies/rr2', '-m', 'quiet', '-W', '20']);
    assert.equal(stdout.trim(), 'QUIET');
  }
});

test('an agent on the MQTT transport serves commands too (MQTT 5 response topic to an SDK requester)', async () => {
  const mqttAgent = spawnAgent(['--url', `mqtt://127.0.0.1:${broker.mqttPort}`, '--id', 'act-mqtt', '--readers', 'none', '--config', join(dir, 'agent.json')]);
  try {
    await new Promise<void>((resolve) => void client.subscribe('devices/act-mqtt/info', (info) => (info as Info).actuators && resolve()));
    assert.deepEqual(await client.request('devices/act-mqtt/set/fan', '40'), { ok: true, state: 40 });
    assert.deepEqual(await client.request('devices/act-mqtt/set/fan', -5), { ok: false, error: 'fan takes 0..100, got -5' });
    const retained = await connect(broker.url);
    assert.equal(await new Promise((resolve) => void retained.subscribe('devices/act-mqtt/fan', (v) => resolve(v))), 40);
    await retained.close();
  } finally {
    mqttAgent.kill('SIGTERM');
    await mqttAgent.exited;
  }
});

test('the agent stops its programs on SIGTERM and says offline', async () => {
  const a = spawnAgent(['--url', broker.url, '--id', 'act-stop', '--readers', 'none', '--config', join(dir, 'agent.json')]);
  await new Promise<void>((resolve) => void client.subscribe('devices/act-stop/info', (info) => (info as Info).actuators && resolve()));
  assert.deepEqual(await client.request('devices/act-stop/set/line', 'x'), { ok: true, state: 'x' }); // a long-running program is up
  a.kill('SIGTERM');
  assert.deepEqual(await a.exited, { code: 0, signal: null });
  const status = await connect(broker.url);
  assert.equal(await new Promise((resolve) => void status.subscribe('devices/act-stop/status', (v) => resolve(v))), 'offline');
  await status.close();
});
