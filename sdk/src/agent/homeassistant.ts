/**
 * Home Assistant MQTT discovery (https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery):
 * `topicast-agent --homeassistant [PREFIX]` publishes one retained config per sensor and actuator on
 * `<PREFIX>/<component>/<object id>/config` (PREFIX defaults to `homeassistant`, HA's own default),
 * so the device and its entities appear in Home Assistant without any YAML.
 *
 * - Every config names the device (`identifiers` `topicast_<id>`, the id as name, the model from
 *   `info`), a `unique_id` `topicast_<id>_<path>`, and availability from `devices/<id>/status`
 *   (`online` / `offline`, which the agent's will keeps true after a crash).
 * - Sensors: `sensor` with `state_topic` = the reading's topic, the unit, `device_class` and
 *   `state_class` where the unit says what it measures, and `value_template` `{{ value_json.value }}`
 *   for `{ value, unit, ts }` readings. Readings reach MQTT subscribers as JSON (a Topicast broker
 *   converts the SDK's MessagePack; the MQTT transport publishes JSON).
 * - Actuators: `switch` (boolean), `number` (min/max/step, a slider), `select` (string with options),
 *   `text` (string), `button`, each with `command_topic` `devices/<id>/set/<name>`.
 * - Configs are published at every connection, whenever `info` changes (a new sensor), and again
 *   when Home Assistant announces itself (`<PREFIX>/status` = `online`, its birth message), so a
 *   Home Assistant that lost its state (or started after the agent) rediscovers the device.
 * - Object ids are `<id>_<path with '/' as '_'>`: HA allows only `[a-zA-Z0-9_-]` there.
 */
import type { ActuatorInfo } from './actuator.js';
import type { AgentTransport, Inbound, Logger, Payload } from './types.js';
import { silentLogger } from './types.js';

/** Home Assistant's own default discovery prefix. @example new HomeAssistantDiscovery({ id, transport, payload: 'reading', prefix: DEFAULT_HOMEASSISTANT_PREFIX }) */
export const DEFAULT_HOMEASSISTANT_PREFIX = 'homeassistant';

/** HA device classes by unit (sensor platform): only the units that say what they measure. */
const DEVICE_CLASS: Readonly<Record<string, string>> = {
  '°C': 'temperature',
  B: 'data_size',
  'B/s': 'data_rate',
  V: 'voltage',
  A: 'current',
  W: 'power',
  s: 'duration',
  MHz: 'frequency',
};

/** Units whose readings are measurements (HA long-term statistics); text sensors have no unit here. */
const MEASURED_UNITS = new Set(['°C', '%', 'B', 'B/s', 'V', 'A', 'W', 's', 'MHz', 'RPM']);

/**
 * One retained discovery message.
 * @example
 * for (const { topic, config }: DiscoveryConfig of discoveryConfigs(input)) await client.publish(topic, config, { retain: true });
 */
export interface DiscoveryConfig {
  topic: string;
  config: { [key: string]: unknown };
}

/**
 * What discovery is made from.
 * @example
 * const input: DiscoveryInput = { id: 'pi-01', info, payload: 'reading', prefix: 'homeassistant' };
 */
export interface DiscoveryInput {
  id: string;
  /** `devices/<id>/info` as the agent publishes it: sensors, actuators, hostname, os, arch, agentVersion. */
  info: { [key: string]: unknown };
  /** `reading` ({ value, unit, ts }) or `number` (bare values): decides the value template. */
  payload: 'reading' | 'number';
  prefix?: string;
}

/**
 * An object id HA accepts: `[a-zA-Z0-9_-]`, everything else as `_`.
 * @example
 * objectId('pi-01', 'net/eth0.1/rx') // 'pi-01_net_eth0_1_rx'
 */
export function objectId(...parts: string[]): string {
  return parts.join('_').replace(/[^a-zA-Z0-9_-]/g, '_');
}

/**
 * The discovery configs for a device's sensors and actuators.
 * @example
 * discoveryConfigs({ id: 'pi-01', info, payload: 'reading' })[0]
 * // { topic: 'homeassistant/sensor/pi-01_cpu_temperature/config', config: { unique_id: 'topicast_pi-01_cpu_temperature', ... } }
 */
export function discoveryConfigs(input: DiscoveryInput): DiscoveryConfig[] {
  const { id, info } = input;
  const prefix = input.prefix ?? DEFAULT_HOMEASSISTANT_PREFIX;
  const base = `devices/${id}`;
  const device: { [key: string]: unknown } = {
    identifiers: [objectId('topicast', id)],
    name: id,
    manufacturer: 'Topicast',
    model: typeof info.model === 'string' ? info.model : [info.os, info.arch].filter((x) => typeof x === 'string').join(' ') || 'topicast-agent',
  };
  if (typeof info.agentVersion === 'string') device.sw_version = info.agentVersion;
  const common = (path: string): { [key: string]: unknown } => ({
    unique_id: objectId('topicast', id, path),
    name: path,
    device,
    availability_topic: `${base}/status`,
    payload_available: 'online',
    payload_not_available: 'offline',
  });
  const out: DiscoveryConfig[] = [];
  const sensors = Array.isArray(info.sensors) ? (info.sensors as { path: string; unit: string }[]) : [];
  const actuators = Array.isArray(info.actuators) ? (info.actuators as ActuatorInfo[]) : [];
  const actuatorNames = new Set(actuators.map((a) => a.name));
  for (const s of sensors) {
    if (actuatorNames.has(s.path)) continue;
    const config = { ...common(s.path), state_topic: `${base}/${s.path}` };
    if (input.payload === 'reading') Object.assign(config, { value_template: '{{ value_json.value }}' });
    if (s.unit !== '') Object.assign(config, { unit_of_measurement: s.unit });
    const deviceClass = DEVICE_CLASS[s.unit];
    if (deviceClass !== undefined) Object.assign(config, { device_class: deviceClass });
    if (MEASURED_UNITS.has(s.unit)) Object.assign(config, { state_class: 'measurement' });
    out.push({ topic: `${prefix}/sensor/${objectId(id, s.path)}/config`, config });
  }
  for (const a of actuators) {
    const config: { [key: string]: unknown } = { ...common(a.name), command_topic: `${base}/set/${a.name}` };
    let component: string;
    switch (a.type) {
      case 'boolean':
        component = 'switch';
        Object.assign(config, { state_topic: `${base}/${a.name}`, payload_on: 'true', payload_off: 'false', state_on: 'true', state_off: 'false' });
        break;
      case 'number':
        component = 'number';
        Object.assign(config, { state_topic: `${base}/${a.name}`, mode: 'slider' });
        if (a.min !== undefined) config.min = a.min;
        if (a.max !== undefined) config.max = a.max;
        if (a.step !== undefined) config.step = a.step;
        if (a.unit !== undefined && a.unit !== '') config.unit_of_measurement = a.unit;
        break;
      case 'string':
        component = a.options !== undefined ? 'select' : 'text';
        config.state_topic = `${base}/${a.name}`;
        if (a.options !== undefined) config.options = [...a.options];
        break;
      case 'button':
        component = 'button';
        config.payload_press = 'press';
        break;
    }
    out.push({ topic: `${prefix}/${component}/${objectId(id, a.name)}/config`, config });
  }
  return out;
}

/**
 * Keeps a device's discovery configs published (see the file header).
 * @example
 * const ha = new HomeAssistantDiscovery({ id: 'pi-01', transport, payload: 'reading', prefix: 'homeassistant' });
 * agent.onInfo((info) => ha.publish(info)); ha.start();
 */
export class HomeAssistantDiscovery {
  readonly prefix: string;
  /** Times the full set of configs was published. */
  announcements = 0;
  private info: { [key: string]: unknown } | undefined;
  private unsubscribe: (() => void) | undefined;
  private readonly log: Logger;

  constructor(private readonly options: { id: string; transport: AgentTransport; payload: 'reading' | 'number'; prefix?: string; log?: Logger }) {
    this.prefix = options.prefix ?? DEFAULT_HOMEASSISTANT_PREFIX;
    this.log = options.log ?? silentLogger;
  }

  /** Listens for Home Assistant's birth message on `<prefix>/status`. */
  start(): void {
    const { transport } = this.options;
    if (transport.subscribe === undefined) {
      this.log.warn(`the ${transport.kind} transport cannot hear Home Assistant's birth message: configs are published at each connection only`);
      return;
    }
    this.unsubscribe = transport.subscribe(`${this.prefix}/status`, (m: Inbound) => {
      const text = typeof m.value === 'string' ? m.value : m.value instanceof Uint8Array ? new TextDecoder().decode(m.value) : undefined;
      if (text?.trim() === 'online' && this.info !== undefined) {
        this.log.info('Home Assistant is online: publishing discovery configs again');
        this.publish(this.info);
      }
    });
  }

  /** Publishes every config for this `info` (retained). */
  publish(info: Payload): void {
    if (typeof info !== 'object' || info === null) return;
    this.info = info as { [key: string]: unknown };
    const { transport } = this.options;
    if (!transport.isOpen()) return;
    this.announcements++;
    for (const d of discoveryConfigs({ id: this.options.id, info: this.info, payload: this.options.payload, prefix: this.prefix })) {
      transport.publish(d.topic, d.config, true).catch((err: Error) => this.log.debug(`publishing ${d.topic} failed: ${err.message}`));
    }
  }

  stop(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }
}
