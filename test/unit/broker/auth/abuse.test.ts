/** AbuseGuard with a fake clock: each per-IP limit trips and recovers; memory stays bounded. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { auth } from './load.js';

const { AbuseGuard, addressKey } = auth;

function guard(overrides: Partial<ConstructorParameters<typeof AbuseGuard>[0]> = {}) {
  const clock = { t: 1_000_000 };
  const g = new AbuseGuard(
    { maxConnectionsPerIp: 0, connectRatePerIp: 0, connectBurstPerIp: 1, authFailuresBeforeBackoff: 0, authBackoffMaxSec: 60, limitsExemptIps: [], ...overrides },
    () => clock.t,
  );
  return { g, clock };
}

test('connections per IP: the limit trips per address and frees when one closes', () => {
  const { g } = guard({ maxConnectionsPerIp: 2 });
  for (let i = 0; i < 2; i++) {
    assert.equal(g.admit('10.0.0.1'), undefined);
    g.opened('10.0.0.1');
  }
  assert.equal(g.admit('10.0.0.1')?.refusal, 'connections-per-ip');
  assert.equal(g.admit('10.0.0.2'), undefined, 'another address is unaffected');
  g.closed('10.0.0.1');
  assert.equal(g.admit('10.0.0.1'), undefined);
  assert.equal(g.stats.refused['connections-per-ip'], 1);
});

test('connect rate per IP: burst, then the sustained rate, refilled over time', () => {
  const { g, clock } = guard({ connectRatePerIp: 10, connectBurstPerIp: 3 });
  for (let i = 0; i < 3; i++) assert.equal(g.admit('a'), undefined);
  const r = g.admit('a');
  assert.equal(r?.refusal, 'connect-rate');
  assert.equal(r?.retryAfterMs, 100);
  clock.t += 100;
  assert.equal(g.admit('a'), undefined);
  assert.equal(g.admit('a')?.refusal, 'connect-rate');
});

test('auth backoff: free failures, then doubling waits up to the cap; a success resets', () => {
  const { g, clock } = guard({ authFailuresBeforeBackoff: 2, authBackoffMaxSec: 3 });
  g.authFailed('a');
  assert.equal(g.admit('a'), undefined);
  g.authFailed('a');
  const r = g.admit('a');
  assert.equal(r?.refusal, 'auth-backoff');
  assert.equal(r?.retryAfterMs, 1000);
  assert.equal(g.backoffMs('a'), 1000);
  clock.t += 1000;
  assert.equal(g.admit('a'), undefined);
  g.authFailed('a');
  assert.equal(g.admit('a')?.retryAfterMs, 2000);
  clock.t += 2000;
  g.authFailed('a');
  assert.equal(g.admit('a')?.retryAfterMs, 3000, 'capped at authBackoffMaxSec');
  clock.t += 3000;
  g.authSucceeded('a');
  g.authFailed('a');
  assert.equal(g.admit('a'), undefined, 'the count restarted after the success');
});

test('idle addresses are pruned; addresses with open connections or failures are kept', () => {
  const { g, clock } = guard({ connectRatePerIp: 100, connectBurstPerIp: 1, authFailuresBeforeBackoff: 3 });
  for (let i = 0; i < 1000; i++) g.admit(`10.1.${i >> 8}.${i & 255}`);
  g.opened('keep-open');
  g.authFailed('keep-failed');
  clock.t += 2000;
  g.admit('trigger');
  assert.equal(g.size, 3, 'only trigger, keep-open and keep-failed remain');
});

test('exempt addresses are never limited', () => {
  const { g } = guard({ maxConnectionsPerIp: 1, authFailuresBeforeBackoff: 1, limitsExemptIps: ['127.0.0.1'] });
  for (let i = 0; i < 5; i++) {
    assert.equal(g.admit('127.0.0.1'), undefined);
    g.opened('127.0.0.1');
    g.authFailed('127.0.0.1');
  }
  assert.equal(g.size, 0);
});

test('addressKey strips TCP ports and the IPv4-mapped prefix', () => {
  assert.equal(addressKey('127.0.0.1:5555', true), '127.0.0.1');
  assert.equal(addressKey('::ffff:10.0.0.1:5555', true), '10.0.0.1');
  assert.equal(addressKey('::1:5555', true), '::1');
  assert.equal(addressKey('10.0.0.1', false), '10.0.0.1');
});
