import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createMessage } from '@topicast/broker';
import { recordModule } from './load.js';

const { encodeRecord, decodeRecordAt, RecordKind, RECORD_HEADER_BYTES, MAX_BODY_BYTES } = recordModule;
const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

test('record: a set round-trips topic, payload, qos and MQTT properties', () => {
  const properties = {
    payloadFormatIndicator: true,
    contentType: 'application/json',
    responseTopic: 'reply/here',
    correlationData: new Uint8Array([1, 2, 3]),
    userProperties: { a: '1', b: ['x', 'y'] },
    expiresAt: 1_900_000_000_000,
  };
  const rec = encodeRecord(createMessage('devices/pi/cpu', bytes('48.2'), true, undefined, 1, properties));
  const r = decodeRecordAt(rec, 0);
  assert.ok(typeof r === 'object');
  assert.equal(r.next, rec.length);
  assert.equal(r.entry.kind, RecordKind.set);
  if (r.entry.kind !== RecordKind.set) return;
  const m = r.entry.message;
  assert.equal(m.topic, 'devices/pi/cpu');
  assert.deepEqual(new Uint8Array(m.payload), bytes('48.2'));
  assert.equal(m.qos, 1);
  assert.equal(m.retain, true);
  assert.deepEqual({ ...m.properties, correlationData: new Uint8Array(m.properties!.correlationData!) }, properties);
  rec.fill(0);
  assert.deepEqual(new Uint8Array(m.payload), bytes('48.2'), 'payload is copied out of the read buffer');
  assert.deepEqual(new Uint8Array(m.properties!.correlationData!), new Uint8Array([1, 2, 3]));
});

test('record: an empty payload encodes a delete; no properties decode as undefined', () => {
  const del = decodeRecordAt(encodeRecord(createMessage('a/b', new Uint8Array(0), true)), 0);
  assert.ok(typeof del === 'object');
  assert.deepEqual(del.entry, { kind: RecordKind.delete, topic: 'a/b' });
  const set = decodeRecordAt(encodeRecord(createMessage('a/b', bytes('v'), true)), 0);
  assert.ok(typeof set === 'object' && set.entry.kind === RecordKind.set);
  assert.equal(set.entry.kind === RecordKind.set && set.entry.message.properties, undefined);
});

test('record: records follow each other; every shortened record is incomplete', () => {
  const a = encodeRecord(createMessage('a', bytes('1'), true));
  const b = encodeRecord(createMessage('b', bytes('22'), true));
  const buf = Buffer.concat([a, b]);
  const first = decodeRecordAt(buf, 0);
  assert.ok(typeof first === 'object');
  const second = decodeRecordAt(buf, first.next);
  assert.ok(typeof second === 'object');
  assert.equal(second.next, buf.length);
  for (let cut = a.length; cut < buf.length; cut++) assert.equal(decodeRecordAt(buf.subarray(0, cut), a.length), 'incomplete', `cut at ${cut}`);
});

test('record: a flipped bit, a zero header or an oversized length is corrupt', () => {
  const rec = encodeRecord(createMessage('a/b', bytes('hello'), true));
  for (let i = RECORD_HEADER_BYTES; i < rec.length; i++) {
    const bad = Buffer.from(rec);
    bad[i]! ^= 0x10;
    assert.equal(decodeRecordAt(bad, 0), 'corrupt', `byte ${i}`);
  }
  assert.equal(decodeRecordAt(Buffer.alloc(64), 0), 'corrupt', 'a zero-filled tail is not a record');
  const huge = Buffer.alloc(16);
  huge.writeUInt32LE(MAX_BODY_BYTES + 1, 0);
  assert.equal(decodeRecordAt(huge, 0), 'corrupt');
});
