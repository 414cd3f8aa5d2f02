/**
 * topicast/agent: the device agent as a library. The `topicast-agent` command (cli.ts) is built
 * from these pieces; use them to embed an agent or to write a reader of your own.
 * @example
 * import { Agent, createReaders, deviceInfo, nativeTransport } from 'topicast/agent';
 * const transport = await nativeTransport({ url: 'ws://127.0.0.1:8080/ws', id: 'pi-01' });
 * const agent = new Agent({ id: 'pi-01', transport, readers: createReaders(), info: deviceInfo() });
 * agent.start();
 */
export { Agent, DEFAULT_INTERVAL_SEC, DEFAULT_MAX_AGE_SEC, DEFAULT_MAX_SENSORS, DEFAULT_THRESHOLDS } from './agent.js';
export type { AgentOptions, AgentStats, DeviceInfo, OfferOptions, SensorRule, SensorSettings } from './agent.js';
export type { AgentTransport, Clock, Inbound, Logger, LogLevel, Payload, Reader, ReaderOptions, Sample } from './types.js';
export { systemClock, silentLogger } from './types.js';
export { createLogger, LOG_LEVELS } from './log.js';
export { ExecSensor, parseExecLine, MAX_LINE_BYTES, type ExecSensorConfig, type ExecSink, type ExecExit, type ExecSensorOptions } from './exec.js';
export { parseAgentArgs, ConfigError, DEFAULT_URL, USAGE, type AgentConfig, type ParsedArgs, type ParseEnvironment } from './config.js';
export { runAgent, agentConfigFromSection, type RunningAgent } from './run.js';
export { readOnce, ONCE_SAMPLE_MS, type OnceRound } from './once.js';
export { deviceInfo, agentVersion, distribution } from './info.js';
export { sensorFilterMatches, sensorFilterProblem } from './filter.js';
export { Actuator, Actuators, actuatorInfo, commandValue, DEFAULT_ACTUATOR_MAX_PER_SEC, DEFAULT_ACTUATOR_MAX_QUEUE, DEFAULT_ACTUATOR_TIMEOUT_SEC, DEFAULT_STRING_MAX_LENGTH } from './actuator.js';
export type { ActuatorConfig, ActuatorHost, ActuatorInfo, ActuatorStats, ActuatorType, CommandResult } from './actuator.js';
export { DEFAULT_HOMEASSISTANT_PREFIX, discoveryConfigs, HomeAssistantDiscovery, objectId, type DiscoveryConfig, type DiscoveryInput } from './homeassistant.js';
export { startCommands, type RunningCommands } from './commands.js';
export { nativeTransport, type NativeTransportOptions } from './transport/native.js';
export { mqttTransport, mqttPayload, type MqttTransportOptions } from './transport/mqtt.js';
export { inboundValue } from './inbound.js';
export * from './readers/index.js';
export { naturalCompare, topicLevel } from './readers/fs.js';
export { mountName, type FsStats, type DiskReaderOptions } from './readers/disk.js';
