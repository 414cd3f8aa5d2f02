/**
 * Golden events of HTTP streaming (broker PROTOCOL.md §10.2–9.4): the `data:` JSON of a message for
 * every payload format of §8, the event framing with and without a stream position, and
 * `Last-Event-ID` parsing with its limits.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Packr } from 'msgpackr';
import type * as EventModule from '../../../../../broker/src/protocol/sse/event.js';
import type * as MessageModule from '../../../../../broker/src/core/message.js';

const dist = new URL('../../../../../../broker/dist/', import.meta.url);
const ev = (await import(new URL('protocol/sse/event.js', dist).href)) as typeof EventModule;
const { createMessage } = (await import(new URL('core/message.js', dist).href)) as typeof MessageModule;

const utf8 = (s: string) => new TextEncoder().encode(s);
const text = (b: Uint8Array) => new TextDecoder().decode(b);
const packr = new Packr({ useRecords: false });
const msg = (payload: Uint8Array, contentType?: string, offset = 0) => {
  const m = createMessage('devices/pi-01/t', payload, false, undefined, 0, contentType === undefined ? undefined : { contentType });
  m.offset = offset;
  return m;
};

test('a message\'s data JSON decodes the payload by its content type (PROTOCOL.md §8)', () => {
  const cases: [Uint8Array, string | undefined, string][] = [
    [utf8('48.2'), undefined, '{"topic":"devices/pi-01/t","value":48.2}'],
    [utf8('online'), undefined, '{"topic":"devices/pi-01/t","value":"online"}'],
    [Uint8Array.of(0xff, 0, 1), undefined, '{"topic":"devices/pi-01/t","value":"/wAB","encoding":"base64"}'],
    [new Uint8Array(0), undefined, '{"topic":"devices/pi-01/t"}'],
    [utf8('{\n  "v": 1\n}'), 'application/json', '{"topic":"devices/pi-01/t","value":{"v":1},"contentType":"application/json"}'],
    [utf8('not json'), 'application/json', '{"topic":"devices/pi-01/t","value":"not json","contentType":"application/json"}'],
    [utf8('7'), 'text/plain', '{"topic":"devices/pi-01/t","value":"7","contentType":"text/plain"}'],
    [utf8('a\nb'), 'text/plain; charset=utf-8', '{"topic":"devices/pi-01/t","value":"a\\nb","contentType":"text/plain; charset=utf-8"}'],
    [packr.pack({ value: 21.5, unit: '°C' }), 'application/msgpack', '{"topic":"devices/pi-01/t","value":{"value":21.5,"unit":"°C"},"contentType":"application/msgpack"}'],
    [packr.pack('online'), 'application/msgpack', '{"topic":"devices/pi-01/t","value":"online","contentType":"application/msgpack"}'],
    [packr.pack(Uint8Array.of(1, 2)), 'application/msgpack', '{"topic":"devices/pi-01/t","value":"AQI=","encoding":"base64","contentType":"application/msgpack"}'],
    [Uint8Array.of(0xc1), 'application/msgpack', '{"topic":"devices/pi-01/t","value":"wQ==","encoding":"base64","contentType":"application/msgpack"}'],
    [utf8('abc'), 'application/octet-stream', '{"topic":"devices/pi-01/t","value":"YWJj","encoding":"base64","contentType":"application/octet-stream"}'],
    [utf8('<svg/>'), 'image/svg+xml', '{"topic":"devices/pi-01/t","value":"PHN2Zy8+","encoding":"base64","contentType":"image/svg+xml"}'],
  ];
  for (const [payload, type, want] of cases) {
    const data = ev.messageData(msg(payload, type));
    assert.equal(data, want, `${type ?? 'untagged'} ${JSON.stringify(text(payload))}`);
    assert.ok(!data.includes('\n'), 'one line');
    JSON.parse(data); // always valid JSON
  }
});

test('events: live with its position as id (cached once per message), retained without, the end marker with the stream position', () => {
  const m = msg(utf8('1'), undefined, 42);
  const live = ev.liveEvent(m, 'k8lk');
  assert.equal(text(live), 'id: k8lk:42\ndata: {"topic":"devices/pi-01/t","value":1}\n\n');
  assert.equal(ev.liveEvent(m, 'k8lk'), live, 'the same bytes for every stream');
  assert.equal(text(ev.liveEvent(msg(utf8('1')), 'k8lk')), 'data: {"topic":"devices/pi-01/t","value":1}\n\n', 'no id off history');
  assert.equal(text(ev.retainedEvent(msg(utf8('on')))), 'event: retained\ndata: {"topic":"devices/pi-01/t","value":"on"}\n\n');
  assert.equal(text(ev.snapshotEndEvent({ retained: 3, epoch: 'k8lk', offset: 42 })), 'event: snapshot-end\nid: k8lk:42\ndata: {"retained":3}\n\n');
  assert.equal(text(ev.snapshotEndEvent({ retained: 0 })), 'event: snapshot-end\ndata: {"retained":0}\n\n');
  assert.equal(text(ev.resumedEvent({ retained: 0, recovered: true, replayed: 2 })), 'event: resumed\ndata: {"recovered":true,"replayed":2}\n\n');
  assert.equal(text(ev.closeEvent(4008, 'slow consumer')), 'event: close\ndata: {"code":4008,"reason":"slow consumer"}\n\n');
});

test('Last-Event-ID: <epoch>:<offset>, and nothing else', () => {
  assert.deepEqual(ev.parsePosition('k8lkci9ga25u:17'), { epoch: 'k8lkci9ga25u', offset: 17 });
  assert.deepEqual(ev.parsePosition('a:b:0'), { epoch: 'a:b', offset: 0 }, 'the last colon splits');
  for (const bad of ['', '17', ':17', 'abc:', 'abc:-1', 'abc:1.5', 'abc:1e3', 'abc:9999999999999999', `${'e'.repeat(65)}:1`, 'ep\u0001:1']) {
    assert.equal(ev.parsePosition(bad), undefined, JSON.stringify(bad));
  }
  assert.equal(ev.parsePosition(ev.positionId('k8lk', 9))?.offset, 9, 'round trip');
});
