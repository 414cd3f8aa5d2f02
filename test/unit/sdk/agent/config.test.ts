import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseAgentArgs, READER_NAMES, type AgentConfig, type ParseEnvironment } from 'topicast/agent';

function parse(argv: string[], environment: ParseEnvironment = {}): AgentConfig {
  const r = parseAgentArgs(argv, { hostname: () => 'Pi-01.local', ...environment });
  assert.equal(r.action, 'run');
  return (r as { config: AgentConfig }).config;
}

function problem(argv: string[], environment: ParseEnvironment = {}): string {
  try {
    parseAgentArgs(argv, { hostname: () => 'h', ...environment });
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    assert.ok(!err.message.includes('\n'), 'one line');
    return err.message;
  }
  assert.fail(`expected a ConfigError for ${argv.join(' ')}`);
}

test('defaults: native to the local broker, id from the hostname, every reader, 5 s', () => {
  const c = parse([]);
  assert.deepEqual(c.urls, ['ws://127.0.0.1:8080/ws']);
  assert.equal(c.transport, 'native');
  assert.equal(c.id, 'pi-01.local');
  assert.equal(c.intervalSec, 5);
  assert.equal(c.maxAgeSec, 60);
  assert.deepEqual(c.readers, READER_NAMES);
  assert.equal(c.root, '/');
  assert.equal(c.payload, 'reading');
  assert.equal(c.logLevel, 'info');
  assert.equal(c.once, false);
});

test('flags, both spellings; transport from the URL scheme', () => {
  const c = parse(['--url', 'mqtt://broker:1883', '--id=pi-07', '--interval', '2.5', '--readers', 'cpu,memory', '--once', '--print']);
  assert.equal(c.transport, 'mqtt');
  assert.equal(c.id, 'pi-07');
  assert.equal(c.intervalSec, 2.5);
  assert.deepEqual(c.readers, ['cpu', 'memory']);
  assert.equal(c.once && c.print, true);
  assert.deepEqual(parse(['--url', 'ws://a:8080/ws,ws://b:8080/ws']).urls, ['ws://a:8080/ws', 'ws://b:8080/ws']);
  assert.equal(parse(['--url', 'ws://h:8080/mqtt', '--transport', 'mqtt']).transport, 'mqtt');
});

test('precedence: flags over environment over config file over defaults', () => {
  const file = JSON.stringify({ id: 'from-file', intervalSec: 30, maxAgeSec: 300, logLevel: 'debug', url: 'ws://file:8080/ws' });
  const env = { TOPICAST_AGENT_CONFIG: '/etc/topicast/agent.json', TOPICAST_AGENT_INTERVAL: '10', TOPICAST_AGENT_ID: 'from-env', TOPICAST_AGENT_MAX_AGE: '120' };
  const readFile = (p: string) => {
    assert.equal(p, '/etc/topicast/agent.json');
    return file;
  };
  const c = parse(['--id', 'from-flag'], { env, readFile });
  assert.equal(c.id, 'from-flag');
  assert.equal(c.intervalSec, 10);
  assert.equal(c.maxAgeSec, 120);
  assert.equal(c.logLevel, 'debug');
  assert.deepEqual(c.urls, ['ws://file:8080/ws']);
  assert.equal(c.configFile, '/etc/topicast/agent.json');
});

test('config file: sensors rules and exec sensors', () => {
  const file = {
    sensors: { 'net/+/rx': { threshold: 10240 }, uptime: { enabled: false }, 'cpu/#': { intervalSec: 2, threshold: -1 } },
    exec: [
      { name: 'door', command: 'gpioget gpiochip0 17', intervalSec: 1 },
      { name: 'dht', command: ['/usr/local/bin/dht22', '--json'], restart: { maxDelaySec: 30 }, unit: '°C' },
    ],
  };
  const c = parse(['--config', 'a.json'], { readFile: () => JSON.stringify(file) });
  assert.deepEqual(c.sensors, [
    { filter: 'net/+/rx', settings: { threshold: 10240 } },
    { filter: 'uptime', settings: { enabled: false } },
    { filter: 'cpu/#', settings: { intervalSec: 2, threshold: -1 } },
  ]);
  assert.equal(c.exec.length, 2);
  assert.deepEqual(c.exec[1]!.command, ['/usr/local/bin/dht22', '--json']);
});

test('bad configuration: one line naming the setting, its source and the value', () => {
  assert.equal(problem(['--interval', 'abc']), 'invalid --interval "abc" (from --interval): must be a number of seconds ≥ 0.05');
  assert.equal(problem([], { env: { TOPICAST_AGENT_INTERVAL: '0' } }), 'invalid --interval "0" (from TOPICAST_AGENT_INTERVAL): must be a number of seconds ≥ 0.05');
  assert.match(problem(['--id', 'a/b']), /^invalid --id "a\/b" \(from --id\): must be one topic level/);
  assert.match(problem(['--id', '#']), /invalid --id/);
  assert.match(problem(['--url', 'http://x']), /^invalid --url "http:\/\/x" \(from --url\): scheme must be/);
  assert.match(problem(['--url', 'not a url']), /invalid --url/);
  assert.match(problem(['--url', 'mqtt://x', '--transport', 'native']), /native transport needs ws/);
  assert.match(problem(['--readers', 'cpu,gpu']), /unknown reader "gpu"/);
  assert.match(problem(['--payload', 'xml']), /must be one of reading, number/);
  assert.match(problem(['--log-level', 'loud']), /must be one of error, warn, info, debug/);
  assert.match(problem(['--max-sensors', '0']), /^invalid --max-sensors "0" \(from --max-sensors\): must be an integer ≥ 1$/);
  assert.equal(problem(['--frobnicate']), 'unknown option --frobnicate (see --help)');
  assert.equal(problem(['--url']), '--url needs a value');
  assert.equal(problem(['extra']), 'unexpected argument "extra" (see --help)');
  assert.equal(problem(['--print']), '--once and --print go together: --once --print prints one round of readings and exits');
  assert.match(problem(['--once']), /^--once and --print go together/);
  assert.match(problem(['--config', '/nope.json'], { readFile: () => { throw Object.assign(new Error('x'), { code: 'ENOENT' }); } }), /cannot read it: ENOENT/);
  assert.match(problem(['--config', 'c.json'], { readFile: () => '{' }), /not valid JSON/);
  assert.match(problem(['--config', 'c.json'], { readFile: () => '{"intervall": 5}' }), /unknown key "intervall" in c.json/);
  assert.match(problem(['--config', 'c.json'], { readFile: () => '{"intervalSec": "fast"}' }), /invalid --interval "fast" \(from c.json: intervalSec\)/);
  assert.match(problem(['--config', 'c.json'], { readFile: () => '{"sensors": {"a/#/b": {}}}' }), /'#' must be a whole level and the last one/);
  assert.match(problem(['--config', 'c.json'], { readFile: () => '{"sensors": {"a": {"treshold": 1}}}' }), /unknown key "treshold"/);
  assert.match(problem(['--config', 'c.json'], { readFile: () => '{"sensors": {"a": {"threshold": -2}}}' }), /or -1 to publish every value/);
  assert.match(problem(['--config', 'c.json'], { readFile: () => '{"exec": [{"name": "x"}]}' }), /exec sensor command/);
  assert.match(problem(['--config', 'c.json'], { readFile: () => '{"exec": [{"name": "x", "command": "y", "mode": "periodic"}]}' }), /needs intervalSec/);
  assert.match(problem(['--config', 'c.json'], { readFile: () => '{"exec": [{"name": "x", "command": "y"}, {"name": "x", "command": "z"}]}' }), /used twice/);
  assert.match(problem(['--config', 'c.json'], { readFile: () => '{"exec": [{"name": "x", "command": "y", "topic": "a/+"}]}' }), /exec sensor topic/);
});

test('--help and --version are actions, not errors', () => {
  assert.deepEqual(parseAgentArgs(['--help']), { action: 'help' });
  assert.deepEqual(parseAgentArgs(['--interval', '1', '--version']), { action: 'version' });
  assert.deepEqual(parseAgentArgs(['-h', 'extra']), { action: 'help' }, 'given before the problem');
  assert.deepEqual(parseAgentArgs(['--homeassistant', '-h']), { action: 'help' }, 'an alias is not the optional prefix');
  assert.throws(() => parseAgentArgs(['extra', '--help']), /^ConfigError: unexpected argument "extra" \(see --help\)$/);
});

test('flag forms: a value never looks like an option, a flag takes none, the last occurrence wins', () => {
  assert.equal(problem(['--id', '--once', '--print']), '--id needs a value');
  assert.equal(problem(['--once=1', '--print']), '--once takes no value');
  assert.equal(problem(['-x']), 'unknown option -x (see --help)');
  assert.equal(parse(['--id', 'a', '--id=b']).id, 'b');
  assert.equal(parse(['--id', '-7']).id, '-7');
});
