// End to end over the native protocol: topicast-agent process → broker process → SDK subscriber.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Client } from 'topicast';
import { startBroker } from '../helpers/broker.js';
import { eventually, spawnAgent } from '../unit/sdk/agent/spawn-agent.js';

interface Seen {
  topic: string;
  value: unknown;
  retained: boolean;
}

async function watch(url: string, filter: string): Promise<{ client: Client; seen: Seen[]; last(path: string): unknown }> {
  const client = await connect(url);
  const seen: Seen[] = [];
  await client.subscribe(filter, (value, meta) => {
    seen.push({ topic: meta.topic, value, retained: meta.retained });
  });
  const last = (suffix: string) => {
    for (let i = seen.length - 1; i >= 0; i--) if (seen[i]!.topic.endsWith(`/${suffix}`)) return seen[i]!.value;
    return undefined;
  };
  return { client, seen, last };
}

const uniqueId = (name: string) => `${name}-${process.pid}-${Math.floor(Math.random() * 1e6)}`;

test('the subscriber sees status online, info with units and live readings; kill -9 makes the will say offline', async () => {
  const broker = await startBroker();
  const id = uniqueId('it-native');
  const sub = await watch(broker.url, `devices/${id}/#`);
  const agent = spawnAgent(['--url', broker.url, '--id', id, '--interval', '0.2', '--log-level', 'debug']);
  try {
    const ctx = () => `agent log:\n${agent.logs.join('\n')}\nseen: ${sub.seen.map((s) => s.topic).join(' ')}`;
    await eventually(() => sub.last('status') === 'online', 'status online', 10_000, ctx);
    await eventually(() => sub.last('cpu/usage') !== undefined && sub.last('memory/usage') !== undefined, 'cpu and memory readings', 10_000, ctx);
    const info = sub.last('info') as { hostname: string; os: string; arch: string; agentVersion: string; sensors: { path: string; unit: string }[] };
    assert.equal(info.arch, process.arch);
    assert.match(info.os, /^Linux /);
    assert.match(info.agentVersion, /^\d+\.\d+\.\d+/);
    assert.ok(info.sensors.some((s) => s.path === 'memory/usage' && s.unit === '%'), JSON.stringify(info.sensors));
    const cpu = sub.last('cpu/usage') as { value: number; unit: string; ts: number };
    assert.equal(cpu.unit, '%');
    assert.ok(cpu.value >= 0 && cpu.value <= 100);
    assert.ok(Math.abs(cpu.ts - Date.now()) < 60_000);
    const order = sub.seen.map((s) => s.topic.slice(`devices/${id}/`.length));
    assert.deepEqual(order.slice(0, 2), ['status', 'info'], 'status and info come before any reading');

    agent.kill('SIGKILL');
    await eventually(() => sub.last('status') === 'offline', 'the will: status offline', 10_000, ctx);
    assert.equal((await agent.exited).signal, 'SIGKILL');

    // A dashboard opened later sees the retained offline status and the last readings at once.
    const late = await watch(broker.url, `devices/${id}/#`);
    try {
      await eventually(() => late.last('status') === 'offline' && late.last('memory/usage') !== undefined, 'retained status and readings');
      assert.ok(late.seen.every((s) => s.retained));
    } finally {
      await late.client.close();
    }
  } finally {
    agent.kill('SIGKILL');
    await sub.client.close();
    await broker.stop();
  }
});

test('SIGTERM: the agent publishes status offline itself and exits 0', async () => {
  const broker = await startBroker();
  const id = uniqueId('it-term');
  const sub = await watch(broker.url, `devices/${id}/status`);
  const agent = spawnAgent(['--url', broker.url, '--id', id, '--interval', '1']);
  try {
    await eventually(() => sub.last('status') === 'online', 'status online', 10_000, () => agent.logs.join('\n'));
    agent.kill('SIGTERM');
    const { code } = await agent.exited;
    assert.equal(code, 0, agent.logs.join('\n'));
    await eventually(() => sub.last('status') === 'offline', 'status offline');
    assert.deepEqual(
      sub.seen.map((s) => s.value),
      ['online', 'offline'],
    );
  } finally {
    agent.kill('SIGKILL');
    await sub.client.close();
    await broker.stop();
  }
});

test('an agent started before its broker keeps trying, then announces itself and publishes', async () => {
  const first = await startBroker();
  const port = first.port;
  await first.stop(); // nothing listens on this port now
  const id = uniqueId('it-early');
  const agent = spawnAgent(['--url', `ws://127.0.0.1:${port}/ws`, '--id', id, '--interval', '0.5']);
  try {
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(agent.proc.exitCode, null, 'the agent does not give up while the broker is away');
    const broker = await startBroker({ port });
    const sub = await watch(broker.url, `devices/${id}/#`);
    try {
      await eventually(() => sub.last('status') === 'online' && sub.last('load/1m') !== undefined, 'status and readings after the broker came up', 20_000, () => agent.logs.join('\n'));
    } finally {
      await sub.client.close();
      await broker.stop();
    }
  } finally {
    agent.kill('SIGKILL');
  }
});

test('exec sensors from the config file reach the subscriber; a crashing one is restarted and its stderr logged', async () => {
  const broker = await startBroker();
  const id = uniqueId('it-exec');
  const dir = mkdtempSync(join(tmpdir(), 'agent-exec-'));
  const config = join(dir, 'agent.json');
  writeFileSync(
    config,
    JSON.stringify({
      readers: [],
      exec: [
        { name: 'dht', command: `echo '{"temperature": 21.5, "humidity": 40}'`, intervalSec: 0.3, unit: '' },
        { name: 'counter', command: 'i=0; while [ $i -lt 1000 ]; do i=$((i+1)); echo "count $i"; sleep 0.1; done' },
        { name: 'broken', command: 'echo failing >&2; exit 1', restart: { minDelaySec: 0.1, maxDelaySec: 0.2 } },
      ],
      sensors: { 'exec/counter/#': { threshold: -1 } },
    }),
  );
  const sub = await watch(broker.url, `devices/${id}/#`);
  const agent = spawnAgent(['--url', broker.url, '--id', id, '--config', config]);
  const ctx = () => `agent log:\n${agent.logs.join('\n')}`;
  try {
    await eventually(() => sub.last('exec/dht/temperature') !== undefined && sub.last('exec/dht/humidity') !== undefined, 'the periodic exec sensor', 10_000, ctx);
    assert.deepEqual((sub.last('exec/dht/temperature') as { value: number }).value, 21.5);
    await eventually(() => ((sub.last('exec/counter/count') as { value: number } | undefined)?.value ?? 0) >= 3, 'the long-running exec sensor', 10_000, ctx);
    await eventually(() => agent.logs.filter((l) => l === 'warn exec broken: failing').length >= 3, 'restarts of the broken program', 10_000, ctx);
    const info = sub.last('info') as { sensors: { path: string }[] };
    assert.ok(info.sensors.some((s) => s.path === 'exec/broken'), 'declared exec sensors are listed before they print anything');
    agent.kill('SIGTERM');
    assert.equal((await agent.exited).code, 0, ctx());
  } finally {
    agent.kill('SIGKILL');
    await sub.client.close();
    await broker.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('failover to a second broker with an empty retained store: status, info and every reading arrive there', async () => {
  // (A restart on the same port would show the same, but a TIME_WAIT left by the first broker keeps
  // the port from being bound again for a minute in this environment, so the second broker has its own.)
  const a = await startBroker();
  const b = await startBroker();
  const id = uniqueId('it-failover');
  const agent = spawnAgent(['--url', `${a.url},${b.url}`, '--id', id, '--interval', '1', '--max-age', '600']);
  const onB = await watch(b.url, `devices/${id}/#`);
  try {
    const onA = await watch(a.url, `devices/${id}/#`);
    await eventually(() => onA.last('status') === 'online' && onA.last('memory/total') !== undefined, 'the agent on the first broker', 10_000, () => agent.logs.join('\n'));
    await onA.client.close();
    assert.equal(onB.seen.length, 0);
    await a.stop();
    // memory/total does not change and max-age is 10 minutes: only the reconnect can bring it here.
    await eventually(() => onB.last('status') === 'online' && onB.last('memory/total') !== undefined && onB.last('info') !== undefined, 'status, info and unchanged readings on the second broker', 20_000, () => agent.logs.join('\n'));
  } finally {
    agent.kill('SIGKILL');
    await onB.client.close();
    await b.stop();
  }
});
