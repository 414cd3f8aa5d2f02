/**
 * The agent's configuration: flags, then `TOPICAST_AGENT_*` environment variables, then a JSON
 * config file (`--config FILE`), then defaults; the first that sets a value wins. Everything is
 * checked before the agent starts, and the first bad value stops it with one line naming the
 * setting, where it came from, and the value (the CLI exits with status 2).
 *
 * Config file (every key optional; `sensors` and `exec` exist only there):
 * ```json
 * { "url": "ws://broker:8080/ws", "id": "pi-01", "intervalSec": 5, "maxAgeSec": 60,
 *   "readers": ["cpu", "memory", "thermal"], "payload": "reading", "logLevel": "info",
 *   "sensors": { "net/+/rx": { "threshold": 10240 }, "uptime": { "enabled": false }, "cpu/#": { "intervalSec": 2 } },
 *   "exec": [ { "name": "door", "command": "gpioget gpiochip0 17", "intervalSec": 1 },
 *             { "name": "dht", "command": ["/usr/local/bin/dht22", "--json"], "restart": { "maxDelaySec": 30 } } ],
 *   "actuators": [ { "name": "led", "type": "boolean", "command": ["/usr/local/bin/led.sh"] },
 *                  { "name": "fan", "type": "number", "min": 0, "max": 100, "step": 5, "unit": "%", "command": "fanctl" } ],
 *   "homeassistant": "homeassistant" }
 * ```
 */
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { last, tokenize, type OptionSpec } from '../options.js';
import type { ActuatorConfig } from './actuator.js';
import { DEFAULT_INTERVAL_SEC, DEFAULT_MAX_AGE_SEC, DEFAULT_MAX_SENSORS, type SensorRule, type SensorSettings } from './agent.js';
import type { ExecSensorConfig } from './exec.js';
import { DEFAULT_HOMEASSISTANT_PREFIX } from './homeassistant.js';
import { sensorFilterProblem } from './filter.js';
import { LOG_LEVELS } from './log.js';
import { READER_NAMES, type ReaderName } from './readers/index.js';
import { topicLevel } from './readers/fs.js';
import type { LogLevel } from './types.js';

export interface AgentConfig {
  urls: string[];
  transport: 'native' | 'mqtt';
  id: string;
  intervalSec: number;
  maxAgeSec: number;
  root: string;
  readers: ReaderName[];
  sensors: SensorRule[];
  exec: ExecSensorConfig[];
  actuators: ActuatorConfig[];
  /** Home Assistant discovery prefix, or undefined when discovery is off. */
  homeassistant: string | undefined;
  payload: 'reading' | 'number';
  maxSensors: number;
  token: string | undefined;
  logLevel: LogLevel;
  once: boolean;
  print: boolean;
  configFile: string | undefined;
}

export type ParsedArgs = { action: 'run'; config: AgentConfig } | { action: 'help' } | { action: 'version' };

/** A configuration problem; `message` is the one line the CLI prints. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

export const DEFAULT_URL = 'ws://127.0.0.1:8080/ws'; // where `npm start` and the systemd unit run the broker

export const USAGE = `Usage: topicast-agent [options]

Publishes this machine's hardware readings to a Topicast (or any MQTT) broker under devices/<id>/.

  --url URL            ws://HOST:8080/ws (native, default ${DEFAULT_URL}) or mqtt://HOST:1883;
                       several native URLs separated by commas fail over
  --transport KIND     native | mqtt (default: from the URL's scheme)
  --id ID              device id, one topic level (default: the hostname)
  --interval SECONDS   seconds between readings of each sensor (default ${DEFAULT_INTERVAL_SEC})
  --max-age SECONDS    publish an unchanged value at least this often (default ${DEFAULT_MAX_AGE_SEC})
  --readers LIST       comma-separated readers (default all: ${READER_NAMES.join(',')})
  --root DIR           directory standing for / when reading /proc and /sys (default /)
  --payload SHAPE      reading ({ value, unit, ts }, default) | number
  --max-sensors N      most sensors kept, each with its latest value (default ${DEFAULT_MAX_SENSORS})
  --token TOKEN        auth token for the broker (native transport)
  --log-level LEVEL    error | warn | info | debug (default info)
  --homeassistant [PREFIX]
                       publish Home Assistant discovery configs under PREFIX
                       (default ${DEFAULT_HOMEASSISTANT_PREFIX}) for every sensor and actuator
  --config FILE        JSON config file (also sensors, exec sensors and actuators; see the README)
  --once --print       print one round of readings as JSON and exit, without connecting
  --help, --version

Every option also reads from the environment as TOPICAST_AGENT_<NAME> (e.g. TOPICAST_AGENT_URL,
TOPICAST_AGENT_MAX_AGE). Precedence: flags, environment, config file, defaults.`;

interface Source {
  where: string;
  value: unknown;
}

const FLAGS = ['url', 'transport', 'id', 'interval', 'max-age', 'readers', 'root', 'payload', 'max-sensors', 'token', 'log-level', 'homeassistant', 'config'] as const;
type Flag = (typeof FLAGS)[number];
const BOOLEAN_FLAGS = ['once', 'print'] as const;
const OPTIONS: readonly OptionSpec[] = [
  ...FLAGS.map((name) => ({ name, value: name === 'homeassistant' ? ('optional' as const) : ('required' as const) })),
  ...BOOLEAN_FLAGS.map((name) => ({ name })),
  { name: 'help', short: 'h' },
  { name: 'version' },
];

/** Config-file keys for each flag. */
const FILE_KEY: Record<Flag, string> = {
  url: 'url',
  transport: 'transport',
  id: 'id',
  interval: 'intervalSec',
  'max-age': 'maxAgeSec',
  readers: 'readers',
  root: 'root',
  payload: 'payload',
  'max-sensors': 'maxSensors',
  token: 'token',
  'log-level': 'logLevel',
  homeassistant: 'homeassistant',
  config: 'config',
};
const FILE_ONLY_KEYS = ['sensors', 'exec', 'actuators'];

function envName(flag: string): string {
  return `TOPICAST_AGENT_${flag.toUpperCase().replace(/-/g, '_')}`;
}

function fail(setting: string, source: Source, why: string): never {
  const shown = typeof source.value === 'string' ? JSON.stringify(source.value) : JSON.stringify(source.value) ?? String(source.value);
  throw new ConfigError(`invalid ${setting} ${shown} (from ${source.where}): ${why}`);
}

export interface ParseEnvironment {
  env?: Record<string, string | undefined>;
  readFile?: (path: string) => string;
  hostname?: () => string;
}

/**
 * Parses the command line, the environment and the config file into a checked configuration.
 * Throws a `ConfigError` whose message is one line naming the bad setting.
 * @example
 * const parsed = parseAgentArgs(process.argv.slice(2), { env: process.env });
 * if (parsed.action === 'run') console.log(parsed.config.id);
 */
export function parseAgentArgs(argv: readonly string[], environment: ParseEnvironment = {}): ParsedArgs {
  const env = environment.env ?? {};
  const readFile = environment.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const { values, problem } = tokenize(argv, OPTIONS);
  // --help and --version act when given before any problem (the parse stops at the first).
  if (values.has('help')) return { action: 'help' };
  if (values.has('version')) return { action: 'version' };
  if (problem) {
    const seeHelp = problem.kind === 'unknown-option' || problem.kind === 'unexpected-argument';
    throw new ConfigError(seeHelp ? `${problem.message} (see --help)` : problem.message);
  }
  const flags = new Map<string, Source>();
  for (const name of FLAGS) {
    const value = last(values, name);
    if (value !== undefined) flags.set(name, { where: `--${name}`, value }); // true: --homeassistant without its prefix
  }
  const bools = { once: values.has('once'), print: values.has('print') };
  for (const b of BOOLEAN_FLAGS) {
    const v = env[envName(b)];
    if (v !== undefined && v !== '' && !bools[b]) {
      if (!['1', 'true', '0', 'false'].includes(v)) fail(`--${b}`, { where: envName(b), value: v }, 'must be 1, true, 0 or false');
      bools[b] = v === '1' || v === 'true';
    }
  }

  const configSource = flags.get('config') ?? (env[envName('config')] ? { where: envName('config'), value: env[envName('config')] } : undefined);
  let file: Record<string, unknown> = {};
  let configFile: string | undefined;
  if (configSource) {
    configFile = String(configSource.value);
    let text: string;
    try {
      text = readFile(configFile);
    } catch (err) {
      fail('--config', configSource, `cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      fail('--config', configSource, `not valid JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) fail('--config', configSource, 'must hold a JSON object');
    file = parsed as Record<string, unknown>;
    const known = new Set([...Object.values(FILE_KEY).filter((k) => k !== 'config'), ...FILE_ONLY_KEYS]);
    for (const key of Object.keys(file)) {
      if (!known.has(key)) throw new ConfigError(`unknown key ${JSON.stringify(key)} in ${configFile} (known: ${[...known].join(', ')})`);
    }
  }

  const pick = (flag: Flag): Source | undefined => {
    const fromFlag = flags.get(flag);
    if (fromFlag) return fromFlag;
    const e = env[envName(flag)];
    if (e !== undefined && e !== '') return { where: envName(flag), value: e };
    const key = FILE_KEY[flag];
    if (configFile !== undefined && key in file) return { where: `${configFile}: ${key}`, value: file[key] };
    return undefined;
  };
  const text = (flag: Flag, fallback: string): string => {
    const s = pick(flag);
    if (!s) return fallback;
    if (typeof s.value !== 'string' || s.value === '') fail(`--${flag}`, s, 'must be a non-empty string');
    return s.value;
  };
  const seconds = (flag: Flag, fallback: number, min: number): number => {
    const s = pick(flag);
    if (!s) return fallback;
    const n = typeof s.value === 'number' ? s.value : typeof s.value === 'string' && s.value.trim() !== '' ? Number(s.value) : NaN;
    if (!Number.isFinite(n) || n < min) fail(`--${flag}`, s, `must be a number of seconds ≥ ${min}`);
    return n;
  };
  const oneOf = <T extends string>(flag: Flag, allowed: readonly T[], fallback: T): T => {
    const s = pick(flag);
    if (!s) return fallback;
    if (!allowed.includes(s.value as T)) fail(`--${flag}`, s, `must be one of ${allowed.join(', ')}`);
    return s.value as T;
  };

  // url and transport
  const urlSource = pick('url');
  const rawUrls = urlSource ? (Array.isArray(urlSource.value) ? urlSource.value : typeof urlSource.value === 'string' ? urlSource.value.split(',') : [urlSource.value]) : [DEFAULT_URL];
  const urls: string[] = [];
  const schemes = new Set<string>();
  for (const u of rawUrls) {
    const src = urlSource ?? { where: 'default', value: u };
    if (typeof u !== 'string' || u.trim() === '') fail('--url', src, 'must be a URL');
    let parsed: URL;
    try {
      parsed = new URL(u.trim());
    } catch {
      fail('--url', src, 'must be a URL such as ws://host:8080/ws or mqtt://host:1883');
    }
    const scheme = parsed.protocol.slice(0, -1);
    if (!['ws', 'wss', 'mqtt', 'mqtts', 'tcp', 'ssl'].includes(scheme)) fail('--url', src, 'scheme must be ws, wss, mqtt, mqtts, tcp or ssl');
    schemes.add(scheme);
    urls.push(u.trim());
  }
  const mqttScheme = [...schemes].some((s) => s !== 'ws' && s !== 'wss');
  const transport = oneOf('transport', ['native', 'mqtt'] as const, mqttScheme ? 'mqtt' : 'native');
  if (transport === 'native' && mqttScheme) fail('--url', urlSource!, 'the native transport needs ws:// or wss://');
  if (transport === 'mqtt' && urls.length > 1) fail('--url', urlSource!, 'the MQTT transport takes one URL');

  // id: one topic level
  const idSource = pick('id');
  let id: string;
  if (idSource) {
    if (typeof idSource.value !== 'string') fail('--id', idSource, 'must be a string');
    id = idSource.value;
    if (id === '' || /[/+#\u0000]/.test(id) || id.startsWith('$')) fail('--id', idSource, "must be one topic level: not empty, no '/', '+', '#', NUL or leading '$'");
  } else {
    id = topicLevel((environment.hostname ?? hostname)());
  }

  // readers
  const readersSource = pick('readers');
  let readers: ReaderName[] = [...READER_NAMES];
  if (readersSource) {
    const list = Array.isArray(readersSource.value) ? readersSource.value : typeof readersSource.value === 'string' ? readersSource.value.split(',') : null;
    if (!list) fail('--readers', readersSource, 'must be a comma-separated list');
    readers = [];
    for (const r of list.map((x) => String(x).trim()).filter((x) => x !== '' && x !== 'none')) {
      if (!(READER_NAMES as readonly string[]).includes(r)) fail('--readers', readersSource, `unknown reader ${JSON.stringify(r)} (known: ${READER_NAMES.join(', ')})`);
      readers.push(r as ReaderName);
    }
  }

  const maxSensorsSource = pick('max-sensors');
  let maxSensors = DEFAULT_MAX_SENSORS;
  if (maxSensorsSource) {
    const n = Number(maxSensorsSource.value);
    if (!Number.isInteger(n) || n < 1) fail('--max-sensors', maxSensorsSource, 'must be an integer ≥ 1');
    maxSensors = n;
  }

  const tokenSource = pick('token');
  if (tokenSource && (typeof tokenSource.value !== 'string' || tokenSource.value === '')) fail('--token', tokenSource, 'must be a non-empty string');

  const config: AgentConfig = {
    homeassistant: homeAssistantPrefix(pick('homeassistant')),
    actuators: parseActuators(file.actuators, configFile),
    urls,
    transport,
    id,
    intervalSec: seconds('interval', DEFAULT_INTERVAL_SEC, 0.05),
    maxAgeSec: seconds('max-age', DEFAULT_MAX_AGE_SEC, 0.05),
    root: text('root', '/'),
    readers,
    sensors: parseSensors(file.sensors, configFile),
    exec: parseExec(file.exec, configFile),
    payload: oneOf('payload', ['reading', 'number'] as const, 'reading'),
    maxSensors,
    token: tokenSource ? String(tokenSource.value) : undefined,
    logLevel: oneOf('log-level', LOG_LEVELS, 'info'),
    once: bools.once,
    print: bools.print,
    configFile,
  };
  if (config.print !== config.once) throw new ConfigError('--once and --print go together: --once --print prints one round of readings and exits');
  return { action: 'run', config };
}

const SENSOR_KEYS: Record<keyof SensorSettings, 'number' | 'boolean'> = { intervalSec: 'number', threshold: 'number', maxAgeSec: 'number', enabled: 'boolean' };

function parseSensors(value: unknown, file: string | undefined): SensorRule[] {
  if (value === undefined) return [];
  const where = (k: string) => `${file}: sensors${k}`;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('sensors', { where: where(''), value }, 'must be an object from filter to settings');
  const rules: SensorRule[] = [];
  for (const [filter, settings] of Object.entries(value)) {
    const src = { where: where(`[${JSON.stringify(filter)}]`), value: settings };
    const problem = sensorFilterProblem(filter);
    if (problem) fail('sensor filter', { where: where(''), value: filter }, problem);
    if (typeof settings !== 'object' || settings === null || Array.isArray(settings)) fail('sensor settings', src, 'must be an object');
    const out: Partial<SensorSettings> = {};
    for (const [k, v] of Object.entries(settings as Record<string, unknown>)) {
      const type = SENSOR_KEYS[k as keyof SensorSettings];
      if (!type) fail('sensor setting', src, `unknown key ${JSON.stringify(k)} (known: ${Object.keys(SENSOR_KEYS).join(', ')})`);
      if (typeof v !== type) fail(`sensor setting ${k}`, src, `must be a ${type}`);
      if (k === 'intervalSec' || k === 'maxAgeSec') {
        if (!Number.isFinite(v) || (v as number) < 0.05) fail(`sensor setting ${k}`, src, 'must be ≥ 0.05 seconds');
      }
      if (k === 'threshold' && (!Number.isFinite(v) || ((v as number) < 0 && v !== -1))) fail('sensor setting threshold', src, 'must be ≥ 0, or -1 to publish every value');
      (out as Record<string, unknown>)[k] = v;
    }
    rules.push({ filter, settings: out });
  }
  return rules;
}

/** `--homeassistant [PREFIX]`, TOPICAST_AGENT_HOMEASSISTANT=1|PREFIX, `"homeassistant": true | "PREFIX"`. */
function homeAssistantPrefix(source: Source | undefined): string | undefined {
  if (source === undefined) return undefined;
  const v = source.value;
  if (v === true || v === '1' || v === 'true') return DEFAULT_HOMEASSISTANT_PREFIX;
  if (v === false || v === '0' || v === 'false') return undefined;
  if (typeof v !== 'string' || v === '' || /[+#\u0000]/.test(v) || v.startsWith('/') || v.endsWith('/') || v.startsWith('$')) {
    fail('--homeassistant', source, "must be a topic prefix such as homeassistant (no '+', '#', leading '$' or '/', trailing '/'), or true");
  }
  return v;
}

const ACTUATOR_KEYS = ['name', 'type', 'command', 'mode', 'min', 'max', 'step', 'unit', 'options', 'maxLength', 'timeoutSec', 'maxQueue', 'maxPerSec', 'env', 'cwd'];
const ACTUATOR_TYPES = ['boolean', 'number', 'string', 'button'];

function parseActuators(value: unknown, file: string | undefined): ActuatorConfig[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) fail('actuators', { where: `${file}: actuators`, value }, 'must be an array of actuators');
  const names = new Set<string>();
  return value.map((entry: unknown, i) => {
    const src = { where: `${file}: actuators[${i}]`, value: entry };
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail('actuator', src, 'must be an object');
    const a = entry as Record<string, unknown>;
    for (const k of Object.keys(a)) if (!ACTUATOR_KEYS.includes(k)) fail('actuator', src, `unknown key ${JSON.stringify(k)} (known: ${ACTUATOR_KEYS.join(', ')})`);
    if (typeof a.name !== 'string' || a.name === '' || /[/+#\u0000]/.test(a.name) || a.name.startsWith('$')) fail('actuator name', src, "must be one topic level: not empty, no '/', '+', '#', NUL or leading '$'");
    if (a.name === 'set' || a.name === 'status' || a.name === 'info') fail('actuator name', src, `${a.name} is a topic of the device convention`);
    if (names.has(a.name)) fail('actuator name', src, 'is used twice');
    names.add(a.name);
    if (!ACTUATOR_TYPES.includes(a.type as string)) fail('actuator type', src, `must be one of ${ACTUATOR_TYPES.join(', ')}`);
    const cmdOk = (typeof a.command === 'string' && a.command.trim() !== '') || (Array.isArray(a.command) && a.command.length > 0 && a.command.every((c) => typeof c === 'string' && c !== ''));
    if (!cmdOk) fail('actuator command', src, 'must be a command string or a non-empty array of strings (the value is never put in it: it comes in TOPICAST_VALUE and on stdin)');
    if (a.mode !== undefined && a.mode !== 'per-command' && a.mode !== 'long-running') fail('actuator mode', src, 'must be per-command or long-running');
    for (const k of ['min', 'max', 'step'] as const) {
      if (a[k] === undefined) continue;
      if (a.type !== 'number') fail(`actuator ${k}`, src, 'applies to number actuators only');
      if (typeof a[k] !== 'number' || !Number.isFinite(a[k])) fail(`actuator ${k}`, src, 'must be a number');
    }
    if (a.step !== undefined && (a.step as number) <= 0) fail('actuator step', src, 'must be > 0');
    if (a.min !== undefined && a.max !== undefined && (a.min as number) > (a.max as number)) fail('actuator min', src, 'must not exceed max');
    if (a.unit !== undefined && typeof a.unit !== 'string') fail('actuator unit', src, 'must be a string');
    if (a.options !== undefined) {
      if (a.type !== 'string') fail('actuator options', src, 'apply to string actuators only');
      if (!Array.isArray(a.options) || a.options.length === 0 || !a.options.every((o) => typeof o === 'string')) fail('actuator options', src, 'must be a non-empty array of strings');
    }
    if (a.timeoutSec !== undefined && (typeof a.timeoutSec !== 'number' || !Number.isFinite(a.timeoutSec) || a.timeoutSec <= 0)) fail('actuator timeoutSec', src, 'must be a number of seconds > 0');
    for (const k of ['maxQueue', 'maxPerSec', 'maxLength'] as const) {
      if (a[k] !== undefined && (typeof a[k] !== 'number' || !Number.isInteger(a[k]) || (a[k] as number) < (k === 'maxQueue' ? 0 : 1))) fail(`actuator ${k}`, src, `must be an integer ≥ ${k === 'maxQueue' ? 0 : 1}`);
    }
    if (a.cwd !== undefined && typeof a.cwd !== 'string') fail('actuator cwd', src, 'must be a string');
    if (a.env !== undefined && (typeof a.env !== 'object' || a.env === null || Object.values(a.env).some((v) => typeof v !== 'string'))) fail('actuator env', src, 'must map names to strings');
    return a as unknown as ActuatorConfig;
  });
}

const EXEC_KEYS = ['name', 'command', 'mode', 'intervalSec', 'timeoutSec', 'topic', 'unit', 'restart', 'env', 'cwd'];

function parseExec(value: unknown, file: string | undefined): ExecSensorConfig[] {
  if (value === undefined) return [];
  if (!Array.isArray(value)) fail('exec', { where: `${file}: exec`, value }, 'must be an array of exec sensors');
  const names = new Set<string>();
  return value.map((entry: unknown, i) => {
    const src = { where: `${file}: exec[${i}]`, value: entry };
    if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) fail('exec sensor', src, 'must be an object');
    const e = entry as Record<string, unknown>;
    for (const k of Object.keys(e)) if (!EXEC_KEYS.includes(k)) fail('exec sensor', src, `unknown key ${JSON.stringify(k)} (known: ${EXEC_KEYS.join(', ')})`);
    if (typeof e.name !== 'string' || e.name === '') fail('exec sensor name', src, 'must be a non-empty string');
    if (names.has(e.name)) fail('exec sensor name', src, 'is used twice');
    names.add(e.name);
    const cmdOk = (typeof e.command === 'string' && e.command.trim() !== '') || (Array.isArray(e.command) && e.command.length > 0 && e.command.every((c) => typeof c === 'string'));
    if (!cmdOk) fail('exec sensor command', src, 'must be a shell command string or a non-empty array of strings');
    if (e.mode !== undefined && e.mode !== 'periodic' && e.mode !== 'long-running') fail('exec sensor mode', src, 'must be periodic or long-running');
    for (const k of ['intervalSec', 'timeoutSec'] as const) {
      if (e[k] !== undefined && (typeof e[k] !== 'number' || !Number.isFinite(e[k]) || (e[k] as number) <= 0)) fail(`exec sensor ${k}`, src, 'must be a number of seconds > 0');
    }
    if (e.mode === 'periodic' && e.intervalSec === undefined) fail('exec sensor intervalSec', src, 'a periodic sensor needs intervalSec');
    if (e.topic !== undefined) {
      if (typeof e.topic !== 'string' || e.topic === '' || /[+#\u0000]/.test(e.topic) || e.topic.startsWith('/') || e.topic.endsWith('/')) {
        fail('exec sensor topic', src, "must be a sensor path such as garden/soil (no '+', '#', leading or trailing '/')");
      }
    }
    if (e.unit !== undefined && typeof e.unit !== 'string') fail('exec sensor unit', src, 'must be a string');
    if (e.cwd !== undefined && typeof e.cwd !== 'string') fail('exec sensor cwd', src, 'must be a string');
    if (e.env !== undefined && (typeof e.env !== 'object' || e.env === null || Object.values(e.env).some((v) => typeof v !== 'string'))) fail('exec sensor env', src, 'must map names to strings');
    if (e.restart !== undefined) {
      const r = e.restart as Record<string, unknown>;
      if (typeof r !== 'object' || r === null) fail('exec sensor restart', src, 'must be an object');
      for (const [k, v] of Object.entries(r)) {
        if (!['minDelaySec', 'maxDelaySec', 'stableSec'].includes(k)) fail('exec sensor restart', src, `unknown key ${JSON.stringify(k)}`);
        if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) fail(`exec sensor restart.${k}`, src, 'must be a number of seconds ≥ 0');
      }
    }
    return e as unknown as ExecSensorConfig;
  });
}
