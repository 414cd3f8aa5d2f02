/** AuthenticatingHandler: messages during the token check are copied and replayed in order; refusal, bound, early close. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { auth } from '../auth/load.js';
import type * as AuthenticatingModule from '../../../../broker/src/session/authenticating.js';

const pending = (await import(new URL('../../../../../broker/dist/session/authenticating.js', import.meta.url).href)) as typeof AuthenticatingModule;

type Outcome = Awaited<ReturnType<ReturnType<typeof auth.createAuth>['authenticate']>>;

function deferred(): { promise: Promise<Outcome>; resolve: (o: Outcome) => void } {
  let resolve!: (o: Outcome) => void;
  const promise = new Promise<Outcome>((r) => (resolve = r));
  return { promise, resolve };
}
const principal = { anonymous: false, subject: 's', permissions: undefined, expiresAtMs: undefined };
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

function harness(limit = 100) {
  const events: string[] = [];
  const d = deferred();
  const h = new pending.AuthenticatingHandler(d.promise, {
    open: () => ({
      onMessage: (b) => events.push(`msg ${Buffer.from(b).toString()}`),
      onDrain: () => events.push('drain'),
      onClose: (code) => events.push(`close ${code}`),
    }),
    refuse: (reason) => events.push(`refuse ${reason}`),
    close: (code, reason) => events.push(`closed ${code} ${reason}`),
  }, limit);
  return { h, d, events };
}

test('messages before acceptance are copied and replayed in order, then passed straight through', async () => {
  const { h, d, events } = harness();
  const buf = Buffer.from('one');
  h.onMessage(buf);
  buf.write('XXX'); // the transport reuses its buffer: the handler must have copied it
  h.onMessage(Buffer.from('two'));
  h.onDrain();
  assert.deepEqual(events, []);
  d.resolve({ ok: true, principal });
  await tick();
  h.onMessage(Buffer.from('three'));
  h.onDrain();
  h.onClose(1000, '', true);
  assert.deepEqual(events, ['msg one', 'msg two', 'msg three', 'drain', 'close 1000']);
});

test('a refused token: refuse with the reason, nothing replayed', async () => {
  const { h, d, events } = harness();
  h.onMessage(Buffer.from('x'));
  d.resolve({ ok: false, reason: 'token expired' });
  await tick();
  assert.deepEqual(events, ['refuse token expired']);
});

test('more than the bound before acceptance closes with 1008', async () => {
  const { h, events } = harness(5);
  h.onMessage(Buffer.from('1234'));
  h.onMessage(Buffer.from('56'));
  h.onMessage(Buffer.from('7'));
  assert.deepEqual(events, ['closed 1008 too much data before authentication completed']);
});

test('a connection closed during the check never opens a session', async () => {
  const { h, d, events } = harness();
  h.onMessage(Buffer.from('x'));
  h.onClose(1006, '', false);
  d.resolve({ ok: true, principal });
  await tick();
  assert.deepEqual(events, []);
});
