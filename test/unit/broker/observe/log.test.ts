/**
 * The broker's log lines (observe/log.ts): pino's JSON format, written without pino, so log readers
 * (journald queries, the tests' `"level":40` filters, jq scripts) see the same lines as before.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

const logModule = new URL('../../../../../broker/dist/observe/log.js', import.meta.url).href;

function linesOf(level: string, script: string): Record<string, unknown>[] {
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', `import { createLogger, flushLogs } from ${JSON.stringify(logModule)};
const log = createLogger(${JSON.stringify(level)});
${script}
await flushLogs(log);`], { encoding: 'utf8' });
  return out.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('lines carry level, time, pid, child bindings, fields and msg in that order; lower levels are not written', () => {
  const lines = linesOf('info', `log.debug('hidden'); log.info('plain'); log.child({ component: 'agent' }).child({ device: 'pi' }).warn({ port: 1883, skip: undefined }, 'with "quotes"');`);
  assert.equal(lines.length, 2);
  assert.deepEqual(Object.keys(lines[0]!), ['level', 'time', 'pid', 'msg']);
  assert.equal(lines[0]!.level, 30);
  assert.equal(lines[0]!.msg, 'plain');
  assert.equal(new Date(lines[0]!.time as string).toISOString(), lines[0]!.time);
  assert.equal(typeof lines[0]!.pid, 'number');
  assert.deepEqual(Object.keys(lines[1]!), ['level', 'time', 'pid', 'component', 'device', 'port', 'msg']);
  assert.deepEqual({ ...lines[1]!, time: 0, pid: 0 }, { level: 40, time: 0, pid: 0, component: 'agent', device: 'pi', port: 1883, msg: 'with "quotes"' });
});

test('err is written as type, message, stack and its own properties; circular values and BigInts do not throw', () => {
  const [line, odd] = linesOf('error', `const err = Object.assign(new RangeError('boom'), { code: 'E_BOOM' }); err.cause = new Error('root');
log.fatal({ err }, 'failed');
const loop = { n: 1n }; loop.self = loop; log.error({ loop });`);
  const err = line!.err as Record<string, unknown>;
  assert.equal(line!.level, 60);
  assert.equal(err.type, 'RangeError');
  assert.equal(err.message, 'boom');
  assert.match(err.stack as string, /^RangeError: boom\n\s+at /);
  assert.equal(err.code, 'E_BOOM');
  assert.equal((err.cause as Record<string, unknown>).message, 'root');
  assert.deepEqual(odd!.loop, { n: '1', self: '[Circular]' });
});

test('silent writes nothing', () => {
  assert.deepEqual(linesOf('silent', `log.fatal('nothing'); log.error({ a: 1 });`), []);
});

test('isoTime writes what toISOString writes', async () => {
  const { isoTime } = (await import(logModule)) as { isoTime(ms: number): string };
  for (const ms of [0, 1, 951_782_400_000, 1_765_000_000_123, 253_402_300_799_999, -1, -62_198_755_200_000, 8.64e15, -8.64e15, Date.now()]) {
    assert.equal(isoTime(ms), new Date(ms).toISOString(), String(ms));
  }
});
