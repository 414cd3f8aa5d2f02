/**
 * Broker configuration: defaults < config file (JSON) < TOPICAST_* env < flags.
 * Every setting is declared once in a spec table; invalid values stop start-up
 * with one line naming the setting and the offending value (ConfigError).
 */
import { readFileSync } from 'node:fs';
import { BrokerError } from './core/errors.js';
import { filterProblem } from 'topicast/protocol';
import { last, tokenize, type OptionSpec } from 'topicast/options';
import { SLOW_CONSUMER_POLICIES } from './session/outbox.js';
import { MQTT_SETTINGS } from './protocol/mqtt/settings.js';
import { AUTH_SETTINGS } from './auth/settings.js';
import { DRAIN_SETTINGS } from './session/drain.js';
import { HISTORY_SETTINGS } from './store/history-settings.js';
import { busUrlProblem, CLUSTER_SETTINGS } from './cluster/settings.js';
import { MAX_BUS_TOPIC_BYTES } from './cluster/subject.js';
import { envName, flagName, type SettingSpec } from './settings.js';

/** A setting, or what it points at, is unusable (core/errors.ts: exit 2); the message names it. */
export class ConfigError extends BrokerError {
  override readonly name: string = 'ConfigError';
  constructor(message: string) {
    super('config', message);
  }
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export const BROKER_SETTINGS = [
  { key: 'host', type: 'string', default: '0.0.0.0', doc: 'address to listen on; all interfaces so devices on the LAN reach it' },
  { key: 'port', type: 'int', default: 8080, min: 0, max: 65535, doc: 'HTTP + WebSocket port (0 picks a free port, logged at start-up)' },
  { key: 'static', type: 'string', default: undefined, doc: 'directory served at / (default: the bundled dashboard, which also stays at /topicast/)' },
  { key: 'data', type: 'string', default: undefined, doc: 'directory for durable state (retained values, message history, persistent MQTT sessions); unset keeps them in memory only' },
  { key: 'dataRecover', type: 'bool', default: false, doc: 'start even though a store in --data is damaged: move its files to DIR/quarantine/<time>/, load what is intact, count the loss in /metrics, start a new history epoch; without it damage stops start-up (broker/STORAGE.md)' },
  { key: 'config', type: 'string', default: undefined, doc: 'JSON file with any of these settings (camelCase keys)' },
  { key: 'logLevel', type: 'enum', default: 'info', values: LOG_LEVELS, doc: 'log verbosity; info logs start-up, shutdown and errors, not traffic' },
  { key: 'maxPayloadBytes', type: 'int', default: 256 * 1024, min: 1, max: 64 * 1024 * 1024, doc: 'largest payload accepted; sensor data is tiny, 256 KiB still fits a small image' },
  { key: 'maxTopicBytes', type: 'int', default: 1024, min: 1, max: 65535, doc: 'longest topic or filter in UTF-8 bytes; device trees stay far below, and it fits a NATS subject' },
  { key: 'maxTopicLevels', type: 'int', default: 32, min: 1, max: 1024, doc: 'most levels in a topic or filter; bounds matching cost per publish' },
  { key: 'maxSubscriptionsPerConnection', type: 'int', default: 1000, min: 1, max: 10_000_000, doc: 'a dashboard needs tens; 1000 stops a client from bloating the index' },
  { key: 'maxConnections', type: 'int', default: 50_000, min: 1, max: 10_000_000, doc: 'beyond it upgrades get 503 (native) or CONNACK 0x9F (MQTT); about 1 GiB of headroom at measured bytes per connection' },
  { key: 'maxPendingConnections', type: 'int', default: 10_000, min: 0, max: 10_000_000, doc: 'connections not yet upgraded (HTTP, including plain HTTP clients) or CONNECTed (MQTT), over all addresses (0 = unlimited); a whole fleet reconnecting fits, a flood of half-open requests holds no more descriptors than this' },
  { key: 'maxPendingConnectionsPerIp', type: 'int', default: 500, min: 0, max: 10_000_000, doc: 'the same from one IP (0 = unlimited; limitsExemptIps skip it); a NATed fleet completes its handshakes in milliseconds, one address cannot park thousands of sockets' },
  { key: 'connectTimeoutMs', type: 'int', default: 10_000, min: 100, max: 600_000, doc: 'an MQTT connection must complete its CONNECT (and authentication) within this; slow device links need seconds (HTTP requests and upgrades have uWebSockets.js\'s fixed 10 s)' },
  { key: 'maxPublishesPerSec', type: 'int', default: 10_000, min: 0, max: 100_000_000, doc: 'per-connection sustained publish rate (0 = unlimited); a device sends a few per second, a gateway thousands' },
  { key: 'publishBurst', type: 'int', default: 20_000, min: 1, max: 100_000_000, doc: 'publishes a connection may send at once above the sustained rate (token bucket depth)' },
  { key: 'maxBufferedBytes', type: 'int', default: 1024 * 1024, min: 1024, max: 1024 * 1024 * 1024, doc: 'bytes waiting for one connection before the slow-consumer policy applies; seconds of sensor traffic' },
  { key: 'slowConsumerPolicy', type: 'enum', default: 'conflate', values: SLOW_CONSUMER_POLICIES, doc: 'drop (newest), conflate (latest per topic until drained, at most maxBufferedBytes of them: past it the least recently updated go) or disconnect; conflate suits live readings' },
  { key: 'maxConflatedTopics', type: 'int', default: 10_000, min: 1, max: 10_000_000, doc: 'distinct topics kept per connection while conflating; beyond it new topics are dropped and counted' },
  { key: 'snapshotWindowBytes', type: 'int', default: 256 * 1024, min: 1024, max: 1024 * 1024 * 1024, doc: 'a retained snapshot is written only while the socket buffers less than this: paced, never dropped' },
  { key: 'maxRetainedTopics', type: 'int', default: 1_000_000, min: 0, max: 100_000_000, doc: 'retained topics kept; beyond it new retained topics are refused (existing ones still update)' },
  { key: 'maxRetainedBytes', type: 'int', default: 1024 * 1024 * 1024, min: 0, max: Number.MAX_SAFE_INTEGER, doc: 'payload bytes of all retained values, held in memory (and on disk with --data); beyond it new or larger retained values are refused (store full). 1 GiB holds a million 1 KiB readings, where maxRetainedTopics × maxPayloadBytes alone would allow 256 GiB' },
  { key: 'idleTimeoutSec', type: 'int', default: 120, min: 0, max: 960, doc: 'a WebSocket silent this long is closed; the broker pings before it, so only dead peers go (multiple of 4, or 0)' },
  { key: 'sysIntervalSec', type: 'int', default: 5, min: 0, max: 3600, doc: 'how often $SYS/broker/... topics are refreshed (0 = never)' },
  { key: 'agent', type: 'bool', default: false, doc: 'run the device agent (topicast-agent\'s readers and exec sensors) inside the broker, publishing devices/<id>/... straight into it; the config file\'s "agent" object and TOPICAST_AGENT_* variables set it up' },
  { key: 'shutdownTimeoutMs', type: 'int', default: 5000, min: 0, max: 600_000, doc: 'graceful shutdown bound: after it the process exits even if clients linger' },
  ...DRAIN_SETTINGS,
  ...MQTT_SETTINGS,
  ...AUTH_SETTINGS,
  ...HISTORY_SETTINGS,
  ...CLUSTER_SETTINGS,
] as const satisfies readonly SettingSpec[];

type SpecValue<S> = S extends { type: 'int' } ? number
  : S extends { type: 'bool' } ? boolean
  : S extends { type: 'list' } ? string[]
  : S extends { type: 'enum'; values: readonly (infer V)[] } ? V
  : S extends { default: undefined } ? string | undefined
  : string;

export type BrokerConfig = {
  -readonly [S in (typeof BROKER_SETTINGS)[number] as S['key']]: SpecValue<S>;
} & {
  /** The config file's `"agent"` object (`topicast-agent` settings for `--agent`); checked when the agent starts. */
  agentSection?: Record<string, unknown>;
};

const SPECS: readonly SettingSpec[] = BROKER_SETTINGS;
const BY_KEY = new Map(SPECS.map((s) => [s.key, s]));
const BY_FLAG = new Map(SPECS.map((s) => [flagName(s.key), s]));

function describe(spec: SettingSpec, source: string): string {
  return source === 'flag' ? `--${flagName(spec.key)}` : source === 'env' ? envName(spec.key) : `"${spec.key}" in the config file`;
}

function coerce(spec: SettingSpec, raw: unknown, source: string): SettingSpec['default'] {
  const where = describe(spec, source);
  const bad = (why: string): never => {
    throw new ConfigError(`invalid setting ${where}: ${JSON.stringify(raw)} ${why}`);
  };
  switch (spec.type) {
    case 'int': {
      const n = typeof raw === 'number' ? raw : typeof raw === 'string' && /^-?\d+$/.test(raw.trim()) ? Number(raw.trim()) : NaN;
      if (!Number.isSafeInteger(n)) return bad('is not an integer');
      if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) return bad(`is outside ${spec.min}..${spec.max}`);
      return n;
    }
    case 'bool': {
      if (typeof raw === 'boolean') return raw;
      if (raw === 'true' || raw === '1' || raw === 'yes') return true;
      if (raw === 'false' || raw === '0' || raw === 'no') return false;
      return bad('is not a boolean (true/false)');
    }
    case 'enum':
      if (typeof raw !== 'string' || !spec.values!.includes(raw)) return bad(`is not one of ${spec.values!.join(', ')}`);
      return raw;
    case 'list':
      if (Array.isArray(raw) && raw.every((x) => typeof x === 'string')) return raw as string[];
      if (typeof raw === 'string') return raw.split(',').map((s) => s.trim()).filter(Boolean);
      return bad('is not a list of strings');
    case 'string':
      if (typeof raw !== 'string' || raw.length === 0) return bad('is not a non-empty string');
      return raw;
  }
}

/**
 * The broker's flags, one per setting: `--name VALUE` or `--name=VALUE`; a boolean setting is a
 * flag (`--agent`) that takes a value only attached (`--agent=false`), so the argument after it is
 * never swallowed.
 */
const FLAG_SPECS: readonly OptionSpec[] = SPECS.map((s) => ({ name: flagName(s.key), value: s.type === 'bool' ? 'attached' : 'required' }));

/** The flags given, last occurrence winning, keyed by flag name; throws ConfigError for a bad command line. */
function parseFlags(argv: readonly string[]): Map<string, string | true> {
  const { values, problem } = tokenize(argv, FLAG_SPECS);
  if (problem) {
    switch (problem.kind) {
      case 'unknown-option':
        throw new ConfigError(`${problem.message.replace('unknown option', 'unknown setting')} (see --help)`);
      case 'missing-value':
        throw new ConfigError(`invalid setting --${problem.name}: a value is required`);
      case 'unexpected-argument': {
        const before = BY_FLAG.get(argv[problem.index - 1]?.slice(2) ?? '');
        const flag = before && `--${flagName(before.key)}`;
        const hint = before?.type === 'bool' ? ` (${flag} is a boolean and takes no separate value: give ${flag} or ${flag}=false)` : '';
        throw new ConfigError(`${problem.message}${hint}`);
      }
      default:
        throw new ConfigError(problem.message);
    }
  }
  const flags = new Map<string, string | true>();
  for (const name of values.keys()) flags.set(name, last(values, name)!);
  return flags;
}

/**
 * Resolves the configuration from argv, env and the config file.
 * @throws ConfigError naming the first bad setting.
 */
export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): BrokerConfig {
  const flags = parseFlags(argv);
  const out: Record<string, unknown> = {};
  for (const spec of SPECS) out[spec.key] = spec.default;

  const configPath = (flags.get('config') as string | undefined) ?? env[envName('config')];
  if (configPath !== undefined) {
    if (typeof configPath !== 'string') throw new ConfigError('invalid setting --config: a file path is required');
    let file: unknown;
    try {
      file = JSON.parse(readFileSync(configPath, 'utf8'));
    } catch (err) {
      throw new ConfigError(`invalid setting --config: cannot read ${configPath}: ${(err as Error).message}`);
    }
    if (!file || typeof file !== 'object' || Array.isArray(file)) throw new ConfigError(`invalid setting --config: ${configPath} must hold a JSON object`);
    for (const [key, raw] of Object.entries(file)) {
      const spec = BY_KEY.get(key);
      if (!spec || key === 'config') throw new ConfigError(`unknown setting "${key}" in ${configPath}`);
      if (key === 'agent' && typeof raw === 'object' && raw !== null && !Array.isArray(raw)) {
        // An "agent" object is the agent's own configuration and turns it on (flags and env may still turn it off).
        out.agent = true;
        out.agentSection = raw;
        continue;
      }
      out[key] = coerce(spec, raw, 'file');
    }
  }
  for (const spec of SPECS) {
    const raw = env[envName(spec.key)];
    if (raw !== undefined && raw !== '') out[spec.key] = coerce(spec, raw, 'env');
  }
  for (const [name, raw] of flags) {
    const spec = BY_FLAG.get(name)!;
    out[spec.key] = coerce(spec, raw, 'flag');
  }
  const config = out as BrokerConfig;
  if (config.idleTimeoutSec !== 0 && (config.idleTimeoutSec < 8 || config.idleTimeoutSec % 4 !== 0)) {
    throw new ConfigError(`invalid setting idleTimeoutSec: ${config.idleTimeoutSec} must be 0 or a multiple of 4 of at least 8 (a uWebSockets.js rule)`);
  }
  for (const filter of config.historyFilters) {
    const problem = filterProblem(filter);
    if (problem !== undefined) throw new ConfigError(`invalid setting historyFilters: ${JSON.stringify(filter)} ${problem}`);
  }
  const busProblem = config.bus === undefined ? undefined : busUrlProblem(config.bus);
  if (busProblem !== undefined) throw new ConfigError(`invalid setting bus: ${busProblem}`);
  // Every topic may cross the bus; the edge's topic check then refuses longer ones with a clear error.
  if (config.bus !== undefined && config.maxTopicBytes > MAX_BUS_TOPIC_BYTES) {
    throw new ConfigError(`invalid setting maxTopicBytes: ${config.maxTopicBytes} is more than a scale-out bus carries (${MAX_BUS_TOPIC_BYTES} bytes: a NATS subject must fit its control line); lower it, or run without bus`);
  }
  if (config.port !== 0 && config.port === config.mqttPort) {
    throw new ConfigError(`invalid setting mqttPort: ${config.mqttPort} is the same as port`);
  }
  return config;
}

/** The configuration reference as Markdown rows (README and --help). */
export function settingsReference(): string {
  return SPECS.map((s) => `| \`--${flagName(s.key)}\` | \`${envName(s.key)}\` | ${s.default === undefined ? '' : `\`${Array.isArray(s.default) ? s.default.join(',') : String(s.default)}\``} | ${s.doc} |`).join('\n');
}
