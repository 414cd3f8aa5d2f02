/**
 * `topicast pub` / `topicast sub` against the real broker, and across protocols with
 * Debian's mosquitto clients: a reading published one way arrives the other way.
 */
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { BROKER_MAIN, startBroker, waitFor } from '../helpers/broker.js';

const run = promisify(execFile);

const children: ChildProcess[] = [];
after(() => {
  for (const c of children) c.kill('SIGKILL');
});

function subProcess(args: string[]): { lines: string[]; done: Promise<number | null> } {
  const child = spawn(process.execPath, [BROKER_MAIN, 'sub', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(child);
  const lines: string[] = [];
  let buf = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => {
    clearTimeout(timer);
    resolve(code);
  }));
  return { lines, done };
}

const hasMosquitto = spawnSync('which', ['mosquitto_pub']).status === 0;
if (!hasMosquitto && process.env.CI) throw new Error('mosquitto-clients is required in CI (apt-get install mosquitto-clients)');

test('topicast pub reaches topicast sub; values round-trip through the default codec; retained first', async () => {
  const broker = await startBroker();
  await run(process.execPath, [BROKER_MAIN, 'pub', '-t', 'devices/pi/info', '-m', '{"os":"linux"}', '-r', '--url', broker.url]);
  const sub = subProcess(['-t', 'devices/#', '-v', '-C', '3', '--url', broker.url]);
  await waitFor(() => sub.lines.length >= 1, 'the retained value');
  await run(process.execPath, [BROKER_MAIN, 'pub', '-t', 'devices/pi/temp', '-m', '48.2', '--url', broker.url]);
  await run(process.execPath, [BROKER_MAIN, 'pub', '-t', 'devices/pi/name', '-m', 'kitchen', '--url', broker.url]);
  assert.equal(await sub.done, 0);
  assert.deepEqual(sub.lines, ['devices/pi/info {"os":"linux"}', 'devices/pi/temp 48.2', 'devices/pi/name kitchen']);
});

test('pub and sub refuse bad usage with exit code 2', async () => {
  for (const args of [['pub', '-m', 'x'], ['pub', '-t', 'a'], ['sub'], ['sub', '-t', 'a', '--bogus']]) {
    const r = spawnSync(process.execPath, [BROKER_MAIN, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, args.join(' '));
    assert.match(r.stderr, /^topicast (pub|sub): /);
  }
});

test('across protocols: mosquitto_pub → topicast sub, topicast pub → mosquitto_sub', { skip: hasMosquitto ? false : 'mosquitto-clients not installed' }, async () => {
  const broker = await startBroker();
  const sub = subProcess(['-t', 'sensors/+', '-v', '-C', '1', '--codec', 'text', '--url', broker.url]);
  const msub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-t', 'sensors/#', '-v', '-C', '2', '-W', '10'], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(msub);
  let mout = '';
  msub.stdout.setEncoding('utf8').on('data', (d: string) => (mout += d));
  const mdone = new Promise<number | null>((resolve) => msub.on('exit', resolve));
  await waitFor(async () => /^topicast_subscriptions 2$/m.test(await (await fetch(`${broker.httpUrl}/metrics`)).text()), 'both subscribers subscribed', 10000);
  await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(broker.mqttPort), '-t', 'sensors/a', '-m', '21.5']);
  await run(process.execPath, [BROKER_MAIN, 'pub', '-t', 'sensors/b', '-m', 'hello', '--codec', 'text', '--url', broker.url]);
  assert.equal(await sub.done, 0);
  assert.deepEqual(sub.lines, ['sensors/a 21.5']);
  assert.equal(await mdone, 0);
  assert.equal(mout, 'sensors/a 21.5\nsensors/b hello\n');
});
