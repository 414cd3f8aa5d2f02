// Runs the real `topicast-agent` (sdk/dist/agent/cli.js) as a child process for the integration
// tests (test/integration/agent-*.test.ts); every agent started here is killed when the test file ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const AGENT_CLI = fileURLToPath(new URL('../../../../../sdk/dist/agent/cli.js', import.meta.url));

export interface AgentProcess {
  proc: ChildProcess;
  pid: number;
  /** stderr lines (the agent's log). */
  logs: string[];
  stdout: string[];
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  kill(signal: NodeJS.Signals): void;
}

// Tests kill their agents in `finally`; this is the net for a test that failed before reaching it.
// (node:test's after() called inside a test would attach to that test only, so it is not used here.)
const running = new Set<ChildProcess>();
let hooked = false;

export function spawnAgent(args: string[], env: Record<string, string> = {}, node: string = process.execPath): AgentProcess {
  if (!hooked) {
    hooked = true;
    process.on('exit', () => {
      for (const p of running) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    });
  }
  const proc = spawn(node, [AGENT_CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(proc);
  const logs: string[] = [];
  const stdout: string[] = [];
  for (const [stream, lines] of [
    [proc.stderr!, logs],
    [proc.stdout!, stdout],
  ] as const) {
    let buf = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        lines.push(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    stream.on('end', () => {
      if (buf !== '') lines.push(buf);
    });
  }
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    proc.on('close', (code, signal) => {
      running.delete(proc);
      resolve({ code, signal });
    }),
  );
  return {
    proc,
    pid: proc.pid!,
    logs,
    stdout,
    exited,
    kill(signal) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
    },
  };
}

/** Polls until `predicate` holds; fails after `timeoutMs` naming `what` and showing `context()`. */
export async function eventually(predicate: () => boolean, what: string, timeoutMs = 10_000, context: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${context()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
