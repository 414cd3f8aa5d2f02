/**
 * `topicast pub`: mosquitto_pub for the native protocol, on the public SDK.
 *
 * What is sent (docs/CLI.md): the payload bytes are exactly what was given — the text of -m or
 * of each -l line, the file of -f — so `mosquitto_sub` shows them as typed. The content type
 * says what they are: text that is JSON (`7`, `48.2`, `{"a":1}`, `true`) travels as
 * application/json, other text as text/plain, a file as application/octet-stream, each
 * overridable with --content-type. SDK subscribers thus get 48.2 as a number and `kitchen` as a
 * string. One exception, because MessagePack cannot be typed on a command line:
 * `--content-type application/msgpack` encodes the value of -m/-l (JSON when it parses, else the
 * text) as MessagePack.
 *
 * Every message is acknowledged by the broker before the command exits 0; -l keeps a bounded
 * window of unacknowledged lines, in order, so a long stream neither stalls on round trips nor
 * buffers without bound.
 */
import { readFile } from 'node:fs/promises';
import { connect, ContentType, formatOf, msgpack, type Client } from 'topicast';
import { contentTypeProblem, topicProblem } from 'topicast/protocol';
import { checkUrl, CliError, Exit, parseOptions, single, usage, type OptionSpec } from './args.js';
import { cliFailure } from './failure.js';

/** Where the commands connect without --url or TOPICAST_URL: a broker on this machine. */
export const DEFAULT_URL = 'ws://127.0.0.1:8080/ws';

export const PUB_OPTIONS: readonly OptionSpec[] = [
  { name: 'topic', short: 't', value: 'required' },
  { name: 'message', short: 'm', value: 'required' },
  { name: 'stdin-line', short: 'l' },
  { name: 'file', short: 'f', value: 'required' },
  { name: 'null-message', short: 'n' },
  { name: 'retain', short: 'r' },
  { name: 'content-type', value: 'required' },
  { name: 'codec', value: 'required' },
  { name: 'url', value: 'required' },
  { name: 'token', value: 'required' },
];

export const PUB_HELP = `Usage: topicast pub -t TOPIC (-m VALUE | -l | -f FILE | -n) [-r] [--content-type TYPE]
                    [--url URL] [--token TOKEN]

Publishes over the native protocol and exits once the broker has acknowledged every message.
The payload is the bytes given, unchanged; its content type tells subscribers what they are.

  -t, --topic TOPIC         topic to publish to (no + or # wildcards)
  -m, --message VALUE       one message: text that is JSON (7, 48.2, {"a":1}, true) is sent as
                            application/json, any other text as text/plain
  -l, --stdin-line          one message per line of stdin, in order, typed like -m
                            (like mosquitto_pub -l: an empty line is an empty message)
  -f, --file FILE           one message: the file's bytes, as application/octet-stream
  -n, --null-message        one empty message (with -r: deletes the topic's retained value)
  -r, --retain              keep as the topic's retained value
      --content-type TYPE   send with this content type instead; application/msgpack encodes the
                            -m/-l value (JSON when it parses, else the text) as MessagePack, the way
                            the SDK publishes; JSON and text types must match what is sent
      --codec NAME          msgpack | json | text | raw: that codec's content type
      --url URL             the broker's native endpoint (env TOPICAST_URL; default ${DEFAULT_URL})
      --token TOKEN         auth token (env TOPICAST_TOKEN)
      --help                this text

Exit status: 0 every message acknowledged; 1 the broker could not be reached or refused;
2 usage error (the line on stderr names the option to change).
`;


/** Most -l lines awaiting the broker's acknowledgement at once. */
const LINE_WINDOW = 256; // a few round trips of typical sensor lines; bounds memory for any input

const CODEC_TYPES: { readonly [codec: string]: string } = {
  msgpack: ContentType.msgpack,
  json: ContentType.json,
  text: ContentType.text,
  raw: ContentType.bytes,
};

const utf8 = new TextDecoder('utf-8', { fatal: true });
const utf8Encoder = new TextEncoder();

function utf8Text(bytes: Uint8Array): string | undefined {
  try {
    return utf8.decode(bytes);
  } catch {
    return undefined;
  }
}

function isJson(text: string): boolean {
  try {
    JSON.parse(text);
    return true;
  } catch {
    return false;
  }
}

/** A payload and the content type it is published with. */
export interface Outgoing {
  payload: Uint8Array;
  contentType: string;
}

/**
 * The payload of -m VALUE or of one -l line (`what` names it in errors).
 * Without `forced`: JSON text → application/json, other text → text/plain, bytes that are not
 * UTF-8 (only from stdin) → application/octet-stream; the bytes unchanged in every case.
 */
export function textPayload(bytes: Uint8Array, forced: string | undefined, what: string): Outgoing {
  const text = utf8Text(bytes);
  if (forced === undefined) {
    if (text === undefined) return { payload: bytes, contentType: ContentType.bytes };
    return { payload: bytes, contentType: text !== '' && isJson(text) ? ContentType.json : ContentType.text };
  }
  switch (formatOf(forced)) {
    case 'msgpack': {
      if (text === undefined) throw new CliError(`${what} is not UTF-8 text, so it cannot be encoded as MessagePack; send bytes with -f`, Exit.usage);
      return { payload: msgpack.encode(text !== '' && isJson(text) ? JSON.parse(text) : text), contentType: forced };
    }
    default:
      return filePayload(bytes, forced, what);
  }
}

/** The payload of -f FILE: its bytes unchanged, application/octet-stream unless `forced`; a JSON or text type must fit. */
export function filePayload(bytes: Uint8Array, forced: string | undefined, what: string): Outgoing {
  if (forced === undefined) return { payload: bytes, contentType: ContentType.bytes };
  if (bytes.length === 0) return { payload: bytes, contentType: forced };
  switch (formatOf(forced)) {
    case 'json': {
      const text = utf8Text(bytes);
      if (text === undefined || !isJson(text)) throw new CliError(`${what} is not JSON, but --content-type ${forced} says it is; fix the value or the type`, Exit.usage);
      break;
    }
    case 'text':
      if (utf8Text(bytes) === undefined) throw new CliError(`${what} is not UTF-8 text, but --content-type ${forced} says it is; use application/octet-stream`, Exit.usage);
      break;
    case 'msgpack':
      try {
        msgpack.decode(bytes);
      } catch {
        throw new CliError(`${what} is not one MessagePack value, but --content-type ${forced} says it is; fix the file or the type`, Exit.usage);
      }
      break;
  }
  return { payload: bytes, contentType: forced };
}

interface PubArgs {
  topic: string;
  source: { kind: 'message'; text: string } | { kind: 'lines' } | { kind: 'file'; path: string } | { kind: 'null' };
  retain: boolean;
  contentType: string | undefined;
  url: string;
  token: string | undefined;
}

function parsePub(argv: readonly string[]): PubArgs {
  const p = parseOptions('pub', argv, PUB_OPTIONS);
  const topics = p.get('topic') ?? [];
  if (topics.length !== 1) throw usage('pub', topics.length === 0 ? '-t TOPIC is required' : 'give exactly one -t TOPIC');
  const topic = topics[0]!;
  const problem = topicProblem(topic);
  if (problem) throw usage('pub', `-t ${JSON.stringify(topic)} is not a valid topic name: it ${problem}`);
  const given = (['message', 'stdin-line', 'file', 'null-message'] as const).filter((k) => p.has(k));
  if (given.length !== 1) throw usage('pub', given.length === 0 ? 'say what to publish: -m VALUE, -l (stdin lines), -f FILE or -n' : `give only one of -m, -l, -f, -n (got ${given.map((k) => `--${k}`).join(', ')})`);
  const source: PubArgs['source'] =
    given[0] === 'message' ? { kind: 'message', text: single('pub', p, 'message', '-m')! }
    : given[0] === 'file' ? { kind: 'file', path: single('pub', p, 'file', '-f')! }
    : given[0] === 'stdin-line' ? { kind: 'lines' }
    : { kind: 'null' };
  let contentType = single('pub', p, 'content-type', '--content-type');
  const codec = single('pub', p, 'codec', '--codec');
  if (codec !== undefined) {
    if (contentType !== undefined) throw usage('pub', 'give --content-type or --codec, not both');
    contentType = CODEC_TYPES[codec];
    if (contentType === undefined) throw usage('pub', `--codec ${JSON.stringify(codec)} is not one of ${Object.keys(CODEC_TYPES).join(', ')}`);
  }
  if (contentType !== undefined) {
    const ctProblem = contentTypeProblem(contentType);
    if (ctProblem) throw usage('pub', `--content-type ${JSON.stringify(contentType)} ${ctProblem}`);
  }
  const url = checkUrl('pub', single('pub', p, 'url', '--url') ?? (process.env.TOPICAST_URL || DEFAULT_URL));
  const token = single('pub', p, 'token', '--token') ?? (process.env.TOPICAST_TOKEN || undefined);
  return { topic, source, retain: p.has('retain'), contentType, url, token };
}

function publish(client: Client, args: PubArgs, out: Outgoing, what: string): Promise<void> {
  return client
    .publish(args.topic, out.payload, { codec: 'raw', contentType: out.contentType, retain: args.retain, ack: true })
    .catch((err: unknown) => {
      throw cliFailure(err, { url: args.url, withToken: args.token !== undefined, request: `${what} on ${args.topic}` });
    });
}

/** Runs `topicast pub`; resolves with the exit status, throws a CliError for the failure line. */
export async function runPub(argv: readonly string[]): Promise<number> {
  const args = parsePub(argv);
  // Read the file before connecting: a wrong path fails without touching the broker.
  let message: Outgoing | undefined;
  if (args.source.kind === 'message') message = textPayload(utf8Encoder.encode(args.source.text), args.contentType, '-m VALUE');
  else if (args.source.kind === 'null') message = { payload: new Uint8Array(0), contentType: args.contentType ?? ContentType.bytes };
  else if (args.source.kind === 'file') {
    const path = args.source.path;
    const bytes = await readFile(path).catch((err: NodeJS.ErrnoException) => {
      const why = err.code === 'ENOENT' ? 'no such file' : err.code === 'EISDIR' ? 'it is a directory' : err.code === 'EACCES' ? 'permission denied' : err.message;
      throw new CliError(`cannot read -f ${path}: ${why}`, Exit.usage);
    });
    message = filePayload(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), args.contentType, `-f ${path}`);
  }
  const client = await connect(args.url, { reconnect: false, ...(args.token ? { token: args.token } : {}) }).catch((err: unknown) => {
    throw cliFailure(err, { url: args.url, withToken: args.token !== undefined, request: 'the connection' });
  });
  try {
    if (message) await publish(client, args, message, 'the message');
    else await publishLines(client, args);
  } finally {
    await client.close();
  }
  return Exit.ok;
}

/** -l: one message per stdin line, published as lines arrive, at most LINE_WINDOW unacknowledged. */
async function publishLines(client: Client, args: PubArgs): Promise<void> {
  const maxLineBytes = client.server?.maxPayloadBytes || 64 * 1024 * 1024;
  let failure: unknown;
  const inFlight: Promise<void>[] = [];
  let n = 0;
  try {
    for await (const line of readLines(process.stdin, maxLineBytes)) {
      if (failure !== undefined) break;
      n++;
      const p = publish(client, args, textPayload(line, args.contentType, `line ${n}`), `line ${n}`);
      // A refusal stops the reading at once, even while stdin is quiet (tail -f | topicast pub -l).
      p.catch((err: unknown) => {
        failure ??= err;
        process.stdin.destroy();
      });
      inFlight.push(p);
      if (inFlight.length >= LINE_WINDOW) await inFlight.shift();
    }
    if (failure !== undefined) throw failure;
    for (const p of inFlight) await p;
  } catch (err) {
    throw failure ?? err;
  } finally {
    process.stdin.destroy();
  }
}

/**
 * Splits a byte stream at '\n' (the '\n' removed, every other byte kept, like mosquitto_pub -l);
 * a last line without '\n' counts, a line longer than `maxBytes` is an error.
 */
export async function* readLines(stream: AsyncIterable<Uint8Array>, maxBytes: number): AsyncGenerator<Uint8Array> {
  let parts: Uint8Array[] = [];
  let size = 0;
  let n = 0;
  for await (const chunk of stream) {
    let start = 0;
    for (let i = chunk.indexOf(0x0a); i >= 0; i = chunk.indexOf(0x0a, start)) {
      const piece = chunk.subarray(start, i);
      n++;
      if (size + piece.length > maxBytes) throw new CliError(`line ${n} of stdin is longer than the broker's largest payload (${maxBytes} bytes)`, Exit.failed);
      yield parts.length === 0 ? piece : Buffer.concat([...parts, piece]);
      parts = [];
      size = 0;
      start = i + 1;
    }
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      size += rest.length;
      if (size > maxBytes) throw new CliError(`line ${n + 1} of stdin is longer than the broker's largest payload (${maxBytes} bytes)`, Exit.failed);
      parts.push(rest);
    }
  }
  if (parts.length > 0) yield Buffer.concat(parts);
}
