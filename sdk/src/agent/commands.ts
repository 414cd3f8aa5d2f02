/**
 * What flows down to a device, next to the readings that flow up: the actuators of the agent's
 * configuration (actuator.ts) and Home Assistant discovery (homeassistant.ts), started on the same
 * `Agent` and `AgentTransport` as the readers, so a separate `topicast-agent` and an agent inside
 * the broker serve commands alike.
 */
import { Actuators } from './actuator.js';
import type { Agent } from './agent.js';
import type { AgentConfig } from './config.js';
import { HomeAssistantDiscovery } from './homeassistant.js';
import type { AgentTransport, Logger } from './types.js';

/**
 * The actuators and discovery of a running agent.
 * @example
 * const { actuators }: RunningCommands = startCommands(config, agent, transport, log);
 */
export interface RunningCommands {
  readonly actuators: Actuators;
  readonly homeassistant: HomeAssistantDiscovery | undefined;
  /** Stops listening and stops the actuators' programs (before the agent says `offline`). */
  stop(): Promise<void>;
}

/**
 * Starts the configured actuators and, with `homeassistant` set, discovery. Call after `agent.start()`.
 * @example
 * agent.start();
 * const commands = startCommands(config, agent, transport, log);
 * process.on('SIGTERM', () => commands.stop().then(() => agent.stop()));
 */
export function startCommands(config: Pick<AgentConfig, 'id' | 'actuators' | 'homeassistant' | 'payload'>, agent: Agent, transport: AgentTransport, log: Logger): RunningCommands {
  let ha: HomeAssistantDiscovery | undefined;
  let offInfo: (() => void) | undefined;
  if (config.homeassistant !== undefined) {
    const discovery = new HomeAssistantDiscovery({ id: config.id, transport, payload: config.payload, prefix: config.homeassistant, log });
    ha = discovery;
    offInfo = agent.onInfo((info) => discovery.publish(info));
    discovery.start();
  }
  const actuators = new Actuators(config.actuators, { id: config.id, transport, declareActuator: (a) => agent.declareActuator(a) }, { log });
  actuators.start();
  agent.refresh(); // info (and discovery) as of now: the actuators are listed
  return {
    actuators,
    homeassistant: ha,
    async stop() {
      offInfo?.();
      ha?.stop();
      await actuators.stop();
    },
  };
}
