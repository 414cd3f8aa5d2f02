/**
 * `topicast pub` and `topicast sub`: mosquitto_pub / mosquitto_sub for the
 * native protocol, built on the public SDK.
 *
 *   topicast pub -t TOPIC -m VALUE [-r] [--url URL] [--codec msgpack|json|text] [--token T]
 *   topicast sub -t FILTER [-t FILTER ...] [-v] [-C COUNT] [--url URL] [--codec auto|msgpack|json|text|raw] [--token T]
 *
 * pub: VALUE is parsed as JSON when it parses (48.2, {"a":1}, true), else sent
 * as a string; encoded with the SDK's default codec (MessagePack) unless --codec.
 * sub: one line per delivery on stdout; strings as they are, other values as JSON;
 * `-v` prefixes the topic; `--codec auto` (default) tries MessagePack, then UTF-8 text.
 */
import { unpack } from 'msgpackr';
import { connect } from 'topicast';

const DEFAULT_URL = 'ws://127.0.0.1:8080/ws';

interface Args {
  topics: string[];
  message: string | undefined;
  retain: boolean;
  verbose: boolean;
  count: number;
  url: string;
  codec: string;
  token: string | undefined;
}

function usage(cmd: string, problem: string): number {
  process.stderr.write(`topicast ${cmd}: ${problem}\n`);
  return 2;
}

function parse(argv: string[]): Args | string {
  const a: Args = { topics: [], message: undefined, retain: false, verbose: false, count: 0, url: process.env.TOPICAST_URL ?? DEFAULT_URL, codec: '', token: process.env.TOPICAST_TOKEN };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${flag} needs a value`);
      return v;
    };
    try {
      switch (flag) {
        case '-t': case '--topic': a.topics.push(value()); break;
        case '-m': case '--message': a.message = value(); break;
        case '-r': case '--retain': a.retain = true; break;
        case '-v': case '--verbose': a.verbose = true; break;
        case '-C': case '--count': a.count = Number(value()); break;
        case '--url': a.url = value(); break;
        case '--codec': a.codec = value(); break;
        case '--token': a.token = value(); break;
        default: return `unknown option ${flag}`;
      }
    } catch (err) {
      return (err as Error).message;
    }
  }
  if (a.topics.length === 0) return '-t TOPIC is required';
  if (!Number.isInteger(a.count) || a.count < 0) return '-C must be a non-negative integer';
  return a;
}

function parseValue(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Best-effort decoding for display: MessagePack when it decodes cleanly, else UTF-8 text, else hex. */
export function displayPayload(bytes: Uint8Array): string {
  try {
    const v: unknown = unpack(bytes);
    return typeof v === 'string' ? v : JSON.stringify(v);
  } catch {
    try {
      return utf8.decode(bytes);
    } catch {
      return Buffer.from(bytes).toString('hex');
    }
  }
}

export async function runPubSub(cmd: 'pub' | 'sub', argv: string[]): Promise<number> {
  const args = parse(argv);
  if (typeof args === 'string') return usage(cmd, args);
  if (cmd === 'pub') {
    if (args.message === undefined) return usage(cmd, '-m VALUE is required');
    if (args.topics.length !== 1) return usage(cmd, 'exactly one -t TOPIC');
    const codec = (args.codec || 'msgpack') as 'msgpack' | 'json' | 'text';
    const client = await connect(args.url, { reconnect: false, codec, ...(args.token ? { token: args.token } : {}) });
    try {
      await client.publish(args.topics[0]!, codec === 'text' ? args.message : parseValue(args.message), { retain: args.retain, ack: true });
    } finally {
      await client.close();
    }
    return 0;
  }
  const client = await connect(args.url, { codec: 'raw', ...(args.token ? { token: args.token } : {}) });
  let seen = 0;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => (done = resolve));
  const show = args.codec === '' || args.codec === 'auto' ? displayPayload
    : args.codec === 'raw' ? (b: Uint8Array) => Buffer.from(b).toString('hex')
    : args.codec === 'text' ? (b: Uint8Array) => Buffer.from(b).toString('utf8')
    : args.codec === 'json' ? (b: Uint8Array) => Buffer.from(b).toString('utf8')
    : displayPayload;
  await client.subscribe(args.topics, (value, meta) => {
    const text = show(value as Uint8Array);
    process.stdout.write(args.verbose ? `${meta.topic} ${text}\n` : `${text}\n`);
    if (args.count > 0 && ++seen >= args.count) done();
  });
  const stop = (): void => done();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  await finished;
  await client.close();
  return 0;
}
