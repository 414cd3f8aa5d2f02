/**
 * MQTT-style filters over sensor paths, for the per-sensor settings in the configuration:
 * `+` is one level, `#` (last level only) is that level and everything below. Sensor paths have
 * no `$` topics, so the $-rule of MQTT §4.7.2 does not arise. O(levels).
 */

/** @example sensorFilterMatches('net/+/rx', 'net/eth0/rx') === true; sensorFilterMatches('hwmon/#', 'hwmon') === true */
export function sensorFilterMatches(filter: string, path: string): boolean {
  const f = filter.split('/');
  const p = path.split('/');
  for (let i = 0; i < f.length; i++) {
    const level = f[i]!;
    if (level === '#') return true;
    if (i >= p.length) return false;
    if (level !== '+' && level !== p[i]) return false;
  }
  return f.length === p.length;
}

/** Why `filter` is not a valid sensor filter, or undefined. */
export function sensorFilterProblem(filter: string): string | undefined {
  if (filter === '') return 'must not be empty';
  const levels = filter.split('/');
  for (let i = 0; i < levels.length; i++) {
    const l = levels[i]!;
    if (l.includes('#') && (l !== '#' || i !== levels.length - 1)) return "'#' must be a whole level and the last one";
    if (l.includes('+') && l !== '+') return "'+' must be a whole level";
  }
  return undefined;
}
