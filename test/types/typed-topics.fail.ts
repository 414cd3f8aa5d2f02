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
}
