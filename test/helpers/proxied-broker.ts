/**
 * What a web server in front of the broker (deploy/nginx, deploy/lighttpd) must pass through, checked
 * with real clients: its own pages stay its own; /healthz, the dashboard, the SDK bundle, the native
 * WebSocket, MQTT over WebSocket and HTTP publish reach the broker, values compared.
 */
import assert from 'node:assert/strict';
import mqtt from 'mqtt';
import { connect } from 'topicast';
import { waitFor } from './broker.js';

export async function checkProxiedBroker(base: string, server: string): Promise<void> {
  assert.match(await (await fetch(`${base}/`)).text(), /my board/, `${server} serves its own pages`);
  const health = await fetch(`${base}/healthz`);
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { status: string }).status, 'ok');
  assert.match(await (await fetch(`${base}/topicast/`)).text(), /<title>Topicast<\/title>/);
  const sdk = await fetch(`${base}/topicast.js`);
  assert.equal(sdk.status, 200);
  assert.ok(sdk.headers.get('etag'));
  await sdk.arrayBuffer();

  const client = await connect(`${base.replace('http', 'ws')}/ws`, { codec: 'text' });
  const got: string[] = [];
  await client.subscribe('board/#', (value, meta) => got.push(`${meta.topic}=${String(value)}`));
  const m = await mqtt.connectAsync(`${base.replace('http', 'ws')}/mqtt`, { reconnectPeriod: 0, connectTimeout: 5000 });
  await m.publishAsync('board/mqtt', `over ${server}`, { qos: 1 });
  await m.endAsync();
  const posted = await fetch(`${base}/api/publish/board/cgi?retain=1`, { method: 'POST', body: '21.5' });
  assert.equal(posted.status, 200);
  await waitFor(() => got.length >= 2, `both publishes through ${server}`, 5000);
  assert.deepEqual(got.sort(), ['board/cgi=21.5', `board/mqtt=over ${server}`]);
  await client.close();
}
