/**
 * `topicast --agent`: the device agent (sdk/src/agent, the same code as `topicast-agent`) inside the
 * broker process, publishing straight into the router. One Node runtime on a small board instead
 * of two, and no socket, codec round trip or reconnect loop between them.
 *
 * Same topics and payloads as the native transport: `devices/<id>/...`, values encoded as the SDK's
 * default codec publishes them (MessagePack tagged `application/msgpack`), so SDK subscribers, the
 * dashboard and MQTT subscribers (JSON, converted by the broker) read them alike. Status follows the broker's own lifecycle instead of a will: `online`
 * (retained) when the agent starts with the broker, `offline` (retained, on disk with `--data`)
 * as the first step of a graceful shutdown. After a kill -9 nobody is left to say `offline`; the
 * restarted broker loads `online` from its store and the agent publishes it again at once.
 *
 * Actuators (commands to the device) subscribe through the router like any client, so
 * `devices/<id>/set/<name>` from the SDK, MQTT or HTTP reaches them; answers go to the request's
 * response topic with its correlation data.
 *
 * The agent's configuration is the `"agent"` object of the broker's config file (any key of
 * `topicast-agent --config` except url, transport and token), with `TOPICAST_AGENT_*` variables on top.
 */
import { Packr } from 'msgpackr';
import { ContentType } from 'topicast/protocol';
import type { AgentConfig, AgentTransport, Inbound, Logger as AgentLogger, Payload, RunningAgent } from 'topicast/agent';
// Not 'topicast/agent': its entry also exports the socket transports (the SDK client, ws, mqtt.js), megabytes
// of code a broker never runs.
import { inboundValue } from 'topicast/agent/run';
import { ConfigError } from '../config.js';
import type { BrokerContext } from '../context.js';
import { createMessage, type MessageProperties } from '../core/message.js';
import type { Subscriber } from '../core/router.js';

// The SDK's msgpack codec options: plain MessagePack any decoder reads, the same bytes an SDK publish carries,
// tagged as such (PROTOCOL.md §8), so MQTT subscribers get JSON text as from a separate agent.
const packr = new Packr({ useRecords: false, mapsAsObjects: true, encodeUndefinedAsNil: true });
const AS_MSGPACK: MessageProperties = Object.freeze({ contentType: ContentType.msgpack });

/** Encodes agent values for the router; exported for tests. */
export function encodeAgentPayload(payload: Payload): Uint8Array {
  return packr.pack(payload);
}


/**
 * An `AgentTransport` on the router: publishes go straight in, subscriptions (the actuators'
 * `devices/<id>/set/+`) are router subscribers. Open from creation until `close`.
 */
export function inProcessTransport(ctx: BrokerContext): AgentTransport {
  let open = true;
  const publish = (topic: string, payload: Payload, retain: boolean, correlationData?: Uint8Array): void | Promise<void> =>
    ctx.router.publish(createMessage(topic, encodeAgentPayload(payload), retain, undefined, 0, correlationData === undefined ? AS_MSGPACK : { ...AS_MSGPACK, correlationData })).durable;
  return {
    kind: 'in-process',
    isOpen: () => open,
    onOpen: () => () => {}, // never reopens: the agent announces itself at start because isOpen() is already true
    publish(topic, payload, retain, extra) {
      if (!open) return Promise.reject(new Error('the broker is shutting down'));
      // Delivered now; with --data the promise settles when the retained write is on disk (the agent counts a failure).
      return Promise.resolve(publish(topic, payload, retain, extra?.correlationData));
    },
    subscribe(filter, handler) {
      const subscriber: Subscriber = {
        routerStamp: 0,
        deliver(message) {
          const m: Inbound = { topic: message.topic, value: inboundValue(message.payload, message.properties?.contentType), retained: false };
          const props = message.properties;
          if (props?.responseTopic !== undefined) m.responseTopic = props.responseTopic;
          if (props?.correlationData !== undefined) m.correlationData = props.correlationData;
          setImmediate(() => handler(m)); // the router's rule: no publish from inside a delivery
        },
      };
      ctx.router.subscribe(subscriber, filter, { qos: 0 });
      return () => void ctx.router.unsubscribe(subscriber, filter);
    },
    async close(last) {
      if (!open) return;
      open = false;
      if (last) await publish(last.topic, last.payload, true); // on disk (with --data) before the stores close
    },
  };
}

export interface InProcessAgent {
  readonly config: AgentConfig;
  readonly running: RunningAgent;
  /** Publishes `offline` and stops readers and exec sensors. */
  stop(): Promise<void>;
}

/**
 * Checks the agent's configuration and starts it on the router. The agent modules are loaded here,
 * so a broker without `--agent` never loads them.
 * @throws ConfigError naming the bad agent setting.
 */
export async function startInProcessAgent(ctx: BrokerContext, env: NodeJS.ProcessEnv = process.env): Promise<InProcessAgent> {
  const { agentConfigFromSection, runAgent } = await import('topicast/agent/run');
  const where = ctx.config.agentSection === undefined ? 'the agent settings' : `${ctx.config.config ?? 'the config file'}: agent`;
  let config: AgentConfig;
  try {
    config = agentConfigFromSection(ctx.config.agentSection ?? {}, where, env);
  } catch (err) {
    if ((err as Error).name === 'ConfigError') throw new ConfigError(`invalid agent setting: ${(err as Error).message}`);
    throw err;
  }
  const pino = ctx.log.child({ component: 'agent', device: config.id });
  const log: AgentLogger = {
    error: (m) => pino.error(m),
    warn: (m) => pino.warn(m),
    info: (m) => pino.info(m),
    debug: (m) => pino.debug(m),
  };
  const running = runAgent(config, inProcessTransport(ctx), log);
  ctx.log.info({ device: config.id, readers: config.readers.length, exec: running.execs.length, actuators: config.actuators.length, intervalSec: config.intervalSec }, `agent in-process: publishing devices/${config.id}/`);
  return { config, running, stop: () => running.stop() };
}
