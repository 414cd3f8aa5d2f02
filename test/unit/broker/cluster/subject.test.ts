/**
 * Topic ↔ NATS subject encoding (broker/src/cluster/subject.ts), property-tested (STYLE.md #12):
 * the escape is a bijection, and NATS matching of encoded subjects equals MQTT matching of the
 * topics and filters, checked against two ten-line reference matchers written from the specs
 * (MQTT 3.1.1 §4.7 and NATS "Subject-Based Messaging": `*` one token, `>` one or more, last).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ConfigError, loadConfig } from '@topicast/broker';
import type * as Subject from '../../../../broker/src/cluster/subject.js';
import { referenceMatches } from '../../../helpers/mqtt-reference.js';

// Internal module of the broker: loaded from its build output (the package exports only the public API).
const subject = (await import(new URL('../../../../../broker/dist/cluster/subject.js', import.meta.url).href)) as typeof Subject;
const { topicToSubject, filterToSubjects, subjectToTopic, encodeToken, decodeToken, checkSpace, SubjectError, MAX_BUS_TOPIC_BYTES, MAX_SUBJECT_BYTES } = subject;

const SPACE = 'topicast.m';

/** NATS reference: tokens split by `.`; `*` matches one token, `>` (last) one or more. */
function natsMatch(pattern: string, subj: string): boolean {
  const p = pattern.split('.');
  const s = subj.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return s.length > i;
    if (i >= s.length) return false;
    if (p[i] !== '*' && p[i] !== s[i]) return false;
  }
  return p.length === s.length;
}

/** A subject NATS accepts: non-empty tokens, no whitespace; in a topic subject no wildcard token. */
function validSubject(subj: string, wildcards: boolean): boolean {
  if (/[\u0000-\u0020\u007f]/.test(subj)) return false;
  const tokens = subj.split('.');
  return tokens.every((t, i) => t.length > 0 && (t === '*' || t === '>' ? wildcards && (t === '*' || i === tokens.length - 1) : !t.includes('*') && !t.includes('>')));
}

// Levels chosen to collide: every byte the escape cares about, look-alikes of escapes, `$`, non-ASCII.
const trickyLevel = fc.constantFrom('a', 'b', '', '.', '*', '>', '%', '%2E', '%25', ' ', '\t', '\n', '\u007f', 'a.b', 'a b', '$x', '$', 'é', '💡', 'x%');
const anyLevel = fc.string({ unit: 'grapheme', maxLength: 8 }).map((s) => s.replace(/[/+#\u0000]/g, ''));
const level = fc.oneof(trickyLevel, anyLevel);
const topic = fc.array(level, { minLength: 1, maxLength: 5 }).map((ls) => ls.join('/')).filter((t) => t.length > 0);
const filter = fc
  .tuple(fc.array(fc.oneof(trickyLevel, fc.constant('+')), { minLength: 1, maxLength: 5 }), fc.boolean())
  .map(([ls, hash]) => (hash ? [...ls, '#'] : ls).join('/'))
  .chain((f) => fc.constantFrom(f, '#', '+/#'))
  .filter((f) => f.length > 0);

test('decode(encode(topic)) = topic, and every subject is a valid NATS subject without wildcards', () => {
  fc.assert(
    fc.property(topic, (t) => {
      const s = topicToSubject(t, SPACE);
      assert.ok(validSubject(s, false), s);
      assert.equal(subjectToTopic(s, SPACE), t);
    }),
    { numRuns: 20000 },
  );
});

test('encoding is injective: different topics never share a subject', () => {
  fc.assert(fc.property(topic, topic, (a, b) => a === b || topicToSubject(a, SPACE) !== topicToSubject(b, SPACE)), { numRuns: 20000 });
});

test('the token escape is a bijection: a token decodes only if it is what its level encodes to', () => {
  fc.assert(fc.property(level, (l) => decodeToken(encodeToken(l)) === l), { numRuns: 5000 });
  const token = fc.oneof(fc.string({ maxLength: 6 }), fc.array(fc.constantFrom('%', '2', 'E', 'e', '0', 'A', 'a', '.', '*', ' ', '/'), { maxLength: 6 }).map((a) => a.join('')));
  fc.assert(
    fc.property(token, (t) => {
      let decoded: string;
      try {
        decoded = decodeToken(t);
      } catch (err) {
        assert.ok(err instanceof SubjectError);
        return;
      }
      assert.equal(encodeToken(decoded), t);
    }),
    { numRuns: 20000 },
  );
});

test('NATS matching of encoded subjects equals MQTT matching, $ topics included', () => {
  fc.assert(
    fc.property(filter, topic, (f, t) => {
      const subjects = filterToSubjects(f, SPACE);
      for (const s of subjects) assert.ok(validSubject(s, true), s);
      const s = topicToSubject(t, SPACE);
      assert.equal(subjects.some((p: string) => natsMatch(p, s)), referenceMatches(f, t), `filter ${JSON.stringify(f)} → ${subjects.join(' ')}, topic ${JSON.stringify(t)} → ${s}`);
    }),
    { numRuns: 30000 },
  );
});

test('golden encodings', () => {
  assert.equal(topicToSubject('devices/pi-01/cpu/temperature', SPACE), 'topicast.m.t.devices.pi-01.cpu.temperature');
  assert.equal(topicToSubject('a.b/*/>/%/ x', SPACE), 'topicast.m.t.a%2Eb.%2A.%3E.%25.%20x');
  assert.equal(topicToSubject('/a//', SPACE), 'topicast.m.t.%.a.%.%');
  assert.equal(topicToSubject('$SYS/uptime', SPACE), 'topicast.m.s.$SYS.uptime');
  assert.equal(topicToSubject('é/💡', SPACE), 'topicast.m.t.é.💡');
  assert.deepEqual(filterToSubjects('#', SPACE), ['topicast.m.t.>']);
  assert.deepEqual(filterToSubjects('a/#', SPACE), ['topicast.m.t.a', 'topicast.m.t.a.>']);
  assert.deepEqual(filterToSubjects('+/x', SPACE), ['topicast.m.t.*.x']);
  assert.deepEqual(filterToSubjects('$SYS/#', SPACE), ['topicast.m.s.$SYS', 'topicast.m.s.$SYS.>']);
});

test('the topic cap keeps the worst-case subject under the NATS control-line limit; beyond it a clear error', () => {
  const worst = '.'.repeat(MAX_BUS_TOPIC_BYTES); // every byte escaped to three
  const longestSpace = 'x'.repeat(64);
  assert.ok(Buffer.byteLength(topicToSubject(worst, longestSpace)) <= MAX_SUBJECT_BYTES);
  assert.ok(Buffer.byteLength(filterToSubjects(worst.slice(2) + '/#', longestSpace).at(-1)!) <= MAX_SUBJECT_BYTES);
  assert.throws(() => topicToSubject('a'.repeat(MAX_BUS_TOPIC_BYTES + 1), SPACE), /must be at most 1024 bytes/);
  assert.throws(() => filterToSubjects('é'.repeat(MAX_BUS_TOPIC_BYTES / 2) + '/#', SPACE), /must be at most 1024 bytes/);
});

test('bad input: clear errors, never a wrong subject or topic', () => {
  assert.throws(() => topicToSubject('a/+', SPACE), /must not contain wildcards/);
  assert.throws(() => topicToSubject('', SPACE), /must not be empty/);
  assert.throws(() => filterToSubjects('a/#/b', SPACE), /'#' must be a whole level and the last one/);
  assert.throws(() => subjectToTopic('other.t.a', SPACE), /not in topicast\.m/);
  assert.throws(() => subjectToTopic('topicast.m.t.$x', SPACE), /root t/); // a `$` topic under the plain root
  assert.throws(() => subjectToTopic('topicast.m.s.x', SPACE), /root s/);
  assert.throws(() => subjectToTopic('topicast.m.t.a..b', SPACE), /empty subject token/);
  assert.throws(() => subjectToTopic('topicast.m.t.a/b', SPACE), /forbidden byte 0x2f/);
  assert.throws(() => subjectToTopic('topicast.m.t.%41', SPACE), /non-canonical escape/);
  assert.throws(() => subjectToTopic('topicast.m.t.%00', SPACE), /non-canonical escape/);
  assert.throws(() => checkSpace('a..b'), /subject prefix/);
  assert.throws(() => checkSpace('a.*'), /subject prefix/);
  assert.equal(checkSpace('topicast-1.m'), 'topicast-1.m');
});

test('with a bus, a maxTopicBytes above the cap fails at start-up, so the edge refuses longer topics itself', () => {
  assert.equal(loadConfig(['--bus', 'nats://127.0.0.1:4222'], {}).maxTopicBytes, MAX_BUS_TOPIC_BYTES, 'the default fits');
  assert.throws(
    () => loadConfig(['--bus', 'nats://127.0.0.1:4222', '--max-topic-bytes', String(MAX_BUS_TOPIC_BYTES + 1)], {}),
    (err: Error) => err instanceof ConfigError && /^invalid setting maxTopicBytes: 1025 is more than a scale-out bus carries \(1024 bytes/.test(err.message),
  );
  assert.equal(loadConfig(['--max-topic-bytes', '4096'], {}).maxTopicBytes, 4096, 'a single node keeps its own limit');
});
