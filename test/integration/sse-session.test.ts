/**
 * The native protocol over HTTP (broker PROTOCOL.md §10.5), the SDK's fallback, against the real
 * broker process: the Node SDK with `via: 'sse'` subscribes, publishes and unsubscribes with a
 * token; at the wire level, a will is published when the stream drops and not after a DELETE with
 * 1000; unknown sessions, malformed bodies and bad requests get the documented statuses.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect } from 'topicast';
import { encodeFrame, decodeServerFrame, Op, type ServerFrame } from 'topicast/protocol';
import { startBroker, waitFor } from '../helpers/broker.js';
import { SseStream } from '../helpers/sse-client.js';

const work = mkdtempSync(join(tmpdir(), 'topicast-sse-session-'));
after(() => rmSync(work, { recursive: true, force: true }));

/** POST body of §10.5: each frame with its 4-byte big-endian length. */
function framesBody(...frames: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.concat(frames.flatMap((f) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(f.length);
    return [len, Buffer.from(f)];
  })));
}

/** Opens `GET /api/session` and returns the stream, its session id and its decoded frames. */
async function openSession(httpUrl: string, headers: Record<string, string> = {}) {
  const stream = await SseStream.open(`${httpUrl}/api/session`, headers);
  await stream.untilEvent('session');
  const id = (stream.data('session')[0] as { id: string }).id;
  const frames = (): ServerFrame[] => stream.events.filter((e) => e.event === 'message').map((e) => decodeServerFrame(Buffer.from(e.data, 'base64')));
  await stream.until(() => frames().some((f) => f.op === Op.welcome), 'WELCOME');
  const post = (...f: Uint8Array[]) => fetch(`${httpUrl}/api/session/${id}`, { method: 'POST', body: framesBody(...f) });
  return { stream, id, frames, post };
}

test('the Node SDK over HTTP streaming (via: sse) subscribes, publishes, unsubscribes, with a token', async () => {
  const tokens = join(work, 'tokens.json');
  writeFileSync(tokens, JSON.stringify({ tokens: [{ token: 'sdk-secret-1234567890', sub: 'sdk', publish: ['room/#'], subscribe: ['room/#'] }] }));
  const broker = await startBroker({ args: ['--auth-token-file', tokens, '--sys-interval-sec', '0'], mqttOff: true });
  await assert.rejects(connect(broker.url, { via: 'sse', reconnect: false }), /HTTP 401/, 'no token: refused');
  const client = await connect(broker.url, { via: 'sse', token: 'sdk-secret-1234567890' });
  assert.equal(client.transport, 'sse');
  const got: unknown[] = [];
  const sub = await client.subscribe('room/#', (v, m) => got.push([m.topic, v]));
  await client.publish('room/a', { n: 1 }, { ack: true });
  await waitFor(() => got.length === 1, 'own message back');
  await assert.rejects(client.publish('other/x', 1, { ack: true }), /not authorized/, 'permissions apply');
  await sub.unsubscribe();
  await client.publish('room/a', { n: 2 }, { ack: true });
  const again = await client.subscribe('room/b', (v, m) => got.push([m.topic, v]));
  await client.publish('room/b', 'b', { ack: true });
  await waitFor(() => got.length === 2, 'the second subscription');
  assert.deepEqual(got, [['room/a', { n: 1 }], ['room/b', 'b']], 'nothing after the unsubscribe');
  await again.unsubscribe();
  await client.close();
  assert.ok(!broker.logs.some((l) => l.includes('sdk-secret')), 'no token in the logs');
});

test('a will is published when the stream drops, not after DELETE with 1000; bad requests get 400/404', async () => {
  const broker = await startBroker({ args: ['--sys-interval-sec', '0'], mqttOff: true });
  const watcher = await connect(broker.url);
  const wills: unknown[] = [];
  await (await watcher.subscribe('wills/#', (v, m) => wills.push([m.topic, v]), { retained: false })).snapshot;
  const will = (topic: string) => encodeFrame({ op: Op.will, id: 1, will: { topic, payload: Buffer.from('gone'), retain: false } });

  const dropped = await openSession(broker.httpUrl);
  assert.equal((await dropped.post(will('wills/dropped'))).status, 204);
  await dropped.stream.until(() => dropped.frames().some((f) => f.op === Op.ack), 'the WILL ACK');
  dropped.stream.close(); // the stream drops without a DELETE
  await waitFor(() => wills.length === 1, 'the will');
  assert.deepEqual(wills, [['wills/dropped', 'gone']]);

  const clean = await openSession(broker.httpUrl);
  await clean.post(will('wills/clean'));
  await clean.stream.until(() => clean.frames().some((f) => f.op === Op.ack), 'the WILL ACK');
  assert.equal((await fetch(`${broker.httpUrl}/api/session/${clean.id}?code=1000`, { method: 'DELETE' })).status, 204);
  await clean.stream.until((s) => s.ended, 'the stream ends');
  assert.equal((await clean.post(encodeFrame({ op: Op.ping, id: 2 }))).status, 404, 'the session is gone');
  // A barrier: a will published now would arrive before this message.
  await watcher.publish('wills/barrier', 'b', { ack: true });
  await waitFor(() => wills.length === 2, 'the barrier');
  assert.deepEqual(wills[1], ['wills/barrier', 'b'], 'no will after the clean close');

  const r404 = await fetch(`${broker.httpUrl}/api/session/nosuchsession`, { method: 'POST', body: framesBody(encodeFrame({ op: Op.ping, id: 1 })) });
  assert.equal(r404.status, 404);
  assert.match(((await r404.json()) as { error: { message: string } }).error.message, /no such session/);
  const bad = await openSession(broker.httpUrl);
  const r400 = await fetch(`${broker.httpUrl}/api/session/${bad.id}`, { method: 'POST', body: Uint8Array.of(0, 0, 0, 9, 1) });
  assert.equal(r400.status, 400);
  assert.equal(((await r400.json()) as { error: { message: string } }).error.message, 'malformed frames: a frame is cut off');
  await bad.stream.until((s) => s.ended, 'the session ends');
  assert.deepEqual(bad.stream.data('close'), [{ code: 1002, reason: 'malformed request' }]);
  const param = await fetch(`${broker.httpUrl}/api/session?filter=a`);
  assert.equal(param.status, 400);
  await watcher.close();
});
