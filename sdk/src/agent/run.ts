/**
 * The agent assembled from a checked configuration: readers, the scheduler, the exec sensors, and the
 * actuators and Home Assistant discovery (commands.ts), through any `AgentTransport`. `topicast-agent` (cli.ts) runs it over a socket; the
 * broker's `--agent` mode runs it inside the broker with a transport that publishes straight into
 * its router (no socket, same topics and status semantics).
 *
 * `agentConfigFromSection` checks the `"agent"` object of another program's config file (the
 * broker's) with the same rules and messages as `topicast-agent --config`, the `TOPICAST_AGENT_*`
 * environment variables still applying on top.
 */
import { Agent } from './agent.js';
// For the broker's in-process transport, which loads this module and nothing else of the agent's entry.
export { inboundValue } from './inbound.js';
import { startCommands, type RunningCommands } from './commands.js';
import { ConfigError, parseAgentArgs, type AgentConfig } from './config.js';
import { ExecSensor } from './exec.js';
import { deviceInfo } from './info.js';
import { createReaders } from './readers/index.js';
import type { AgentTransport, Logger } from './types.js';

export interface RunningAgent {
  readonly agent: Agent;
  readonly execs: readonly ExecSensor[];
  readonly commands: RunningCommands;
  /** Stops the exec sensors and the actuators, then the agent: `status` goes `offline` (retained) and the transport closes. */
  stop(): Promise<void>;
}

/**
 * Starts readers, scheduler, exec sensors, actuators and discovery on `transport`.
 * @example
 * const running = runAgent(config, transport, createLogger('info'));
 * process.on('SIGTERM', () => running.stop().then(() => process.exit(0)));
 */
export function runAgent(config: AgentConfig, transport: AgentTransport, log: Logger): RunningAgent {
  const agent = new Agent({
    id: config.id,
    transport,
    readers: createReaders(config.readers, { root: config.root }),
    info: deviceInfo(config.root),
    intervalSec: config.intervalSec,
    maxAgeSec: config.maxAgeSec,
    rules: config.sensors,
    payload: config.payload,
    maxSensors: config.maxSensors,
    log,
  });
  const execs = config.exec.map((e) => new ExecSensor(e, agent, { log }));
  agent.start();
  for (const e of execs) e.start();
  const commands = startCommands(config, agent, transport, log);
  return {
    agent,
    execs,
    commands,
    async stop() {
      await Promise.all([...execs.map((e) => e.stop()), commands.stop()]);
      await agent.stop();
    },
  };
}

/** Settings that name the connection of a separate agent; an in-process agent has none. */
const CONNECTION_KEYS = ['url', 'transport', 'token'] as const;

/**
 * Checks an agent configuration given as an object inside another config file (`where` names it in
 * messages, e.g. `/etc/topicast/config.json: agent`), with `TOPICAST_AGENT_*` variables from `env`
 * taking precedence like they do for `topicast-agent`. Connection settings are refused: the agent
 * publishes into the process that runs it.
 * @throws ConfigError with one line naming the bad setting.
 * @example
 * const config = agentConfigFromSection({ id: 'pi-01', intervalSec: 2 }, 'config.json: agent', process.env);
 */
export function agentConfigFromSection(section: Record<string, unknown>, where: string, env: Record<string, string | undefined> = {}): AgentConfig {
  for (const key of CONNECTION_KEYS) {
    if (key in section) throw new ConfigError(`${where}: "${key}" does not apply to the agent inside the broker (it publishes straight into it)`);
  }
  const parsed = parseAgentArgs(['--config', where], { env: { ...env, TOPICAST_AGENT_CONFIG: undefined }, readFile: () => JSON.stringify(section) });
  if (parsed.action !== 'run') throw new ConfigError(`${where}: not an agent configuration`);
  if (parsed.config.once) throw new ConfigError(`${where}: --once does not apply to the agent inside the broker`);
  return parsed.config;
}
