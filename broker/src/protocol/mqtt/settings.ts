/** MQTT listener settings; merged into the broker's configuration (config.ts). */
import type { SettingSpec } from '../../settings.js';

export const MQTT_SETTINGS = [
  { key: 'mqttPort', type: 'int', default: 1883, min: 0, max: 65535, doc: 'MQTT over TCP port (0 turns it off); 1883 is the registered MQTT port' },
  { key: 'mqttMaxInflight', type: 'int', default: 100, min: 1, max: 65535, doc: 'QoS 1/2 messages in flight to one client (MQTT 5 Receive Maximum we send); enough to keep a link busy without hoarding memory' },
  { key: 'mqttMaxQueued', type: 'int', default: 1000, min: 0, max: 10_000_000, doc: 'QoS 1/2 messages queued for an offline persistent session; minutes of sensor data per device' },
  { key: 'mqttQueueOverflow', type: 'enum', default: 'drop-oldest', values: ['drop-oldest', 'drop-newest'], doc: 'what an offline session queue drops when full; oldest keeps the freshest readings' },
  { key: 'mqttMaxSessionExpirySec', type: 'int', default: 86400, min: 0, max: 4294967295, doc: 'cap on MQTT 5 session expiry and on 3.1.1 persistent sessions; a day bounds abandoned sessions' },
  { key: 'mqttMaxKeepaliveSec', type: 'int', default: 3600, min: 0, max: 65535, doc: 'largest keepalive accepted (MQTT 5 Server Keep Alive beyond it); 0 means no cap' },
  { key: 'mqttPayloads', type: 'enum', default: 'json', values: ['json', 'as-published'], doc: 'what MQTT subscribers get of MessagePack payloads (SDK publishes): json converts them once per message to readable JSON or text (MQTT.md "Payload formats"), so mosquitto_sub, Home Assistant and scripts read them; as-published passes the bytes through' },
  { key: 'mqttMaxTopicAliases', type: 'int', default: 64, min: 0, max: 65535, doc: 'MQTT 5 Topic Alias Maximum per client; enough for a device tree, small per-connection memory' },
] as const satisfies readonly SettingSpec[];
