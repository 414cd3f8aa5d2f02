/**
 * The one command-line tokenizer of `topicast`, `topicast pub|sub` and `topicast-agent`
 * (imported as `topicast/options`; no `node:*` import, so it runs anywhere).
 *
 * Each option is declared once in a spec table; the tokenizer turns argv into values by long
 * name and stops at the first problem, which it reports as a one-line message (and its kind, so
 * each command can word it in its own error). The rules:
 * - `--name VALUE`, `--name=VALUE`, and `-s VALUE` for a one-letter alias; no bundling (`-rv`).
 * - A value taken from the next argument never looks like an option: an argument starting with
 *   `--`, or exactly a declared alias such as `-t`, is not a value (`--url --id x` is a missing
 *   value, not the URL "--id"). A value of that shape is given attached: `--message=--x`.
 *   Other arguments starting with one dash (`-5`) are values.
 * - value kinds: `none` (a flag: `--once`; `--once=x` is a problem), `required`, `optional`
 *   (`--homeassistant`, `--homeassistant PREFIX` or `--homeassistant=PREFIX`: the next argument
 *   is taken when it is not an option) and `attached` (a value only as `--name=VALUE`, else the
 *   flag alone: how boolean settings read `--agent` and `--agent=false` without ever swallowing
 *   the argument after them).
 * - Anything else starting with `-` (but `-` itself) is an unknown option; other arguments are
 *   positionals, a problem unless the caller accepts them.
 * - Every occurrence is kept, in order: a caller decides whether a repeat appends or replaces.
 */

/** How an option takes its value. */
export type OptionValueKind = 'none' | 'required' | 'optional' | 'attached';

/** One option of a command. */
export interface OptionSpec {
  /** Long name without dashes, e.g. 'topic'. */
  readonly name: string;
  /** One-letter alias without the dash, e.g. 't'. */
  readonly short?: string;
  /** How it takes a value (default 'none'). */
  readonly value?: OptionValueKind;
}

/** What an occurrence carries: its value, or `true` when it was given without one. */
export type OptionValue = string | true;

export type OptionProblemKind = 'unknown-option' | 'missing-value' | 'unwanted-value' | 'unexpected-argument';

/** The first thing wrong with a command line. */
export interface OptionProblem {
  readonly kind: OptionProblemKind;
  /** One line: `unknown option --x`, `--x needs a value`, `--x takes no value`, `unexpected argument "x"`. */
  readonly message: string;
  /** The option as typed (`-t`, `--topic`, without `=VALUE`), or the unexpected argument itself. */
  readonly arg: string;
  /** The spec's long name, when the problem is with a declared option. */
  readonly name?: string;
  /** Where in argv the offending argument is. */
  readonly index: number;
}

export interface Tokens {
  /** Every value of each option given, by long name, in the order given. */
  readonly values: Map<string, OptionValue[]>;
  readonly positionals: string[];
  /** The first problem; values and positionals then hold what came before it. */
  readonly problem: OptionProblem | undefined;
}

export interface TokenizeOptions {
  /** Accept arguments that are not options (default false: each is an `unexpected-argument`). */
  readonly positionals?: boolean;
}

/**
 * Splits `argv` by `specs`.
 * @example
 * const { values, problem } = tokenize(['--url', 'ws://h:8080/ws', '--once'], [{ name: 'url', value: 'required' }, { name: 'once' }]);
 * if (problem) throw new Error(problem.message);
 * values.get('url'); // ['ws://h:8080/ws']
 */
export function tokenize(argv: readonly string[], specs: readonly OptionSpec[], options: TokenizeOptions = {}): Tokens {
  const byFlag = new Map<string, OptionSpec>();
  for (const s of specs) {
    byFlag.set(`--${s.name}`, s);
    if (s.short !== undefined) byFlag.set(`-${s.short}`, s);
  }
  const isOption = (arg: string) => arg.startsWith('--') || byFlag.has(arg);
  const values = new Map<string, OptionValue[]>();
  const positionals: string[] = [];
  const stop = (kind: OptionProblemKind, index: number, arg: string, message: string, name?: string): Tokens => ({
    values,
    positionals,
    problem: name === undefined ? { kind, message, arg, index } : { kind, message, arg, name, index },
  });
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith('-') || arg === '-') {
      if (!options.positionals) return stop('unexpected-argument', i, arg, `unexpected argument ${JSON.stringify(arg)}`);
      positionals.push(arg);
      continue;
    }
    const eq = arg.startsWith('--') ? arg.indexOf('=') : -1;
    const flag = eq > 0 ? arg.slice(0, eq) : arg;
    const spec = byFlag.get(flag);
    if (!spec) return stop('unknown-option', i, flag, `unknown option ${shown(flag)}`);
    const kind = spec.value ?? 'none';
    let value: OptionValue = true;
    if (eq > 0) {
      if (kind === 'none') return stop('unwanted-value', i, flag, `${flag} takes no value`, spec.name);
      value = arg.slice(eq + 1);
    } else if (kind === 'required' || kind === 'optional') {
      const next = argv[i + 1];
      if (next !== undefined && !isOption(next)) {
        value = next;
        i++;
      } else if (kind === 'required') {
        return stop('missing-value', i, flag, `${flag} needs a value`, spec.name);
      }
    }
    const list = values.get(spec.name);
    if (list) list.push(value);
    else values.set(spec.name, [value]);
  }
  return { values, positionals, problem: undefined };
}

/** An option as typed, quoted when it holds spaces or control characters so the message stays one line. */
function shown(flag: string): string {
  return /^[!-~]+$/.test(flag) ? flag : JSON.stringify(flag);
}

/**
 * The last value given for `name` (a later occurrence overrides an earlier one), or undefined.
 * @example
 * last(tokenize(['--id', 'a', '--id', 'b'], [{ name: 'id', value: 'required' }]).values, 'id'); // 'b'
 */
export function last(values: ReadonlyMap<string, readonly OptionValue[]>, name: string): OptionValue | undefined {
  const list = values.get(name);
  return list === undefined ? undefined : list[list.length - 1];
}
