/**
 * `topicast sub`: mosquitto_sub for the native protocol, on the public SDK.
 *
 * One line per delivery on stdout, the value decoded by what arrived with the SDK's own rules
 * (`decodePayload`, the rule the dashboard and the SDK's `auto` codec follow), written by
 * render.ts: text as it is, bytes as base64, other values as JSON. `--raw` writes the payload
 * bytes instead, unchanged and unseparated, for files and pipes. The subscription reconnects
 * like any SDK client (saying so on stderr); a broker that refuses it for good ends the command.
 */
import { connect, decodePayload, json, msgpack, raw, text, type Client, type Codec, type MessageMeta } from 'topicast';
import { filterProblem } from 'topicast/protocol';
import { checkUrl, CliError, count, Exit, oneLine, parseOptions, single, usage, type OptionSpec } from './args.js';
import { cliFailure, type FailureContext } from './failure.js';
import { DEFAULT_URL } from './pub.js';
import { renderValue } from './render.js';

export const SUB_OPTIONS: readonly OptionSpec[] = [
  { name: 'topic', short: 't', value: 'required' },
  { name: 'verbose', short: 'v' },
  { name: 'count', short: 'C', value: 'required' },
  { name: 'timeout', short: 'W', value: 'required' },
  { name: 'no-retained', short: 'R' },
  { name: 'raw' },
  { name: 'http' },
  { name: 'codec', value: 'required' },
  { name: 'url', value: 'required' },
  { name: 'token', value: 'required' },
];

export const SUB_HELP = `Usage: topicast sub -t FILTER [-t FILTER ...] [-v] [-C COUNT] [-W SEC] [-R] [--raw]
                    [--http] [--codec NAME] [--url URL] [--token TOKEN]

Subscribes over the native protocol and prints one line per message, decoded by what arrived
(the SDK's rules): text as it is, numbers, booleans, objects and arrays as JSON, bytes as base64,
an empty payload as an empty line. Retained values come first.

  -t, --topic FILTER        filter to subscribe to (+ one level, # the rest); repeatable
  -v, --verbose             begin each line with the topic and a space
  -C, --count N             exit after N messages
  -W, --timeout SEC         exit after SEC seconds, with status 27 (as mosquitto_sub -W)
  -R, --no-retained         skip the retained values; live messages only
      --raw                 write each payload's bytes unchanged, without a newline
                            (topicast sub -t cam/frame -C 1 --raw > frame.jpg)
      --http                over HTTP streaming (GET /api/session, Server-Sent Events) instead of a
                            WebSocket: for networks whose proxies refuse the upgrade (PROTOCOL.md §10)
      --codec NAME          decode every payload with this codec whatever its content type:
                            auto (default), msgpack, json, text, raw (bytes, as base64)
      --url URL             the broker's native endpoint (env TOPICAST_URL; default ${DEFAULT_URL})
      --token TOKEN         auth token (env TOPICAST_TOKEN)
      --help                this text

Exit status: 0 after -C messages or on Ctrl-C; 1 the broker could not be reached or refused
(or closed the connection for good); 2 usage error; 27 -W ran out.
`;

const CODECS: { readonly [name: string]: Codec | undefined } = { msgpack, json, text, raw };

interface SubArgs {
  filters: string[];
  verbose: boolean;
  count: number | undefined;
  timeoutSec: number | undefined;
  retained: boolean;
  raw: boolean;
  http: boolean;
  codec: Codec | undefined;
  url: string;
  token: string | undefined;
}

function parseSub(argv: readonly string[]): SubArgs {
  const p = parseOptions('sub', argv, SUB_OPTIONS);
  const filters = p.get('topic') ?? [];
  if (filters.length === 0) throw usage('sub', '-t FILTER is required');
  for (const f of filters) {
    const problem = filterProblem(f);
    if (problem) throw usage('sub', `-t ${JSON.stringify(f)} is not a valid filter: ${problem}`);
  }
  const n = count('sub', p, 'count', '-C');
  if (n === 0) throw usage('sub', '-C 0 would exit before any message; give at least 1');
  const timeoutSec = count('sub', p, 'timeout', '-W');
  if (timeoutSec === 0) throw usage('sub', '-W 0 would exit at once; give at least 1 second');
  const codecName = single('sub', p, 'codec', '--codec');
  const codec = codecName === undefined || codecName === 'auto' ? undefined : CODECS[codecName];
  if (codecName !== undefined && codecName !== 'auto' && codec === undefined) throw usage('sub', `--codec ${JSON.stringify(codecName)} is not one of auto, ${Object.keys(CODECS).join(', ')}`);
  const rawMode = p.has('raw');
  if (rawMode && p.has('verbose')) throw usage('sub', '--raw writes payload bytes only; drop -v (or --raw)');
  if (rawMode && codec !== undefined) throw usage('sub', '--raw writes payload bytes undecoded; drop --codec (or --raw)');
  return {
    filters,
    verbose: p.has('verbose'),
    count: n,
    timeoutSec,
    retained: !p.has('no-retained'),
    raw: rawMode,
    http: p.has('http'),
    codec,
    url: checkUrl('sub', single('sub', p, 'url', '--url') ?? (process.env.TOPICAST_URL || DEFAULT_URL)),
    token: single('sub', p, 'token', '--token') ?? (process.env.TOPICAST_TOKEN || undefined),
  };
}

function failureContext(args: SubArgs, request: string): FailureContext {
  return { url: args.url, withToken: args.token !== undefined, request };
}

/** Runs `topicast sub`; resolves with the exit status, throws a CliError for the failure line. */
export async function runSub(argv: readonly string[], warn: (line: string) => void): Promise<number> {
  const args = parseSub(argv);
  let finish: (code: number | CliError) => void = () => {};
  const finished = new Promise<number | CliError>((resolve) => (finish = resolve));
  // `topicast sub ... | head -1`: the reader left, so the job is done.
  const onStdoutError = (err: NodeJS.ErrnoException): void => finish(err.code === 'EPIPE' ? Exit.ok : new CliError(`cannot write to stdout: ${err.message}`, Exit.failed));
  process.stdout.on('error', onStdoutError);
  const onSignal = (): void => finish(Exit.ok);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let client: Client | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    client = await connect(args.url, { codec: 'raw', ...(args.http && { via: 'sse' as const }), ...(args.token ? { token: args.token } : {}) }).catch((err: unknown) => {
      throw cliFailure(err, failureContext(args, 'the connection'));
    });
    if (args.timeoutSec !== undefined) {
      const sec = args.timeoutSec;
      // Like mosquitto_sub -W: the clock starts once connected.
      timer = setTimeout(() => finish(new CliError(`timed out after ${sec} s (-W ${sec})`, Exit.timeout)), sec * 1000);
    }
    let lastError: Error | undefined;
    client.on('error', (err) => {
      lastError = err;
    });
    client.on('state', (state) => {
      if (state === 'reconnecting') warn(`connection lost${lastError ? ` (${oneLine(lastError.message)})` : ''}; reconnecting`);
      else if (state === 'open') warn('reconnected');
      else if (state === 'closed') finish(cliFailure(lastError ?? new Error('the connection closed'), { ...failureContext(args, 'the connection'), connected: true }));
    });
    let seen = 0;
    const show = (bytes: Uint8Array, meta: MessageMeta): void => {
      if (args.count !== undefined && seen >= args.count) return;
      if (args.raw) process.stdout.write(bytes);
      else {
        const line = display(bytes, meta, args.codec, warn);
        if (line === undefined) return; // not counted: -C counts what was printed
        process.stdout.write(args.verbose ? `${meta.topic} ${line}\n` : `${line}\n`);
      }
      if (args.count !== undefined && ++seen >= args.count) finish(Exit.ok);
    };
    await client.subscribe(args.filters, (bytes, meta) => show(bytes as Uint8Array, meta), { retained: args.retained }).catch((err: unknown) => {
      throw cliFailure(err, failureContext(args, `the subscription to ${args.filters.join(' ')}`));
    });
    const outcome = await finished;
    if (outcome instanceof CliError) throw outcome;
    return outcome;
  } finally {
    clearTimeout(timer);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await client?.close();
  }
}

/** One delivery's line, or undefined (with a warning) when its payload does not decode. */
function display(bytes: Uint8Array, meta: MessageMeta, codec: Codec | undefined, warn: (line: string) => void): string | undefined {
  try {
    return renderValue(codec ? codec.decode(bytes, meta.contentType) : decodePayload(bytes, meta.contentType, msgpack.decode));
  } catch (err) {
    warn(`cannot decode a message on ${meta.topic}${codec ? ` with ${codec.name}` : ''}: ${oneLine((err as Error).message)}`);
    return undefined;
  }
}
