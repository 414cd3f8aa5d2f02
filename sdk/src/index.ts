/**
 * topicast: the typed client SDK for the Topicast broker, in browsers and Node.
 * Default payload codec: `auto` — publishes MessagePack (msgpackr), decodes by content type. See README.md.
 * @example
 * import { connect } from 'topicast';
 * const client = await connect('ws://localhost:8080/ws');
 * const sub = await client.subscribe('devices/+/cpu/temperature', (t, meta) => console.log(meta.topic, t));
 * await client.publish('devices/pi-01/cpu/temperature', 48.2, { retain: true });
 */
import { openClient, type Client, type ConnectOptions } from './client.js';
import { coreCodecs } from './codec.js';
import { auto, msgpack } from './codec-msgpack.js';
import type { TopicMap } from './topics.js';
import { transport } from '#transport';

export * from './core.js';
export { auto, msgpack } from './codec-msgpack.js';

const codecs = { ...coreCodecs, msgpack, auto };

/**
 * Connects to a Topicast broker. `url` may be a list: the client fails over between them.
 * `Topics` maps topic filters to payload types and types `subscribe` and `publish`.
 * @example
 * interface Topics { 'devices/+/cpu/temperature': number; 'devices/+/status': 'online' | 'offline' }
 * const client = await connect<Topics>(['ws://a:8080/ws', 'ws://b:8080/ws'], { will: { topic: 'devices/pi-01/status', value: 'offline', retain: true } });
 * await client.subscribe('devices/+/cpu/temperature', (t) => t.toFixed(1)); // t: number
 */
export function connect<Topics extends TopicMap = {}>(url: string | readonly string[], options: ConnectOptions = {}): Promise<Client<Topics>> {
  return openClient<Topics>(url, options, { codecs, defaultCodec: auto, transport });
}
