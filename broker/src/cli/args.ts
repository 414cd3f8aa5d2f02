/**
 * Command-line parsing for `topicast pub` and `topicast sub`, mosquitto style:
 * `-t X`, `--topic X` and `--topic=X`; repeatable flags collect every value.
 * Every problem is a `CliError` whose message is one line naming what to change.
 */
import { tokenize, type OptionSpec } from 'topicast/options';

/** A failure the command reports as one line on stderr, with its exit status. */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(message: string, readonly exitCode: number) {
    super(message);
  }
}

/** Exit statuses, as documented in each command's --help. */
export const Exit = {
  ok: 0,
  /** The broker could not be reached, refused, or the connection was lost for good. */
  failed: 1,
  /** A usage error: fix the command line. */
  usage: 2,
  /** `sub -W` ran out (mosquitto_sub's status for the same thing, so scripts port unchanged). */
  timeout: 27,
} as const;

export type { OptionSpec } from 'topicast/options';

/** Each option's values by long name; a flag given without a value has `''`. */
export type Parsed = Map<string, string[]>;

// mosquitto users type these out of habit: say where the setting goes instead.
const MOSQUITTO_HINTS: { readonly [flag: string]: string } = {
  '-h': 'the broker is given as --url ws://HOST:8080/ws',
  '-p': 'the port is part of --url ws://HOST:PORT/ws',
  '-u': 'authenticate with --token TOKEN',
  '-P': 'authenticate with --token TOKEN',
};

/**
 * Parses `argv` against `specs` (topicast/options' rules). Returns every option's values by long
 * name, repeats collected in order. Throws a usage `CliError` for an unknown option, a missing or
 * unwanted value, or a positional argument.
 */
export function parseOptions(cmd: string, argv: readonly string[], specs: readonly OptionSpec[]): Parsed {
  const { values, problem } = tokenize(argv, specs);
  if (problem) {
    const hint = problem.kind === 'unknown-option' ? MOSQUITTO_HINTS[problem.arg] : undefined;
    throw usage(cmd, hint ? `${problem.message}: ${hint}` : problem.message);
  }
  const out: Parsed = new Map();
  for (const [name, list] of values) out.set(name, list.map((v) => (v === true ? '' : v)));
  return out;
}

/** The usage error of `cmd`: one line that ends by pointing at --help. */
export function usage(cmd: string, problem: string): CliError {
  return new CliError(`${problem} (see topicast ${cmd} --help)`, Exit.usage);
}

/** The single value of an option given at most once, or undefined. */
export function single(cmd: string, parsed: Parsed, name: string, flag: string): string | undefined {
  const values = parsed.get(name);
  if (!values) return undefined;
  if (values.length > 1) throw usage(cmd, `${flag} given ${values.length} times; give it once`);
  return values[0];
}

/** A non-negative integer option (`-C 3`, `-W 10`), or undefined when absent. */
export function count(cmd: string, parsed: Parsed, name: string, flag: string): number | undefined {
  const raw = single(cmd, parsed, name, flag);
  if (raw === undefined) return undefined;
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(Number(raw))) throw usage(cmd, `${flag} ${JSON.stringify(raw)} is not a whole number`);
  return Number(raw);
}

/**
 * Checks `--url`: the native protocol is spoken over ws:// or wss:// only; other schemes get
 * the line that says what to give instead.
 */
export function checkUrl(cmd: string, url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw usage(cmd, `--url ${JSON.stringify(url)} is not a URL; give the broker's native endpoint, e.g. ws://localhost:8080/ws`);
  }
  switch (parsed.protocol) {
    case 'ws:':
    case 'wss:':
      return url;
    case 'mqtt:':
    case 'mqtts:':
    case 'tcp:':
      throw usage(cmd, `--url ${url}: topicast ${cmd} speaks the native protocol; give ws://${parsed.host.replace(/:\d+$/, '')}:8080/ws (or use mosquitto_${cmd} for MQTT)`);
    case 'http:':
    case 'https:':
      throw usage(cmd, `--url ${url}: give the WebSocket endpoint, ${parsed.protocol === 'https:' ? 'wss' : 'ws'}://${parsed.host}/ws`);
    default:
      throw usage(cmd, `--url ${url}: the scheme must be ws:// or wss://, e.g. ws://localhost:8080/ws`);
  }
}

/** One line: newlines and other control characters in a message become spaces. */
export function oneLine(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]+/g, ' ').trim();
}
