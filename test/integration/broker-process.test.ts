/**
 * The broker as a process: bad configuration stops start-up with exit code 2
 * and one line naming the setting (flag, env, config file); SIGTERM closes every
 * client with 1001 and exits 0 within the shutdown bound; settings from the
 * config file, env and flags take effect with flags winning.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CloseCode, Op } from 'topicast/protocol';
import { BROKER_MAIN, startBroker } from '../helpers/broker.js';
import { isDelivery, NativeClient, scrapeMetrics, text, within } from '../helpers/native-client.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-proc-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs the broker expecting it to exit on its own (bad configuration); killed after 20 s. */
function run(args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, [BROKER_MAIN, '--host', '127.0.0.1', '--port', '0', '--mqtt-port', '0', ...args], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    proc.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000); // generous: start-up on a starved machine
    proc.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

const badFile = join(dir, 'bad.json');
writeFileSync(badFile, '{ "maxTopicLevels": 4, ');
const badValueFile = join(dir, 'bad-value.json');
writeFileSync(badValueFile, JSON.stringify({ maxPayloadBytes: 'lots' }));
const unknownKeyFile = join(dir, 'unknown-key.json');
writeFileSync(unknownKeyFile, JSON.stringify({ maxPayloadByte: 10 }));

const CASES: { name: string; args?: string[]; env?: Record<string, string>; mentions: RegExp }[] = [
  { name: 'a bad flag value', args: ['--max-payload-bytes', 'big'], mentions: /--max-payload-bytes.*"big"/ },
  { name: 'a flag value out of range', args: ['--max-topic-levels', '0'], mentions: /--max-topic-levels.*0/ },
  { name: 'a bad enum value', args: ['--slow-consumer-policy', 'ignore'], mentions: /--slow-consumer-policy.*"ignore".*drop, conflate, disconnect/ },
  { name: 'a flag without its value', args: ['--max-connections'], mentions: /--max-connections/ },
  { name: 'an unknown flag', args: ['--no-such-flag', '1'], mentions: /--no-such-flag/ },
  { name: 'a stray positional argument', args: ['extra'], mentions: /extra/ },
  { name: 'a bad env variable', env: { TOPICAST_PORT: 'abc' }, args: [], mentions: /TOPICAST_PORT.*"abc"/ },
  { name: 'an idle timeout uWS cannot do', args: ['--idle-timeout-sec', '5'], mentions: /idleTimeoutSec.*5/ },
  { name: 'a config file that is not JSON', args: ['--config', badFile], mentions: /--config.*bad\.json/ },
  { name: 'a missing config file', args: ['--config', join(dir, 'missing.json')], mentions: /--config.*missing\.json/ },
  { name: 'a bad value in the config file', args: ['--config', badValueFile], mentions: /"maxPayloadBytes".*"lots"/ },
  { name: 'an unknown key in the config file', args: ['--config', unknownKeyFile], mentions: /"maxPayloadByte"/ },
];

test('bad configuration: exit code 2 and exactly one line naming the setting', async () => {
  // Four at a time: each is a process start-up.
  const runs: Run[] = [];
  for (let i = 0; i < CASES.length; i += 4) runs.push(...(await Promise.all(CASES.slice(i, i + 4).map((c) => run(c.args ?? [], c.env)))));
  for (const [i, c] of CASES.entries()) {
    const r = runs[i]!;
    assert.equal(r.code, 2, `${c.name}: exit code ${r.code} (signal ${r.signal}); stderr ${r.stderr}; stdout ${r.stdout.slice(0, 300)}`);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, `${c.name}: one line, got ${JSON.stringify(r.stderr)}`);
    assert.match(lines[0]!, c.mentions, c.name);
    assert.ok(!r.stdout.includes('"listening"'), `${c.name}: never listened`);
  }
});

test('a bad auth setting exits 2 like every other bad setting: one line naming it (auth/index.ts throws the one ConfigError)', async () => {
  const cases = [
    { args: ['--auth-token-file', join(dir, 'no-tokens.json')], mentions: /^topicast: invalid setting authTokenFile: .*no-tokens\.json/ },
    { args: ['--auth-jwt-algorithms', 'XX999'], mentions: /^topicast: invalid setting authJwtAlgorithms: "XX999"/ },
    { args: ['--auth-jwt-audience', 'me'], mentions: /^topicast: invalid setting authJwtAudience\/authJwtIssuer/ },
  ];
  const runs = await Promise.all(cases.map((c) => run(c.args)));
  for (const [i, c] of cases.entries()) {
    const r = runs[i]!;
    assert.equal(r.code, 2, `${c.args.join(' ')}: exit code ${r.code} (signal ${r.signal}); stderr ${r.stderr}`);
    const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
    assert.equal(lines.length, 1, `${c.args.join(' ')}: one line, got ${JSON.stringify(r.stderr)}`);
    assert.match(lines[0]!, c.mentions);
    assert.doesNotMatch(r.stdout, /"stack"|\n\s+at /, 'no stack trace');
  }
});

test('configuration precedence: file < env < flag, and each takes effect', async () => {
  const file = join(dir, 'good.json');
  writeFileSync(file, JSON.stringify({ maxPayloadBytes: 1111, maxTopicLevels: 3, idleTimeoutSec: 16 }));
  const b = await startBroker({ args: ['--config', file, '--max-payload-bytes', '3333'], env: { TOPICAST_MAX_PAYLOAD_BYTES: '2222', TOPICAST_IDLE_TIMEOUT_SEC: '24' }, mqttOff: true });
  const c = await NativeClient.connect(b.url);
  assert.equal(c.welcome?.maxPayloadBytes, 3333, 'flag wins over env and file');
  assert.equal(c.welcome?.idleTimeoutSec, 24, 'env wins over file');
  const r = await c.publish('a/b/c/d', new Uint8Array(1));
  assert.equal(r?.op, Op.error, 'maxTopicLevels 3 from the file applies');
  await c.close();
  await b.stop();
});

test('SIGTERM: every client gets close 1001, the process exits 0 within the bound, nothing listens afterwards', async () => {
  const b = await startBroker({ args: ['--shutdown-timeout-ms', '3000'], mqttOff: true });
  const clients = await Promise.all([0, 1, 2, 3].map(() => NativeClient.connect(b.url)));
  // A client that never reads: shutdown must not wait on it beyond the bound.
  const stalled = await NativeClient.connect(b.url);
  stalled.pause();
  await clients[0]!.subscribe(['x/#']);
  const started = Date.now();
  b.kill('SIGTERM');
  const closes = await Promise.all(clients.map((c) => within(c.closed, 5000)));
  for (const [i, cl] of closes.entries()) {
    assert.ok(cl, `client ${i} closed`);
    assert.equal(cl.code, CloseCode.goingAway, `client ${i}: ${JSON.stringify(cl)}`);
  }
  const exit = await within(b.exited, 3000 + 2000 + 1000);
  const ms = Date.now() - started;
  assert.ok(exit, 'exited');
  assert.deepEqual(exit, { code: 0, signal: null }, `clean exit (${ms} ms): ${b.logs.slice(-3).join(' | ')}`);
  assert.ok(ms < 3000 + 2000, `within the shutdown bound: shutdownTimeoutMs, plus main.ts's 2 s grace (${ms} ms)`);
  stalled.resume();
  await assert.rejects(NativeClient.connect(b.url, { timeoutMs: 1000 }), 'nothing listens after shutdown');
});

test('SIGINT shuts down the same way', async () => {
  const b = await startBroker({ mqttOff: true });
  const c = await NativeClient.connect(b.url);
  b.kill('SIGINT');
  assert.equal((await within(c.closed, 5000))?.code, CloseCode.goingAway);
  assert.deepEqual(await within(b.exited, 8000), { code: 0, signal: null });
});

test('$SYS/broker/... figures are the /metrics figures, refreshed every --sys-interval-sec', async () => {
  const b = await startBroker({ args: ['--sys-interval-sec', '1'], mqttOff: true });
  const others = await Promise.all([0, 1, 2].map(() => NativeClient.connect(b.url)));
  const watcher = await NativeClient.connect(b.url);
  await watcher.subscribe(['$SYS/broker/clients/connected', '$SYS/broker/uptime', '$SYS/broker/retained/count']);
  // The next refresh happens with four clients connected.
  const connected = await watcher.expect(isDelivery('$SYS/broker/clients/connected', '4', 0), 3000, 'a live clients/connected of 4');
  assert.ok(connected);
  const m = await scrapeMetrics(b.httpUrl);
  assert.equal(m.get('topicast_connections_open'), 4);
  // Closing one shows within the next interval or two.
  await others[0]!.close();
  await watcher.expect(isDelivery('$SYS/broker/clients/connected', '3', 0), 3000, 'clients/connected of 3');
  assert.equal((await scrapeMetrics(b.httpUrl)).get('topicast_connections_open'), 3);
  const retained = Number(text(watcher.deliveries('$SYS/broker/retained/count').at(-1)!.payload));
  assert.ok(retained >= 1, 'the retained count covers the $SYS values themselves');
  await Promise.all([watcher, others[1]!, others[2]!].map((c) => c.close()));
  await b.stop();
});
