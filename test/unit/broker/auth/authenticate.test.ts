/**
 * createAuth: the static token file, JWT verification (HS256, RS256, ES256, EdDSA from
 * a PEM key, a JWK or a JWKS; exp/nbf/aud/iss with clock skew; algorithm confusion and
 * `none` refused), claims → permissions, anonymous modes, bad files at start-up, origins.
 * Tokens are signed with node:crypto (jwt-sign.ts), not with the broker's jose.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { loadConfig } from '@topicast/broker';
import { auth, origin } from './load.js';
import { keyPair, nowSec, signJwt } from './jwt-sign.js';

const dir = mkdtempSync(join(tmpdir(), 'topicast-auth-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
function file(content: string): string {
  const p = join(dir, `f${n++}`);
  writeFileSync(p, content);
  return p;
}
function make(args: string[]): ReturnType<typeof auth.createAuth> {
  return auth.createAuth(loadConfig(args, {}));
}
const SECRET = 'a-test-secret-that-is-long-enough-for-hs256!';
const claims = { topicast: { publish: ['devices/{sub}/#'], subscribe: ['devices/#'] } };

test('no auth configured: everyone is unrestricted and a token is ignored', async () => {
  const a = make([]);
  assert.equal(a.configured, false);
  assert.equal(a.anonymous, true);
  for (const token of [undefined, 'garbage']) {
    const r = await a.authenticate(token);
    assert.ok(r.ok);
    assert.equal(r.principal.permissions, undefined);
  }
  assert.equal(a.originAllowed('https://evil.example', 'broker:8080'), true, 'origins unchecked while anonymous and no list');
});

test('token file: plain and SHA-256 entries, {sub} substitution, unknown token refused', async () => {
  const path = file(JSON.stringify({
    tokens: [
      { token: 'pi-secret', sub: 'pi-01', publish: ['devices/{sub}/#'], subscribe: ['devices/{sub}/cmd/#'] },
      { tokenSha256: createHash('sha256').update('dash-secret').digest('hex'), sub: 'dash', subscribe: ['#', '$SYS/#'] },
    ],
  }));
  const a = make(['--auth-token-file', path]);
  assert.equal(a.configured, true);
  assert.equal(a.anonymous, false);
  const pi = await a.authenticate('pi-secret');
  assert.ok(pi.ok);
  assert.equal(pi.principal.subject, 'pi-01');
  assert.equal(pi.principal.permissions!.canPublish('devices/pi-01/cpu'), true);
  assert.equal(pi.principal.permissions!.canPublish('devices/pi-02/cpu'), false);
  assert.equal(pi.principal.permissions!.canSubscribe('devices/pi-01/cmd/#'), 'allow');
  const dash = await a.authenticate('dash-secret');
  assert.ok(dash.ok);
  assert.equal(dash.principal.permissions!.canSubscribe('$SYS/#'), 'allow');
  assert.equal(dash.principal.permissions!.canPublish('x'), false);
  assert.deepEqual(await a.authenticate('nope'), { ok: false, reason: 'token not accepted' });
  assert.deepEqual(await a.authenticate(undefined), { ok: false, reason: 'token required' });
  assert.equal(a.stats.failures, 2);
});

test('bad token files stop start-up naming the setting', () => {
  assert.throws(() => make(['--auth-token-file', join(dir, 'missing.json')]), /invalid setting authTokenFile: cannot read/);
  assert.throws(() => make(['--auth-token-file', file('{"tokens": [{"sub": "x"}]}')]), /authTokenFile: .*needs "token"/);
  assert.throws(() => make(['--auth-token-file', file('{"tokens": [{"token": "t", "publish": ["a/#/b"]}]}')]), /publish: filter "a\/#\/b"/);
  assert.throws(() => make(['--auth-token-file', file('{"tokens": [{"token": "t"}, {"token": "t"}]}')]), /repeats a token/);
});

for (const alg of ['RS256', 'ES256', 'EdDSA'] as const) {
  test(`JWT ${alg}: PEM public key, JWK and JWKS files`, async () => {
    const { privateKey, publicKey, publicPem } = keyPair(alg);
    const jwk = publicKey.export({ format: 'jwk' });
    const exp = nowSec() + 60;
    const token = signJwt(alg, privateKey, { sub: 'pi-01', exp, ...claims }, { kid: 'k1' });
    for (const args of [
      ['--auth-jwt-key-file', file(publicPem)],
      ['--auth-jwt-key-file', file(JSON.stringify(jwk))],
      ['--auth-jwks-file', file(JSON.stringify({ keys: [{ ...jwk, kid: 'k1', alg }] }))],
    ]) {
      const a = make(args);
      const r = await a.authenticate(token);
      assert.ok(r.ok, `${args[0]}: ${JSON.stringify(r)}`);
      assert.equal(r.principal.subject, 'pi-01');
      assert.equal(r.principal.permissions!.canPublish('devices/pi-01/x'), true);
      assert.equal(r.principal.permissions!.canPublish('devices/pi-02/x'), false);
      // The token's own exp (not the clock after the check, which a loaded machine makes late).
      assert.ok(Math.abs(r.principal.expiresAtMs! - exp * 1000) < 2000);
      // A token signed by another key of the same kind.
      const other = signJwt(alg, keyPair(alg).privateKey, { sub: 'pi-01', ...claims }, { kid: 'k1' });
      assert.deepEqual(await a.authenticate(other), { ok: false, reason: 'token signature invalid' });
    }
  });
}

test('JWT HS256: secret file; expiry, nbf, audience, issuer, clock skew', async () => {
  const keyFile = file(`${SECRET}\n`);
  const a = make(['--auth-jwt-key-file', keyFile, '--auth-jwt-audience', 'topicast', '--auth-jwt-issuer', 'https://issuer.test', '--auth-clock-skew-sec', '30']);
  const base = { sub: 'pi-01', aud: 'topicast', iss: 'https://issuer.test', ...claims };
  const ok = await a.authenticate(signJwt('HS256', SECRET, { ...base, exp: nowSec() + 60 }));
  assert.ok(ok.ok);
  assert.deepEqual(await a.authenticate(signJwt('HS256', SECRET, { ...base, exp: nowSec() - 120 })), { ok: false, reason: 'token expired' });
  assert.ok((await a.authenticate(signJwt('HS256', SECRET, { ...base, exp: nowSec() - 10 }))).ok, 'within the 30 s skew');
  assert.deepEqual(await a.authenticate(signJwt('HS256', SECRET, { ...base, nbf: nowSec() + 120 })), { ok: false, reason: 'token not yet valid' });
  assert.ok((await a.authenticate(signJwt('HS256', SECRET, { ...base, nbf: nowSec() + 10 }))).ok, 'nbf within the skew');
  assert.deepEqual(await a.authenticate(signJwt('HS256', SECRET, { ...base, aud: 'another-service' })), { ok: false, reason: 'token audience not accepted' });
  assert.deepEqual(await a.authenticate(signJwt('HS256', SECRET, { ...base, iss: 'https://evil.test' })), { ok: false, reason: 'token issuer not accepted' });
  assert.deepEqual(await a.authenticate(signJwt('HS256', 'another-secret-of-enough-length-for-hs256', base)), { ok: false, reason: 'token signature invalid' });
  assert.deepEqual(await a.authenticate(signJwt('none', undefined, base)), { ok: false, reason: 'token algorithm not accepted' });
  assert.deepEqual(await a.authenticate(signJwt('HS256', SECRET, { ...base, topicast: { publish: 'devices/#' } })), { ok: false, reason: 'token claim topicast.publish must be a list of topic filters' });
});

test('algorithm confusion: an RS256 public key is never used as an HS256 secret', async () => {
  const { publicPem } = keyPair('RS256');
  const a = make(['--auth-jwt-key-file', file(publicPem)]);
  const forged = signJwt('HS256', publicPem, { sub: 'x', ...claims });
  const r = await a.authenticate(forged);
  assert.equal(r.ok, false);
});

test('an algorithm outside authJwtAlgorithms is refused', async () => {
  const { privateKey, publicPem } = keyPair('ES256');
  const a = make(['--auth-jwt-key-file', file(publicPem), '--auth-jwt-algorithms', 'RS256']);
  assert.deepEqual(await a.authenticate(signJwt('ES256', privateKey, { sub: 'x' })), { ok: false, reason: 'token algorithm not accepted' });
});

test('key files that cannot work stop start-up', () => {
  assert.throws(() => make(['--auth-jwt-key-file', file('short')]), /authJwtKeyFile: .*at least 32 bytes/);
  const { privateKey } = keyPair('ES256');
  assert.throws(() => make(['--auth-jwt-key-file', file(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString())]), /private key/);
  assert.throws(() => make(['--auth-jwks-file', file('{"keys": []}')]), /authJwksFile: .*at least one key/);
  assert.throws(() => make(['--auth-jwt-audience', 'x']), /set authJwtKeyFile or authJwksFile/);
  assert.throws(() => make(['--auth-jwt-key-file', file(SECRET), '--auth-jwt-algorithms', 'none']), /"none" is not a supported/);
});

test('anonymous: off by default once auth is configured; when on, it gets the anonymous lists', async () => {
  const keyFile = file(SECRET);
  const closed = make(['--auth-jwt-key-file', keyFile]);
  assert.equal(closed.anonymous, false);
  assert.equal((await closed.authenticate(undefined)).ok, false);
  const open = make(['--auth-jwt-key-file', keyFile, '--auth-anonymous', 'true', '--auth-anonymous-publish', 'public/#']);
  const r = await open.authenticate(undefined);
  assert.ok(r.ok);
  assert.equal(r.principal.anonymous, true);
  assert.equal(r.principal.permissions!.canPublish('public/x'), true);
  assert.equal(r.principal.permissions!.canPublish('devices/x'), false);
  assert.equal(r.principal.permissions!.canSubscribe('$SYS/#'), 'allow');
  // A bad token is refused even when anonymous access is on: no silent downgrade.
  assert.equal((await open.authenticate('not-a-token')).ok, false);
});

test('origins: checked once auth is configured; own origin, list entries and * allowed', () => {
  const a = make(['--auth-jwt-key-file', file(SECRET), '--allowed-origins', 'https://app.example.com/,http://localhost:5173']);
  assert.equal(a.originAllowed('', 'broker:8080'), true, 'no Origin: not a browser');
  assert.equal(a.originAllowed('http://broker:8080', 'broker:8080'), true, 'own origin');
  assert.equal(a.originAllowed('https://APP.example.com', 'broker:8080'), true);
  assert.equal(a.originAllowed('http://localhost:5173', 'broker:8080'), true);
  assert.equal(a.originAllowed('https://evil.example', 'broker:8080'), false);
  assert.equal(a.originAllowed('https://app.example.com.evil.example', 'broker:8080'), false);
  assert.equal(make(['--auth-jwt-key-file', file(SECRET), '--allowed-origins', '*']).originAllowed('https://evil.example', 'h'), true);
  // Anonymous but with a list: the list applies.
  assert.equal(make(['--allowed-origins', 'https://a.example']).originAllowed('https://b.example', 'h'), false);
  assert.equal(origin.checkOrigin('null', 'h', new Set()), false, 'opaque origins (sandboxed iframes, file:) are not the broker');
});
