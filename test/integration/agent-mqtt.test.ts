// The MQTT transport against Debian's Mosquitto (started here on 127.0.0.1, ephemeral port, temp
// config): same behaviour as native — status, info, retained readings, will — with JSON text payloads.
// Then against Topicast's own MQTT listener, read back by a native SDK subscriber.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as tcpConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { connect } from 'topicast';
import { startBroker } from '../helpers/broker.js';
import { eventually, spawnAgent } from '../unit/sdk/agent/spawn-agent.js';

const MOSQUITTO = ['/usr/sbin/mosquitto', '/usr/bin/mosquitto'].find((p) => spawnSync(p, ['-h']).error === undefined);
const MOSQUITTO_SUB = spawnSync('mosquitto_sub', ['--help']).error === undefined;
const missing = !MOSQUITTO ? 'mosquitto is not installed (Debian package mosquitto)' : !MOSQUITTO_SUB ? 'mosquitto_sub is not installed (Debian package mosquitto-clients)' : undefined;
if (missing && process.env.CI) throw new Error(`${missing}; required in CI`);
if (missing) console.log(`# skipping the MQTT agent tests: ${missing}`);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

async function startMosquitto(): Promise<{ port: number; proc: ChildProcess; logs: string[]; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'agent-mosquitto-'));
  // A port picked by the kernel and released; mosquitto cannot listen on port 0. Retried on the rare collision.
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const conf = join(dir, 'mosquitto.conf');
    writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n`);
    const proc = spawn(MOSQUITTO!, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    const logs: string[] = [];
    proc.stderr!.setEncoding('utf8').on('data', (c: string) => logs.push(c));
    const exited = new Promise<void>((resolve) => proc.on('close', () => resolve()));
    const stop = async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
      rmSync(dir, { recursive: true, force: true });
    };
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && proc.exitCode === null && !(await canConnect(port))) await new Promise((r) => setTimeout(r, 25));
    if (proc.exitCode === null && (await canConnect(port))) return { port, proc, logs, stop };
    await stop();
  }
  throw new Error('mosquitto did not start');
}

function mosquittoSubOnce(port: number, topic: string): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), '-t', topic, '-C', '1', '-W', '5'], (err, stdout) => (err ? reject(err) : resolve(stdout.trim())));
  });
}

test('MQTT transport against Mosquitto: status, info, JSON readings, retained, will on kill -9, offline on SIGTERM', { skip: missing }, async () => {
  const broker = await startMosquitto();
  const id = `it-mqtt-${process.pid}`;
  const seen: { topic: string; text: string; retain: boolean }[] = [];
  const sub = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.port}`, { clientId: `sub-${process.pid}`, reconnectPeriod: 0 });
  sub.on('message', (topic, payload, packet) => seen.push({ topic, text: payload.toString('utf8'), retain: packet.retain }));
  await sub.subscribeAsync(`devices/${id}/#`);
  const last = (suffix: string) => [...seen].reverse().find((m) => m.topic === `devices/${id}/${suffix}`)?.text;
  let agent = spawnAgent(['--url', `mqtt://127.0.0.1:${broker.port}`, '--id', id, '--interval', '0.2']);
  const ctx = () => `agent:\n${agent.logs.join('\n')}\nmosquitto:\n${broker.logs.join('')}`;
  try {
    await eventually(() => last('status') === 'online', 'status online (plain text)', 10_000, ctx);
    await eventually(() => last('cpu/usage') !== undefined && last('load/1m') !== undefined, 'readings', 10_000, ctx);
    const info = JSON.parse(last('info')!) as { transport: string; sensors: { path: string; unit: string }[] };
    assert.equal(info.transport, 'mqtt');
    assert.ok(info.sensors.some((s) => s.path === 'load/1m'));
    const reading = JSON.parse(last('cpu/usage')!) as { value: number; unit: string; ts: number };
    assert.equal(reading.unit, '%');
    assert.equal(typeof reading.value, 'number');

    // Retained: a fresh mosquitto_sub gets the latest values at once.
    assert.equal(await mosquittoSubOnce(broker.port, `devices/${id}/status`), 'online');
    assert.match(await mosquittoSubOnce(broker.port, `devices/${id}/memory/usage`), /^\{"value":[\d.]+,"unit":"%","ts":\d+\}$/);

    agent.kill('SIGKILL');
    await eventually(() => last('status') === 'offline', 'the will: offline', 10_000, ctx);
    assert.equal(await mosquittoSubOnce(broker.port, `devices/${id}/status`), 'offline');

    // Restarted with bare numbers; then a clean stop publishes offline itself.
    seen.length = 0;
    agent = spawnAgent(['--url', `mqtt://127.0.0.1:${broker.port}`, '--id', id, '--interval', '0.2', '--payload', 'number']);
    await eventually(() => last('status') === 'online' && last('load/1m') !== undefined, 'online again', 10_000, ctx);
    assert.match(last('load/1m')!, /^\d+(\.\d+)?$/, 'a bare number is plain text like 0.52');
    agent.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0, ctx());
    await eventually(() => last('status') === 'offline', 'offline on SIGTERM', 10_000, ctx);
  } finally {
    agent.kill('SIGKILL');
    await sub.endAsync();
    await broker.stop();
  }
});

test("MQTT transport to Topicast's own MQTT listener; a native SDK subscriber reads the same JSON text", async () => {
  const mqttPort = await freePort();
  const broker = await startBroker({ args: ['--mqtt-port', String(mqttPort)] });
  const id = `it-tmqtt-${process.pid}`;
  const client = await connect(broker.url, { codec: 'text' });
  const seen: { topic: string; text: string }[] = [];
  await client.subscribe(`devices/${id}/#`, (text, meta) => {
    seen.push({ topic: meta.topic, text: String(text) });
  });
  const last = (suffix: string) => [...seen].reverse().find((m) => m.topic === `devices/${id}/${suffix}`)?.text;
  const agent = spawnAgent(['--url', `mqtt://127.0.0.1:${mqttPort}`, '--id', id, '--interval', '0.2']);
  const ctx = () => `agent:\n${agent.logs.join('\n')}\nbroker:\n${broker.logs.slice(-20).join('\n')}`;
  try {
    await eventually(() => last('status') === 'online' && last('memory/usage') !== undefined, 'status and readings across protocols', 10_000, ctx);
    assert.equal((JSON.parse(last('memory/usage')!) as { unit: string }).unit, '%');
    assert.equal((JSON.parse(last('info')!) as { transport: string }).transport, 'mqtt');
    agent.kill('SIGKILL');
    await eventually(() => last('status') === 'offline', "the MQTT will, delivered to a native subscriber", 10_000, ctx);
  } finally {
    agent.kill('SIGKILL');
    await client.close();
    await broker.stop();
  }
});
