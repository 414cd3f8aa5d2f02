/**
 * Topic ↔ NATS subject encoding for the NATS bus (cluster/nats.ts). Pure functions, no I/O.
 *
 * Layout: `<space>.<root>.<level>.<level>…` where `space` is a dot-separated prefix chosen by the
 * bus (e.g. `topicast.m` for live messages, `topicast.r` for the retained stream), `root` is `t`
 * for ordinary topics and `s` for topics whose first level starts with `$`. Putting `$` topics
 * under their own root is what keeps a filter starting with a wildcard from matching them
 * [MQTT-4.7.2-1]: such a filter always encodes under root `t`.
 *
 * One MQTT level is one NATS token. A token is the level with these bytes escaped as `%XX`
 * (two uppercase hex digits): `.` (NATS token separator), `*` and `>` (NATS wildcards), `%`
 * (the escape itself) and ASCII whitespace / control characters 0x00–0x20, 0x7F (they end a
 * NATS control-line field). An empty level, which NATS has no token for, is the token `%` alone,
 * which no non-empty level produces (every other `%` is followed by two hex digits). Everything
 * else, non-ASCII included, is copied, so device trees read the same in `nats sub`.
 * The escape is a bijection between levels and canonical tokens: `decodeToken` refuses any
 * token `encodeToken` cannot produce (lowercase hex, escaping a byte that needs none).
 *
 * Filters: `+` → `*`; a trailing `#` → `>` plus the parent itself (`a/#` matches `a`, `a.>` does
 * not), so a filter becomes one or two subjects; `#` alone (no parent) stays one: `<space>.t.>`.
 *
 * Length: NATS refuses control lines beyond `max_control_line` (4096 bytes by default), and a
 * subject also travels in JetStream API lines next to an ack reply of ~200 bytes. A topic of at
 * most MAX_BUS_TOPIC_BYTES UTF-8 bytes encodes to at most 3 bytes per byte plus the space and
 * root, which stays under MAX_SUBJECT_BYTES for any space up to MAX_SPACE_BYTES.
 * Cost: O(length) per call; the hot path (decoding a received subject without `%`) is one
 * slice and one replace.
 */
import { filterProblem, topicProblem, type TopicLimits } from 'topicast/protocol';
import { BrokerError } from '../core/errors.js';

/** NATS's default `max_control_line`, bytes. */
export const NATS_CONTROL_LINE_BYTES = 4096;
/** Longest subject we produce: the control line minus room for the verb, an ack reply subject (~200 B) and sizes. */
export const MAX_SUBJECT_BYTES = NATS_CONTROL_LINE_BYTES - 512;
/** Longest subject space (prefix) accepted by `checkSpace`. */
export const MAX_SPACE_BYTES = 64;
/**
 * Longest topic or filter (UTF-8 bytes) a bus carries. Worst case 3 × 1024 escaped bytes + space
 * + root + separators = 3072 + 64 + 3 < MAX_SUBJECT_BYTES; equal to the broker's default
 * `maxTopicBytes`, so only brokers configured for longer topics see it. The bridge refuses longer
 * topics at the edge with a clear error when a bus is configured.
 */
export const MAX_BUS_TOPIC_BYTES = 1024;

/** NATS has no token count limit; the byte cap bounds the work. */
const BUS_TOPIC_LIMITS: TopicLimits = { maxTopicBytes: MAX_BUS_TOPIC_BYTES, maxTopicLevels: MAX_BUS_TOPIC_BYTES + 1 };

/** Root token of ordinary topics and of `$` topics. */
export const ROOT = { plain: 't', dollar: 's' } as const;

/** Thrown for a topic, filter, space or subject that cannot be encoded or decoded. */
export class SubjectError extends BrokerError {
  override readonly name = 'SubjectError';
  constructor(message: string) {
    super('subject', message);
  }
}

const HEX = '0123456789ABCDEF';

/** Whether the UTF-16 code unit `c` must be escaped in a token. */
function mustEscape(c: number): boolean {
  return c <= 0x20 || c === 0x7f || c === 0x2e /* . */ || c === 0x2a /* * */ || c === 0x3e /* > */ || c === 0x25 /* % */;
}

/** Bytes no decoded level may hold: the level separator and the MQTT wildcards (a topic has none). */
function forbidden(c: number): boolean {
  return c === 0x2f /* / */ || c === 0x2b /* + */ || c === 0x23 /* # */;
}

function badByte(c: number): SubjectError {
  return new SubjectError(`${forbidden(c) ? 'forbidden' : 'unescaped'} byte 0x${c.toString(16)} in subject token`);
}

/** One MQTT level → one NATS token (see the design note). */
export function encodeToken(level: string): string {
  if (level.length === 0) return '%';
  let i = 0;
  while (i < level.length && !mustEscape(level.charCodeAt(i))) i++;
  if (i === level.length) return level; // the common case: nothing to escape
  let out = level.slice(0, i);
  for (; i < level.length; i++) {
    const c = level.charCodeAt(i);
    out += mustEscape(c) ? '%' + HEX[c >> 4]! + HEX[c & 15]! : level[i]!;
  }
  return out;
}

/** One canonical NATS token → the MQTT level; throws SubjectError for any token `encodeToken` cannot produce. */
export function decodeToken(token: string): string {
  if (token === '%') return '';
  if (token.length === 0) throw new SubjectError('empty subject token');
  if (!token.includes('%')) {
    for (let i = 0; i < token.length; i++) {
      const c = token.charCodeAt(i);
      if (mustEscape(c) || forbidden(c)) throw badByte(c);
    }
    return token;
  }
  let out = '';
  for (let i = 0; i < token.length; i++) {
    const c = token.charCodeAt(i);
    if (c !== 0x25) {
      if (mustEscape(c) || forbidden(c)) throw badByte(c);
      out += token[i]!;
      continue;
    }
    // charAt is '' past the end, and ''.indexOf would find it at 0: check the length first.
    const hi = i + 2 < token.length ? HEX.indexOf(token.charAt(i + 1)) : -1;
    const lo = i + 2 < token.length ? HEX.indexOf(token.charAt(i + 2)) : -1;
    if (hi < 0 || lo < 0) throw new SubjectError(`bad escape in subject token ${JSON.stringify(token)}`);
    const code = hi * 16 + lo;
    if (!mustEscape(code) || code === 0) throw new SubjectError(`non-canonical escape %${token.slice(i + 1, i + 3)} in subject token`);
    out += String.fromCharCode(code);
    i += 2;
  }
  return out;
}

/** Validates a subject space (prefix): dot-separated tokens of `[A-Za-z0-9_-]`, at most MAX_SPACE_BYTES. */
export function checkSpace(space: string): string {
  if (space.length === 0 || space.length > MAX_SPACE_BYTES || !/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(space)) {
    throw new SubjectError(`subject prefix ${JSON.stringify(space)} must be 1-${MAX_SPACE_BYTES} characters of A-Z a-z 0-9 _ - in dot-separated tokens`);
  }
  return space;
}

function rootOf(firstLevel: string): string {
  return firstLevel.charCodeAt(0) === 0x24 /* $ */ ? ROOT.dollar : ROOT.plain;
}

/**
 * A topic name → its subject in `space`.
 * @example topicToSubject('devices/pi.01/cpu', 'topicast.m') // 'topicast.m.t.devices.pi%2E01.cpu'
 */
export function topicToSubject(topic: string, space: string): string {
  const problem = topicProblem(topic, BUS_TOPIC_LIMITS);
  if (problem !== undefined) throw new SubjectError(`topic ${JSON.stringify(topic.slice(0, 64))} ${problem}`);
  const levels = topic.split('/');
  let out = space + '.' + rootOf(levels[0]!);
  for (const level of levels) out += '.' + encodeToken(level);
  return out;
}

/**
 * A topic filter → the subjects whose union NATS-matches exactly the topics the filter
 * MQTT-matches (one, or two for a filter ending in `/#`).
 * @example filterToSubjects('a/+/#', 'topicast.m') // ['topicast.m.t.a.*', 'topicast.m.t.a.*.>']
 */
export function filterToSubjects(filter: string, space: string): string[] {
  const problem = filterProblem(filter, BUS_TOPIC_LIMITS);
  if (problem !== undefined) throw new SubjectError(`filter ${JSON.stringify(filter.slice(0, 64))} ${problem}`);
  const levels = filter.split('/');
  // A filter starting with a wildcard never matches `$` topics [MQTT-4.7.2-1]: root `t`.
  const first = levels[0]!;
  let out = space + '.' + (first === '+' || first === '#' ? ROOT.plain : rootOf(first));
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level === '#') {
      // `#` also matches its parent level [MQTT-4.7.1-2]; `#` alone has no parent.
      return i === 0 ? [out + '.>'] : [out, out + '.>'];
    }
    out += '.' + (level === '+' ? '*' : encodeToken(level));
  }
  return [out];
}

/**
 * A subject in `space` (as produced by `topicToSubject`) → the topic. Throws SubjectError for a
 * subject outside the space, with an unknown root, or with a non-canonical token.
 */
export function subjectToTopic(subject: string, space: string): string {
  if (subject.length <= space.length + 3 || !subject.startsWith(space) || subject.charCodeAt(space.length) !== 0x2e || subject.charCodeAt(space.length + 2) !== 0x2e) {
    throw new SubjectError(`subject ${JSON.stringify(subject.slice(0, 64))} is not in ${space}`);
  }
  const root = subject[space.length + 1];
  const rest = subject.slice(space.length + 3);
  let topic: string;
  if (!rest.includes('%')) {
    // Hot path: nothing escaped. Tokens must still be canonical (no byte that needs escaping).
    for (let i = 0; i < rest.length; i++) {
      const c = rest.charCodeAt(i);
      if (c !== 0x2e && (mustEscape(c) || forbidden(c))) throw badByte(c);
      if (c === 0x2e && (i === 0 || i === rest.length - 1 || rest.charCodeAt(i - 1) === 0x2e)) throw new SubjectError('empty subject token');
    }
    topic = rest.replaceAll('.', '/');
  } else {
    topic = rest.split('.').map(decodeToken).join('/');
  }
  const dollar = topic.charCodeAt(0) === 0x24;
  if (root === ROOT.plain ? dollar : root !== ROOT.dollar || !dollar) {
    throw new SubjectError(`subject ${JSON.stringify(subject.slice(0, 64))} has root ${root} for topic ${JSON.stringify(topic.slice(0, 64))}`);
  }
  return topic;
}
