/**
 * `topicast --agent`: the device agent inside the broker process. Readers and exec sensors publish
 * the same topics as topicast-agent; `devices/<id>/status` follows the broker's lifecycle and
 * survives restarts with --data (offline after a graceful stop, online again after a restart,
 * also after kill -9). `npm start` (broker/scripts/start-demo.js) is this mode, in one process.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { connect, type Client } from 'topicast';
import { BROKER_MAIN, startBroker, type BrokerProcess } from '../helpers/broker.js';
import { eventually } from '../unit/sdk/agent/spawn-agent.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-broker-agent-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Seen {
  topic: string;
  value: unknown;
  retained: boolean;
}

async function watch(url: string, filter: string): Promise<{ client: Client; seen: Seen[]; last(path: string): Seen | undefined }> {
  const client = await connect(url);
  const seen: Seen[] = [];
  const sub = await client.subscribe(filter, (value, meta) => {
    seen.push({ topic: meta.topic, value, retained: meta.retained });
  });
  await sub.snapshot;
  const last = (suffix: string) => {
    for (let i = seen.length - 1; i >= 0; i--) if (seen[i]!.topic.endsWith(`/${suffix}`)) return seen[i];
    return undefined;
  };
  return { client, seen, last };
}

const config = join(dir, 'topicast.json');
writeFileSync(config, JSON.stringify({
  agent: {
    id: 'board',
    intervalSec: 0.5,
    readers: ['memory', 'uptime', 'load'],
    exec: [{ name: 'lux', command: 'echo 42', intervalSec: 0.5, unit: 'lx' }],
  },
}));

test('--agent: readings, exec sensors and info from inside the broker; status offline after a graceful stop, online after restarts and after kill -9', async () => {
  const data = join(dir, 'data');
  const withAgent = ['--config', config, '--data', data];
  let broker: BrokerProcess = await startBroker({ args: withAgent });
  let sub = await watch(broker.url, 'devices/board/#');
  const ctx = () => `seen: ${sub.seen.map((s) => s.topic).join(' ')}\nbroker log:\n${broker.logs.join('\n')}`;
  try {
    await eventually(() => sub.last('status')?.value === 'online', 'status online', 20_000, ctx);
    await eventually(() => sub.last('memory/usage') !== undefined && sub.last('exec/lux') !== undefined, 'a reader and the exec sensor', 20_000, ctx);
    const lux = sub.last('exec/lux')!.value as { value: number; unit: string; ts: number };
    assert.equal(lux.value, 42);
    assert.equal(lux.unit, 'lx');
    const info = sub.last('info')!.value as { transport: string; sensors: { path: string }[] };
    assert.equal(info.transport, 'in-process');
    assert.ok(info.sensors.some((s) => s.path === 'exec/lux'), 'info lists the exec sensor');
    assert.ok(broker.logs.some((l) => l.includes('agent in-process')), 'the broker logs the agent');
    // MQTT subscribers read the readings as JSON, as from a separate agent (the payload is tagged MessagePack).
    const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { reconnectPeriod: 0 });
    const viaMqtt = new Promise<string>((resolve) => m.on('message', (_t, payload) => resolve(payload.toString())));
    await m.subscribeAsync('devices/board/exec/lux');
    assert.equal((JSON.parse(await viaMqtt) as { value: number }).value, 42);
    await m.endAsync();

    // Graceful stop: the subscriber still connected sees `offline`, and it is on disk.
    const stopped = broker.stop();
    await eventually(() => sub.last('status')?.value === 'offline', 'status offline before the connection closes', 20_000, ctx);
    await stopped;
    await sub.client.close();

    broker = await startBroker({ args: ['--data', data] }); // no agent: what the store says
    sub = await watch(broker.url, 'devices/board/status');
    assert.deepEqual(sub.seen, [{ topic: 'devices/board/status', value: 'offline', retained: true }], 'offline persisted by the graceful stop');
    await sub.client.close();
    await broker.stop();

    broker = await startBroker({ args: withAgent });
    sub = await watch(broker.url, 'devices/board/#');
    await eventually(() => sub.last('status')?.value === 'online' && sub.last('exec/lux') !== undefined, 'online again after a restart', 20_000, ctx);
    await sub.client.close();

    broker.kill('SIGKILL');
    await broker.exited;
    const killedAt = Date.now();
    broker = await startBroker({ args: withAgent });
    sub = await watch(broker.url, 'devices/board/#');
    await eventually(() => sub.last('status')?.value === 'online', 'online after kill -9 and restart', 20_000, ctx);
    await eventually(() => ((sub.last('exec/lux')?.value as { ts?: number } | undefined)?.ts ?? 0) >= killedAt, 'fresh readings after kill -9', 20_000, ctx);
  } finally {
    await sub.client.close();
    await broker.stop();
  }
});

test('TOPICAST_AGENT=1 turns the agent on; TOPICAST_AGENT_* variables configure it', async () => {
  const broker = await startBroker({ env: { TOPICAST_AGENT: '1', TOPICAST_AGENT_ID: 'from-env', TOPICAST_AGENT_READERS: 'uptime', TOPICAST_AGENT_INTERVAL: '0.5' } });
  const sub = await watch(broker.url, 'devices/from-env/#');
  try {
    await eventually(() => sub.last('status')?.value === 'online' && sub.last('uptime') !== undefined, 'status and uptime', 20_000, () => `${sub.seen.map((s) => s.topic).join(' ')}\n${broker.logs.join('\n')}`);
    assert.ok(!sub.seen.some((s) => s.topic.includes('/memory/')), 'only the readers asked for');
  } finally {
    await sub.client.close();
    await broker.stop();
  }
});

test('--agent: a bad agent setting stops start-up with exit code 2 and one line naming it', async () => {
  const cases: [object, RegExp][] = [
    [{ agent: { intervalSec: 'often' } }, /"often".*agent: intervalSec/],
    [{ agent: { url: 'ws://elsewhere:8080/ws' } }, /agent.*"url" does not apply/],
    [{ agent: { readers: ['cpu', 'gpu'] } }, /unknown reader "gpu"/],
  ];
  for (const [i, [file, mentions]] of cases.entries()) {
    const path = join(dir, `bad-${i}.json`);
    writeFileSync(path, JSON.stringify(file));
    const proc = spawn(process.execPath, [BROKER_MAIN, '--host', '127.0.0.1', '--port', '0', '--mqtt-port', '0', '--config', path], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const code = await new Promise<number | null>((resolve) => proc.on('close', resolve));
    assert.equal(code, 2, stderr);
    const lines = stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, JSON.stringify(stderr));
    assert.match(lines[0]!, /^topicast: /);
    assert.match(lines[0]!, mentions);
  }
});

test('npm start (broker/scripts/start-demo.js): one Node process, the agent inside it publishing this machine', async () => {
  const demo = fileURLToPath(new URL('../../../broker/scripts/start-demo.js', import.meta.url));
  const broker = await startBroker({ command: [demo], env: { TOPICAST_PORT: '0', TOPICAST_MQTT_PORT: '0', TOPICAST_AGENT_ID: 'demo' }, mqttOff: true });
  const sub = await watch(broker.url, 'devices/demo/#');
  try {
    await eventually(() => sub.last('status')?.value === 'online' && sub.last('memory/usage') !== undefined, 'the demo device online with readings', 20_000);
    const children = execFileSync('ps', ['-e', '-o', 'ppid=,comm='], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.trim().split(/\s+/)[0] === String(broker.proc.pid));
    assert.deepEqual(children, [], 'no child processes');
  } finally {
    await sub.client.close();
    await broker.stop();
  }
});

test('--agent: actuators inside the broker answer an SDK request and an MQTT 5 request, and publish their state', async () => {
  const file = join(dir, 'actuators.json');
  writeFileSync(file, JSON.stringify({ agent: { id: 'act', readers: [], actuators: [{ name: 'led', type: 'boolean', command: 'echo "$TOPICAST_VALUE"' }] } }));
  const broker = await startBroker({ args: ['--config', file] });
  const client = await connect(broker.url);
  try {
    const state = await watch(broker.url, 'devices/act/led');
    const result = await client.request('devices/act/set/led', true, { timeoutMs: 10_000 });
    assert.deepEqual(result, { ok: true, state: true });
    await eventually(() => state.last('led')?.value === true, 'the state topic', 10_000);
    await state.client.close();
    // MQTT 5 request/response through the same router.
    const m = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { reconnectPeriod: 0, protocolVersion: 5 });
    const answer = new Promise<{ payload: string; correlation: string | undefined }>((resolve) =>
      m.on('message', (_t, payload, packet) => resolve({ payload: payload.toString(), correlation: packet.properties?.correlationData?.toString() })));
    await m.subscribeAsync('replies/me');
    await m.publishAsync('devices/act/set/led', 'false', { properties: { responseTopic: 'replies/me', correlationData: Buffer.from('c-1') } });
    const got = await answer;
    assert.deepEqual(JSON.parse(got.payload), { ok: true, state: false });
    assert.equal(got.correlation, 'c-1');
    await m.endAsync();
  } finally {
    await client.close();
    await broker.stop();
  }
});
