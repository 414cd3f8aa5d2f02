/**
 * Topic names and filters (MQTT 3.1.1 §4.7), shared by broker and SDK.
 *
 * Names are split into levels by `/`; filters may use `+` (exactly one level)
 * and `#` (this level and everything below, last level only). Names never hold
 * wildcards. Topics starting with `$` are not matched by a filter whose first
 * level is a wildcard. Both are non-empty UTF-8 without NUL.
 * Cost: validation and `topicMatches` are O(length of the strings).
 */

export interface TopicLimits {
  /** Longest topic or filter in UTF-8 bytes. */
  maxTopicBytes: number;
  /** Most levels in a topic or filter. */
  maxTopicLevels: number;
}

/** MQTT's own ceiling: topic lengths are a 16-bit field [MQTT-1.5.3]. 128 levels is far beyond any device tree. */
export const DEFAULT_TOPIC_LIMITS: TopicLimits = { maxTopicBytes: 65535, maxTopicLevels: 128 };

const utf8 = new TextEncoder();

function utf8Length(s: string): number {
  // Fast path: most topics are ASCII, whose UTF-8 length is the string length.
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return utf8.encode(s).length;
  return s.length;
}

function hasLoneSurrogate(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff) {
      const d = s.charCodeAt(i + 1);
      if (!(d >= 0xdc00 && d <= 0xdfff)) return true;
      i++;
    } else if (c >= 0xdc00 && c <= 0xdfff) return true;
  }
  return false;
}

function commonProblem(s: string, limits: TopicLimits): string | undefined {
  if (s.length === 0) return 'must not be empty'; // [MQTT-4.7.3-1]
  if (s.includes('\u0000')) return 'must not contain NUL'; // [MQTT-4.7.3-2]
  if (hasLoneSurrogate(s)) return 'must be valid UTF-8'; // [MQTT-1.5.3-1]
  if (utf8Length(s) > limits.maxTopicBytes) return `must be at most ${limits.maxTopicBytes} bytes`;
  let levels = 1;
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === 0x2f) levels++;
  if (levels > limits.maxTopicLevels) return `must have at most ${limits.maxTopicLevels} levels`;
  return undefined;
}

/** Why `topic` is not a valid topic name, or undefined when it is. */
export function topicProblem(topic: string, limits: TopicLimits = DEFAULT_TOPIC_LIMITS): string | undefined {
  const p = commonProblem(topic, limits);
  if (p) return p;
  if (topic.includes('+') || topic.includes('#')) return 'must not contain wildcards'; // [MQTT-3.3.2-2]
  return undefined;
}

/** Why `filter` is not a valid topic filter, or undefined when it is. */
export function filterProblem(filter: string, limits: TopicLimits = DEFAULT_TOPIC_LIMITS): string | undefined {
  const p = commonProblem(filter, limits);
  if (p) return p;
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i]!;
    if (level.includes('#') && (level !== '#' || i !== levels.length - 1)) return "'#' must be a whole level and the last one"; // [MQTT-4.7.1-2]
    if (level.includes('+') && level !== '+') return "'+' must be a whole level"; // [MQTT-4.7.1-3]
  }
  return undefined;
}

export function isValidTopic(topic: string, limits?: TopicLimits): boolean {
  return topicProblem(topic, limits) === undefined;
}

export function isValidFilter(filter: string, limits?: TopicLimits): boolean {
  return filterProblem(filter, limits) === undefined;
}

export function isWildcardFilter(filter: string): boolean {
  return filter.includes('+') || filter.includes('#');
}

/**
 * Whether a valid `filter` matches a valid topic name.
 * @example
 * topicMatches('devices/+/cpu/#', 'devices/pi-01/cpu/temperature') // true
 * topicMatches('#', '$SYS/broker/uptime') // false: [MQTT-4.7.2-1]
 */
export function topicMatches(filter: string, topic: string): boolean {
  if (topic.charCodeAt(0) === 0x24 /* $ */ && (filter.charCodeAt(0) === 0x2b || filter.charCodeAt(0) === 0x23)) return false; // [MQTT-4.7.2-1]
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i];
    if (level === '#') return true; // also matches the parent: 'a/#' matches 'a' [MQTT-4.7.1-2]
    if (i >= t.length) return false;
    if (level !== '+' && level !== t[i]) return false;
  }
  return f.length === t.length;
}
