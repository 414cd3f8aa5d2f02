/**
 * Lines that must NOT compile. Excluded from the normal build; checked by
 * test/unit/sdk/typed-topics-fail.test.ts with `tsc --noEmit`, which fails on any
 * `@ts-expect-error` that no longer has an error to expect.
 */
import type { Client } from 'topicast';

interface Topics {
  'devices/+/cpu/temperature': number;
  'devices/+/status': 'online' | 'offline';
  'devices/+/sensors/#': { value: number; unit: string };
}

export async function mustFail(client: Client<Topics>): Promise<void> {
  // @ts-expect-error a string is not a temperature
  await client.publish('devices/pi-01/cpu/temperature', '48.2');
  // @ts-expect-error 'unknown' is not a status
  await client.publish('devices/pi-01/status', 'unknown');
  // @ts-expect-error a reading needs a unit
  await client.publish('devices/pi-01/sensors/gpu/temp', { value: 1 });
  // @ts-expect-error the handler of a number topic gets a number, not a string
  await client.subscribe('devices/+/cpu/temperature', (t: string) => t);
  await client.subscribe('devices/+/status', (s) => {
    // @ts-expect-error 'online' | 'offline' is not a number
    const n: number = s;
    void n;
  });
  await client.subscribe('devices/+/info', (v) => {
    // @ts-expect-error an unmapped filter gives unknown, which has no properties
    void v.hostname;
  });
  await client.subscribe('devices/+/cpu/temperature', (b) => {
    // @ts-expect-error the raw codec delivers bytes, not numbers
    const n: number = b;
    void n;
  }, { codec: 'raw' });
  // @ts-expect-error unknown codec name
  await client.subscribe('x', undefined, { codec: 'yaml' });
  // @ts-expect-error a missing value
  await client.publish('devices/pi-01/cpu/temperature');
  // @ts-expect-error retain is a boolean
  await client.publish('devices/pi-01/cpu/temperature', 1, { retain: 'yes' });
  // @ts-expect-error no such state
  client.on('state', (s) => s === 'half-open');

  // Positions, resume and drain.
  // @ts-expect-error an epoch is a string
  await client.subscribe('devices/+/status', undefined, { resume: { epoch: 1, offset: 2 } });
  // @ts-expect-error a position needs its offset
  await client.subscribe('devices/+/status', undefined, { resume: { epoch: 'E' } });
  const sub = await client.subscribe('devices/+/status', (s, meta) => {
    // @ts-expect-error an offset may be missing (topics without history)
    const o: number = meta.offset;
    void s, o;
  });
  // @ts-expect-error the event is 'resumed'
  sub.on('resume', () => {});
  // @ts-expect-error recovered is a boolean
  sub.on('resumed', (outcome) => outcome.recovered.toFixed());
  // @ts-expect-error the position is read-only (it follows the deliveries)
  sub.position = { epoch: 'E', offset: 1 };
  // @ts-expect-error a drain notice has a delay and a URL, no code
  client.on('drain', (notice) => notice.code);
}
