/**
 * The permission matcher: coverage and overlap of filters against a brute-force
 * reference written from the spec (enumerate every topic of a small universe and
 * ask `topicMatches`), substitution safety, and the allow/deny model.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { topicMatches } from 'topicast/protocol';
import { auth, permissions as permissionsModule } from './load.js';

const { filterCovers, filtersOverlap, substitute, Permissions } = auth;
const { levelsMatch } = permissionsModule;

// Literals a, b and a `$` level; filters up to 4 levels, so witnesses need at most 5 (see below).
const LITERALS = ['a', 'b', '$s'];
const UNIVERSE: string[] = [];
(function build(prefix: string[], depth: number): void {
  if (prefix.length > 0) UNIVERSE.push(prefix.join('/'));
  if (depth === 0) return;
  for (const l of LITERALS) build([...prefix, l], depth - 1);
})([], 5);

const filterArb = fc
  .array(fc.constantFrom('a', 'b', '$s', '+', '#'), { minLength: 1, maxLength: 4 })
  .filter((levels) => levels.indexOf('#') === -1 || levels.indexOf('#') === levels.length - 1)
  .map((levels) => levels.join('/'));

function coversRef(a: string, f: string): boolean {
  return UNIVERSE.every((t) => !topicMatches(f, t) || topicMatches(a, t));
}
function overlapsRef(a: string, b: string): boolean {
  return UNIVERSE.some((t) => topicMatches(a, t) && topicMatches(b, t));
}

test('filterCovers agrees with the brute-force reference', () => {
  fc.assert(fc.property(filterArb, filterArb, (a, f) => filterCovers(a, f) === coversRef(a, f)), { numRuns: 3000 });
});

test('filtersOverlap agrees with the brute-force reference and is symmetric', () => {
  fc.assert(fc.property(filterArb, filterArb, (a, b) => filtersOverlap(a, b) === overlapsRef(a, b) && filtersOverlap(b, a) === filtersOverlap(a, b)), { numRuns: 3000 });
});

test('levelsMatch (pre-split, used per publish and delivery) agrees with topicMatches', () => {
  const topicArb = fc.array(fc.constantFrom('a', 'b', '$s', ''), { minLength: 1, maxLength: 5 }).map((l) => l.join('/')).filter((t) => t.length > 0);
  fc.assert(fc.property(filterArb, topicArb, (f, t) => levelsMatch(f.split('/'), t.split('/')) === topicMatches(f, t)), { numRuns: 5000 });
});

test('coverage examples, including the $ rule [MQTT-4.7.2-1]', () => {
  assert.equal(filterCovers('devices/#', 'devices/+/status'), true);
  assert.equal(filterCovers('devices/#', 'devices'), true); // 'a/#' matches 'a'
  assert.equal(filterCovers('devices/+/status', 'devices/#'), false);
  assert.equal(filterCovers('devices/+', 'devices/+/x'), false);
  assert.equal(filterCovers('#', '$SYS/#'), false);
  assert.equal(filterCovers('+/x', '$SYS/x'), false);
  assert.equal(filterCovers('$SYS/#', '$SYS/broker/uptime'), true);
  assert.equal(filterCovers('#', '+/x'), true); // '+' at the root matches no $ topic either
});

test('substitution fills whole levels and refuses values that would widen a filter', () => {
  assert.equal(substitute('devices/{sub}/#', { sub: 'pi-01' }), 'devices/pi-01/#');
  assert.equal(substitute('c/{clientId}/in', { clientId: 'x1' }), 'c/x1/in');
  for (const bad of ['', 'a/b', '+', '#', 'a+', 'x\u0000']) assert.equal(substitute('devices/{sub}/#', { sub: bad }), undefined, JSON.stringify(bad));
  assert.equal(substitute('devices/{sub}/#', {}), undefined);
  assert.equal(substitute('devices/{clientId}', { sub: 'a' }), undefined);
});

test('publish: allow list, deny precedence, nothing listed = nothing allowed', () => {
  const p = new Permissions({ publish: ['devices/{sub}/#'], denyPublish: ['devices/{sub}/admin/#'] }, { sub: 'pi' });
  assert.equal(p.canPublish('devices/pi/cpu'), true);
  assert.equal(p.canPublish('devices/pi'), true);
  assert.equal(p.canPublish('devices/other/cpu'), false);
  assert.equal(p.canPublish('devices/pi/admin/reboot'), false);
  assert.equal(new Permissions({}).canPublish('a'), false);
  assert.equal(new Permissions({}).canSubscribe('a'), 'deny');
});

test('subscribe: covered = allow, overlapping a deny = filtered per topic, covered by a deny = deny', () => {
  const p = new Permissions({ subscribe: ['devices/#'], denySubscribe: ['devices/+/secret'] });
  assert.equal(p.canSubscribe('devices/+/status'), 'allow');
  assert.equal(p.canSubscribe('devices/#'), 'filtered');
  assert.equal(p.canSubscribe('devices/pi/secret'), 'deny');
  assert.equal(p.canSubscribe('#'), 'deny'); // not covered by devices/#
  assert.equal(p.canSubscribe('$SYS/#'), 'deny');
  assert.equal(p.canRead('devices/pi/status'), true);
  assert.equal(p.canRead('devices/pi/secret'), false);
  assert.equal(p.canRead('other'), false);
});

test('a deny rule whose placeholder cannot be filled denies everything (fails closed)', () => {
  const p = new Permissions({ publish: ['#'], subscribe: ['#'], denyPublish: ['devices/{clientId}/#'] }, { sub: 'a' });
  assert.equal(p.canPublish('x'), false);
  assert.equal(p.canSubscribe('x'), 'deny');
  assert.equal(p.canRead('x'), false);
});

test('an allow rule whose placeholder cannot be filled grants nothing', () => {
  const p = new Permissions({ publish: ['devices/{sub}/#', 'public/#'] }, { sub: 'a/b' });
  assert.equal(p.canPublish('devices/a/b/x'), false);
  assert.equal(p.canPublish('public/x'), true);
});
