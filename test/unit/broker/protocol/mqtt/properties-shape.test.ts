import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as Properties from '../../../../../broker/src/protocol/mqtt/properties.js';

// Internal module of the broker: loaded from its build output (the package exports only the public API).
const { propertiesProblem } = (await import(new URL('../../../../../../broker/dist/protocol/mqtt/properties.js', import.meta.url).href)) as typeof Properties;

test('well-formed MQTT 5 properties pass', () => {
  assert.equal(propertiesProblem(undefined), undefined);
  assert.equal(propertiesProblem({ contentType: 'text/plain', correlationData: Buffer.from('x'), messageExpiryInterval: 0, subscriptionIdentifier: [1, 2], userProperties: { a: 'b', c: ['d', 'e'] } }), undefined);
});

test('values mqtt-packet yields for cut-short properties are malformed', () => {
  // Seen in the fuzz test (seed 251402): a null user property value crashed the re-encode to a subscriber.
  assert.equal(propertiesProblem({ userProperties: { a: null } }), 'userProperties');
  assert.equal(propertiesProblem({ userProperties: { a: ['b', null] } }), 'userProperties');
  assert.equal(propertiesProblem({ contentType: null }), 'contentType');
  assert.equal(propertiesProblem({ correlationData: null }), 'correlationData');
  assert.equal(propertiesProblem({ topicAlias: -1 }), 'topicAlias');
  assert.equal(propertiesProblem({ subscriptionIdentifier: [1, -1] }), 'subscriptionIdentifier');
});
