/**
 * Typed topics: this file must compile (it is part of the normal build). Its
 * twin typed-topics.fail.ts holds the lines that must NOT compile, checked by
 * test/unit/sdk/typed-topics-fail.test.ts. At run time it checks a few things
 * trivially against a fake transport so it counts as a test.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  connect, type Client, type DrainNotice, type FilterMatches, type Message, type PublishValue, type ResumeOutcome, type StreamPosition, type Subscription,
} from 'topicast';
import { Op } from 'topicast/protocol';
import { FakeNet, flush } from '../unit/sdk/fake-transport.js';

interface DeviceInfo {
  hostname: string;
  sensors: string[];
}
interface Reading {
  value: number;
  unit: string;
  ts: number;
}
interface Topics {
  'devices/+/cpu/temperature': number;
  'devices/+/status': 'online' | 'offline';
  'devices/+/info': DeviceInfo;
  'devices/+/sensors/#': Reading;
  'alerts': string;
}

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
function expectType<T extends true>(_ok: T): void {}

// The matcher follows MQTT's rules.
expectType<Equal<FilterMatches<'a/+/c', 'a/b/c'>, true>>(true);
expectType<Equal<FilterMatches<'a/#', 'a'>, true>>(true);
expectType<Equal<FilterMatches<'a/#', 'a/b/c/d'>, true>>(true);
expectType<Equal<FilterMatches<'a/+', 'a/b/c'>, false>>(true);
expectType<Equal<FilterMatches<'#', '$SYS/x'>, false>>(true);
expectType<Equal<FilterMatches<'$SYS/#', '$SYS/x'>, true>>(true);
expectType<Equal<PublishValue<Topics, 'devices/pi/cpu/temperature'>, number>>(true);
expectType<Equal<PublishValue<Topics, 'devices/pi/sensors/gpu/temp'>, Reading>>(true);
expectType<Equal<PublishValue<Topics, 'unknown/topic'>, unknown>>(true);
expectType<Equal<PublishValue<Topics, string>, unknown>>(true);

async function usage(client: Client<Topics>): Promise<void> {
  // History rows are typed like deliveries: by the filter, and by a codec that fixes the value's type.
  const temps = await client.history('devices/pi/cpu/temperature', { sinceMs: 0 });
  const first: number | undefined = temps[0]?.value;
  const complete: boolean = temps.complete;
  void first;
  void complete;
  for await (const row of client.history('devices/+/sensors/#', { newestFirst: true })) {
    const reading: Reading = row.value;
    const at: number = row.ts;
    void reading;
    void at;
  }
  const raw = await client.history('devices/pi/cpu/temperature', { codec: 'raw' });
  expectType<Equal<(typeof raw)[number]['value'], Uint8Array>>(true);
  // Handlers on a filter of the map get its payload type.
  await client.subscribe('devices/+/cpu/temperature', (t, meta) => {
    const n: number = t;
    const topic: string = meta.topic;
    void n, topic;
  });
  await client.subscribe('devices/+/status', (s) => {
    expectType<Equal<typeof s, 'online' | 'offline'>>(true);
  });
  await client.subscribe('devices/+/sensors/#', (r) => {
    const v: number = r.value;
    void v;
  });
  // Several filters: the union of their types.
  await client.subscribe(['devices/+/status', 'alerts'], (v) => {
    expectType<Equal<typeof v, 'online' | 'offline' | string>>(true);
  });
  // Filters outside the map: unknown.
  await client.subscribe('other/#', (v) => {
    expectType<Equal<typeof v, unknown>>(true);
  });
  // A codec that fixes the value type wins over the map.
  await client.subscribe('devices/+/info', (b) => expectType<Equal<typeof b, Uint8Array>>(true), { codec: 'raw' });
  await client.subscribe('devices/+/info', (s) => expectType<Equal<typeof s, string>>(true), { codec: 'text' });
  const sub: Subscription<DeviceInfo> = await client.subscribe('devices/+/info');
  void sub;
  for await (const m of client.subscribe('devices/+/cpu/temperature')) {
    expectType<Equal<typeof m, Message<number>>>(true);
    break;
  }
  // Positions, resume and drain (PROTOCOL.md §4.6, §4.7): the options keep the map's value types.
  const resumable = await client.subscribe('devices/+/cpu/temperature', (t, meta) => {
    expectType<Equal<typeof t, number>>(true);
    expectType<Equal<typeof meta.offset, number | undefined>>(true);
    expectType<Equal<typeof meta.replayed, boolean>>(true);
  }, { resume: { epoch: 'E', offset: 1 }, retained: false });
  expectType<Equal<typeof resumable, Subscription<number>>>(true);
  expectType<Equal<typeof resumable.position, StreamPosition | undefined>>(true);
  expectType<Equal<typeof resumable.recovered, boolean | undefined>>(true);
  const off: () => void = resumable.on('resumed', (o) => expectType<Equal<typeof o, ResumeOutcome>>(true));
  off();
  client.on('drain', (d) => expectType<Equal<typeof d, DrainNotice>>(true));
  const stored = resumable.position;
  if (stored) await client.subscribe('alerts', (a) => expectType<Equal<typeof a, string>>(true), { resume: stored });
  // Publishing the right types to concrete topics compiles.
  await client.publish('devices/pi-01/cpu/temperature', 48.2, { retain: true });
  await client.publish('devices/pi-01/status', 'online', { retain: true, ack: true });
  await client.publish('devices/pi-01/info', { hostname: 'pi', sensors: [] });
  await client.publish('devices/pi-01/sensors/board/fan', { value: 1200, unit: 'rpm', ts: 0 });
  await client.publish('free/form', { anything: true });
  const dynamic: string = 'devices/x/cpu/temperature';
  await client.publish(dynamic, 'not checked: the topic is not a literal');
}

test('typed topics compile (see typed-topics.fail.ts for what must not)', async () => {
  assert.equal(typeof usage, 'function');
  const net = new FakeNet();
  net.autoOpen = true;
  const client = await connect<Topics>('ws://fake/ws', { transport: net.transport, codec: 'json' });
  const temps: number[] = [];
  await client.subscribe('devices/+/cpu/temperature', (t) => temps.push(t + 1));
  net.last.push({ op: Op.delivery, topic: 'devices/a/cpu/temperature', payload: new TextEncoder().encode('41'), flags: 0 });
  await client.publish('devices/a/cpu/temperature', 42);
  await flush();
  assert.deepEqual(temps, [42]);
  await client.close();
});
