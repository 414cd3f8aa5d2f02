/**
 * `topicast pub` and `topicast sub`: mosquitto_pub / mosquitto_sub for the native protocol,
 * built on the public SDK (pub.ts, sub.ts; docs/CLI.md). This file is their process contract:
 * `--help` on stdout; every failure one line `topicast pub: …` on stderr that names what to
 * change, with the exit status of args.ts `Exit` — never a stack trace, whatever went wrong.
 */
import { CliError, Exit, oneLine } from './args.js';
import { PUB_HELP, runPub } from './pub.js';
import { runSub, SUB_HELP } from './sub.js';

export async function runPubSub(cmd: 'pub' | 'sub', argv: readonly string[]): Promise<number> {
  const say = (line: string): void => {
    process.stderr.write(`topicast ${cmd}: ${oneLine(line)}\n`);
  };
  if (argv.includes('--help')) {
    process.stdout.write(cmd === 'pub' ? PUB_HELP : SUB_HELP);
    return Exit.ok;
  }
  // A bug must still end in one line, not a trace: the CLI is a device's tool, read by scripts.
  const crash = (err: unknown): void => {
    say(`internal error: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(Exit.failed);
  };
  process.on('uncaughtException', crash);
  process.on('unhandledRejection', crash);
  try {
    return cmd === 'pub' ? await runPub(argv) : await runSub(argv, say);
  } catch (err) {
    if (err instanceof CliError) {
      say(err.message);
      return err.exitCode;
    }
    say(err instanceof Error ? err.message : String(err));
    return Exit.failed;
  }
}
