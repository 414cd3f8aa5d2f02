/**
 * One admission for every edge (broker/src/session/admission.ts): a publish is refused in the same
 * order and counted in the same place whether it comes over the native protocol, MQTT or HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import mqtt from 'mqtt';
import { ErrorCode, Op } from 'topicast/protocol';
import { startBroker, type BrokerProcess } from '../helpers/broker.js';
import { NativeClient } from '../helpers/native-client.js';

let broker: BrokerProcess;
before(async () => {
  broker = await startBroker({ args: ['--max-payload-bytes', '64'] });
});
after(() => broker.stop());

async function denied(): Promise<number> {
  const text = await (await fetch(`${broker.httpUrl}/metrics`)).text();
  const m = /^topicast_auth_denied_total (\d+)$/m.exec(text);
  assert.ok(m, 'topicast_auth_denied_total is exported');
  return Number(m[1]);
}

test('a $SYS publish is refused first and counted in topicast_auth_denied_total alike on the native, MQTT and HTTP edges', async () => {
  const big = new Uint8Array(100); // over maxPayloadBytes too: $SYS comes first in the one order
  const start = await denied();

  const native = await NativeClient.connect(broker.url);
  const answer = await native.publish('$SYS/broker/spoof', big);
  assert.equal(answer?.op, Op.error);
  assert.equal(answer?.op === Op.error && answer.code, ErrorCode.notAuthorized, 'native: not authorized, not payload too large');
  await native.close();
  assert.equal(await denied(), start + 1, 'native counts it');

  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0, clientId: 'admission-sys' });
  const ack = await new Promise<{ reasonCode?: number }>((resolve, reject) => {
    client.publish('$SYS/broker/spoof', Buffer.from(big), { qos: 1 }, (err, packet) => {
      // mqtt.js reports a failure reason code as an error carrying the code.
      if (err) resolve({ reasonCode: (err as { code?: number }).code });
      else if (packet) resolve(packet as { reasonCode?: number });
      else reject(new Error('no PUBACK'));
    });
  });
  assert.equal(ack.reasonCode, 0x87, 'MQTT 5: PUBACK 0x87 Not authorized, not 0x97');
  await client.endAsync();
  assert.equal(await denied(), start + 2, 'MQTT counts it');

  const http = await fetch(`${broker.httpUrl}/api/publish/$SYS/broker/spoof`, { method: 'POST', body: 'x' });
  assert.equal(http.status, 403);
  assert.equal(((await http.json()) as { error: { code: number } }).error.code, ErrorCode.notAuthorized);
  assert.equal(await denied(), start + 3, 'HTTP counts it');
});

test('past $SYS and permissions, the size is refused in each edge\'s own words for the same rule', async () => {
  const native = await NativeClient.connect(broker.url);
  const answer = await native.publish('admission/big', new Uint8Array(100));
  assert.equal(answer?.op === Op.error && answer.code, ErrorCode.payloadTooLarge);
  await native.close();
  const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${broker.mqttPort}`, { protocolVersion: 5, reconnectPeriod: 0, clientId: 'admission-size' });
  const code = await new Promise<number | undefined>((resolve) => {
    client.publish('admission/big', Buffer.alloc(100), { qos: 1 }, (err, packet) => resolve(err ? (err as { code?: number }).code : (packet as { reasonCode?: number } | undefined)?.reasonCode));
  });
  assert.equal(code, 0x97, 'MQTT 5: PUBACK 0x97 Quota exceeded');
  await client.endAsync();
  const http = await fetch(`${broker.httpUrl}/api/publish/admission/big`, { method: 'POST', body: 'x'.repeat(100) });
  assert.equal(http.status, 413);
});
