/** A second broker on a port in use must refuse to start, not silently share the port (SO_REUSEPORT). */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { BROKER_MAIN, freePort, startBroker } from '../helpers/broker.js';

test('a port in use stops start-up with a clear line', async () => {
  const port = await freePort();
  const first = await startBroker({ port });
  const second = spawnSync(process.execPath, [BROKER_MAIN, '--host', '127.0.0.1', '--port', String(port), '--mqtt-port', '0'], { encoding: 'utf8', timeout: 10000 });
  assert.equal(second.status, 1);
  assert.match(second.stderr, new RegExp(`^topicast: cannot listen on 127\\.0\\.0\\.1:${port}`, 'm'));
  const r = await fetch(`${first.httpUrl}/healthz`);
  assert.equal(r.status, 200, 'the first broker still serves');
});
