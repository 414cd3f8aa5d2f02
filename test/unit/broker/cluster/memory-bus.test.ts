/** The bus contract against the in-memory bus (cluster/memory-bus.ts), plus its own simulation knobs. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as MemoryBusModule from '../../../../broker/src/cluster/memory-bus.js';
import { busMessage, Recorder, runBusContract } from './bus-contract.js';

const { MemoryBusHub } = (await import(new URL('../../../../../broker/dist/cluster/memory-bus.js', import.meta.url).href)) as typeof MemoryBusModule;

runBusContract('memory bus', async (n) => {
  const hub = new MemoryBusHub();
  const buses = Array.from({ length: n }, (_, i) => hub.createNode(`node-${i}`));
  return {
    buses,
    kill: async (i) => hub.kill(buses[i]!.nodeId),
    setDown: async (down) => hub.setDown(down),
    close: async () => {
      for (const b of buses) await b.close();
    },
  };
}, { timeoutMs: 2000, quietMs: 30 });

test('memory bus: wills of a node killed while no survivor runs wait for the next node to start', async () => {
  const hub = new MemoryBusHub();
  const a = hub.createNode('a');
  await a.start(new Recorder());
  await a.setWill('k', busMessage('s/a', 'offline'));
  hub.kill('a');
  const b = hub.createNode('b');
  const rb = new Recorder();
  await b.start(rb);
  await rb.until(() => rb.wills.length === 1, 1000, 'the orphan will');
  assert.equal(rb.wills[0]!.owner, 'a');
  await assert.rejects(a.publish(busMessage('x', 'y')), { name: 'BusUnavailableError' });
  await b.close();
});

test('memory bus: a killed node id cannot be reused while alive, and can after', () => {
  const hub = new MemoryBusHub();
  hub.createNode('a');
  assert.throws(() => hub.createNode('a'), /already in use/);
  hub.kill('a');
  hub.createNode('a');
});
