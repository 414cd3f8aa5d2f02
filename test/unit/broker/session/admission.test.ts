/**
 * Publish admission (broker/src/session/admission.ts): one fixed order — $SYS, permission, rate,
 * size, retained bounds — the counters in one place, and one wire table (core/errors.ts) whose
 * MQTT column holds the reason codes of protocol/mqtt/reasons.ts.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type * as AdmissionModule from '../../../../broker/src/session/admission.js';
import type * as ErrorsModule from '../../../../broker/src/core/errors.js';
import type * as ReasonsModule from '../../../../broker/src/protocol/mqtt/reasons.js';
import type * as RetainedModule from '../../../../broker/src/core/retained.js';
import type * as MessageModule from '../../../../broker/src/core/message.js';

const dist = (p: string): string => new URL(`../../../../../broker/dist/${p}`, import.meta.url).href;
const { admitPublish, admitCapacity, publishBucket } = (await import(dist('session/admission.js'))) as typeof AdmissionModule;
const { REFUSALS } = (await import(dist('core/errors.js'))) as typeof ErrorsModule;
const { Reason } = (await import(dist('protocol/mqtt/reasons.js'))) as typeof ReasonsModule;
const { MemoryRetainedStore } = (await import(dist('core/retained.js'))) as typeof RetainedModule;
const { createMessage } = (await import(dist('core/message.js'))) as typeof MessageModule;

type Ctx = Parameters<typeof admitPublish>[0];

function context(limits: Partial<Ctx['publishLimits']> = {}, open = 0): Ctx {
  return {
    auth: { stats: { denied: 0 } } as unknown as Ctx['auth'],
    counters: { rateLimited: 0, connectionsRefused: 0 } as unknown as Ctx['counters'],
    log: {} as Ctx['log'],
    publishLimits: { maxPayloadBytes: 10, maxPublishesPerSec: 1, publishBurst: 1, maxRetainedTopics: 1, maxRetainedBytes: 100, ...limits },
    connectionLimits: { maxConnections: 2 },
    router: { retained: new MemoryRetainedStore() },
    now: () => 0,
    openConnections: () => open,
  };
}

const denyAll = { canPublish: () => false };

test('the one order: a publish breaking every rule is refused for the first, $SYS, then permission, rate, size, retained', () => {
  const ctx = context();
  const empty = publishBucket(ctx);
  assert.equal(empty.take(0), true); // burst 1: the next take fails
  const refusal = (topic: string, bytes: number, retain: boolean, permissions?: { canPublish(t: string): boolean }, bucket = empty) =>
    admitPublish(ctx, topic, bytes, retain, permissions, bucket)?.refusal;
  ctx.router.retained.set(createMessage('held', new Uint8Array(1), true)); // maxRetainedTopics 1: full for another topic
  assert.equal(refusal('$SYS/x', 99, true, denyAll), 'broker-topic');
  assert.equal(refusal('a', 99, true, denyAll), 'not-authorized');
  assert.equal(refusal('a', 99, true), 'rate-limited');
  assert.equal(refusal('a', 99, true, undefined, publishBucket(ctx)), 'payload-too-large');
  assert.equal(refusal('a', 5, true, undefined, publishBucket(ctx)), 'retained-full');
  assert.equal(refusal('a', 5, false, undefined, publishBucket(ctx)), undefined, 'admitted');
  assert.equal(refusal('held', 5, true, undefined, publishBucket(ctx)), undefined, 'an existing retained topic may update');
  assert.equal(admitPublish(ctx, 'a', 99, false, undefined, undefined)?.refusal, 'payload-too-large', 'no bucket (HTTP): no rate');
});

test('counters in one place: $SYS and permission count as denied, the rate limit as rate-limited, nothing else counts', () => {
  const ctx = context();
  admitPublish(ctx, '$SYS/x', 1, false, undefined, undefined);
  admitPublish(ctx, 'a', 1, false, denyAll, undefined);
  assert.equal(ctx.auth.stats.denied, 2);
  const bucket = publishBucket(ctx);
  admitPublish(ctx, 'a', 1, false, undefined, bucket);
  admitPublish(ctx, 'a', 1, false, undefined, bucket);
  assert.equal(ctx.counters.rateLimited, 1);
  admitPublish(ctx, 'a', 99, false, undefined, undefined);
  assert.deepEqual([ctx.auth.stats.denied, ctx.counters.rateLimited], [2, 1], 'size refusals count nowhere else');
});

test('capacity: maxConnections counts the open connections, less the asking one when it is already counted (MQTT CONNECT)', () => {
  assert.equal(admitCapacity(context({}, 1)), undefined);
  assert.equal(admitCapacity(context({}, 2))?.refusal, 'capacity');
  assert.equal(admitCapacity(context({}, 2), true), undefined);
  const ctx = context({}, 3);
  assert.equal(admitCapacity(ctx, true)?.refusal, 'capacity');
  assert.equal(ctx.counters.connectionsRefused, 1);
});

test('the wire table: every refusal has a native code, an HTTP status and one of the MQTT reason codes the listener sends', () => {
  const reasons = new Set<number>(Object.values(Reason));
  for (const [name, wire] of Object.entries(REFUSALS)) {
    assert.ok(reasons.has(wire.mqtt), `${name}: 0x${wire.mqtt.toString(16)} is in protocol/mqtt/reasons.ts`);
    assert.ok(wire.status >= 400 && wire.status < 600, `${name}: an HTTP error status`);
    assert.ok(Number.isInteger(wire.code) && wire.code > 0, `${name}: a native error code`);
  }
  assert.equal(REFUSALS['broker-topic'].mqtt, Reason.notAuthorized);
  assert.equal(REFUSALS['rate-limited'].mqtt, Reason.quotaExceeded);
  assert.equal(REFUSALS.capacity.mqtt, Reason.connectionRateExceeded);
});
