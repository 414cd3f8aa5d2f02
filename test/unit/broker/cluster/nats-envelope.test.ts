/**
 * The NATS bus envelope (broker/src/cluster/nats-envelope.ts): round trip of every field, golden
 * header bytes, and a clear EnvelopeError for every truncation and foreign input — never a
 * message with wrong fields.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import type * as EnvelopeModule from '../../../../broker/src/cluster/nats-envelope.js';

// Internal module of the broker: loaded from its build output (the package exports only the public API).
const { encodeEnvelope, decodeEnvelope, EnvelopeError, EnvelopeWriter } = (await import(new URL('../../../../../broker/dist/cluster/nats-envelope.js', import.meta.url).href)) as typeof EnvelopeModule;

const base = { retain: false, qos: 0 as const, origin: 'node-1', run: 12345, nodeSeq: 7, streamSeq: 0, properties: undefined, payload: new Uint8Array([1, 2, 3]) };

test('golden header: version, flags, origin, run, sequences, then the payload untouched', () => {
  const bytes = encodeEnvelope({ ...base, retain: true, qos: 1, streamSeq: 42 });
  assert.deepEqual([...bytes.subarray(0, 3)], [1, 0b011, 6]); // version 1; retain + qos 1; origin length
  assert.equal(new TextDecoder().decode(bytes.subarray(3, 9)), 'node-1');
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  assert.deepEqual([view.getFloat64(9), view.getFloat64(17), view.getFloat64(25)], [12345, 7, 42]);
  assert.deepEqual([...bytes.subarray(33)], [1, 2, 3]);
});

test('every field round-trips, properties and will topic included', () => {
  const props = fc.option(
    fc.record(
      {
        payloadFormatIndicator: fc.boolean(),
        contentType: fc.string(),
        responseTopic: fc.string({ minLength: 1 }),
        correlationData: fc.uint8Array({ maxLength: 16 }).map((a) => Buffer.from(a)),
        // `__proto__` is left out: msgpackr renames that key (its prototype-pollution guard), and a
        // plain object, as mqtt-packet builds the local properties, cannot hold it as a key anyway.
        userProperties: fc.dictionary(fc.string().filter((k) => k !== '__proto__'), fc.oneof(fc.string(), fc.array(fc.string(), { minLength: 1, maxLength: 3 })), { noNullPrototype: true }),
        expiresAt: fc.integer({ min: 0, max: 2 ** 47 }),
      },
      { requiredKeys: [], noNullPrototype: true },
    ),
    { nil: undefined },
  );
  fc.assert(
    fc.property(fc.boolean(), fc.constantFrom(0, 1, 2), fc.string({ maxLength: 60 }), fc.nat(), fc.nat(), fc.nat(), props, fc.uint8Array({ maxLength: 64 }), fc.option(fc.string({ minLength: 1 }), { nil: undefined }), (retain, qos, origin, run, nodeSeq, streamSeq, properties, payload, topic) => {
      const e = { retain, qos: qos as 0 | 1 | 2, origin, run, nodeSeq, streamSeq, properties, payload, topic };
      const d = decodeEnvelope(encodeEnvelope(e));
      assert.deepEqual({ ...d, payload: [...d.payload] }, { ...e, payload: [...payload] });
    }),
    { numRuns: 2000 },
  );
});

test('the live writer gives the bytes encodeEnvelope gives, and never rewrites an envelope it handed out', () => {
  // A 256-byte chunk: a handful of envelopes per chunk, so the run crosses many chunk boundaries,
  // and some envelopes are larger than a whole chunk.
  const writer = new EnvelopeWriter('node-1', 256);
  const handed: { bytes: Uint8Array; expected: number[] }[] = [];
  for (let i = 0; i < 300; i++) {
    const e = {
      ...base,
      retain: i % 3 === 0,
      qos: (i % 3) as 0 | 1 | 2,
      nodeSeq: i + 1,
      streamSeq: i % 5,
      properties: i % 4 === 0 ? { contentType: `t${i}`, userProperties: { k: String(i) } } : undefined,
      payload: new Uint8Array(i % 50 === 0 ? 400 : i % 40).fill(i & 0xff),
    };
    const bytes = writer.encode(e.retain, e.qos, e.run, e.nodeSeq, e.streamSeq, e.properties, e.payload);
    handed.push({ bytes, expected: [...encodeEnvelope(e)] });
  }
  // Checked after all 300 were written: a reused region would have overwritten earlier ones.
  for (const [i, h] of handed.entries()) assert.deepEqual([...h.bytes], h.expected, `envelope ${i}`);
  assert.throws(() => new EnvelopeWriter('x'.repeat(256)), EnvelopeError);
});

test('origins of the same length from alternating nodes decode each to its own (the decoder reuses the last origin string)', () => {
  const origins = ['node-1', 'node-2', 'node-2', 'node-1', 'nöde-1', 'node-1'];
  assert.deepEqual(origins.map((origin) => decodeEnvelope(encodeEnvelope({ ...base, origin })).origin), origins);
});

test('truncated or foreign bytes: an EnvelopeError, never a message', () => {
  const full = encodeEnvelope({ ...base, properties: { contentType: 'text/plain' }, topic: 'devices/x/status' });
  const payloadAt = full.length - base.payload.length;
  for (let n = 0; n < payloadAt; n++) assert.throws(() => decodeEnvelope(full.subarray(0, n)), EnvelopeError, `cut at ${n}`);
  assert.throws(() => decodeEnvelope(new TextEncoder().encode('plain text from another client on our subject')), /unknown envelope version/);
  const badFlags = full.slice();
  badFlags[1] = 0b110; // qos 3
  assert.throws(() => decodeEnvelope(badFlags), /bad envelope flags/);
  assert.throws(() => encodeEnvelope({ ...base, origin: 'x'.repeat(256) }), /longer than 255 bytes/);
});
