/**
 * Relations between MQTT filters (MQTT 3.1.1 §4.7), shared by permissions
 * (auth/permissions.ts: may this client subscribe to F?) and history
 * (core/history.ts: does a history pattern keep every topic F can match?).
 *
 * Both functions take valid filters and honour the `$` rule [MQTT-4.7.2-1].
 * Cost: O(levels), one split per filter.
 */

function splitLevels(filter: string): string[] {
  return filter.split('/');
}

function isDollar(level: string | undefined): boolean {
  return level !== undefined && level.charCodeAt(0) === 0x24;
}

function isWild(level: string | undefined): boolean {
  return level === '+' || level === '#';
}

/**
 * Whether every topic matched by filter `f` is also matched by filter `a`.
 * Both must be valid filters.
 * @example
 * filterCovers('devices/#', 'devices/+/status') // true
 * filterCovers('devices/+/status', 'devices/#') // false
 * filterCovers('#', '$SYS/#') // false: [MQTT-4.7.2-1]
 */
export function filterCovers(a: string, f: string): boolean {
  const al = splitLevels(a);
  const fl = splitLevels(f);
  // [MQTT-4.7.2-1] a filter starting with a wildcard matches no `$` topic; `f` starting with a
  // literal `$…` level matches only `$` topics, so such an `a` covers none of them.
  if (isWild(al[0]) && isDollar(fl[0])) return false;
  for (let i = 0; i < al.length; i++) {
    const x = al[i]!;
    if (x === '#') return true; // 'a/#' matches 'a' and everything below, so it covers whatever remains of f
    if (i >= fl.length) return false; // f ended (matches the topic with i levels), a needs more
    const y = fl[i]!;
    // f matches any depth from here, including none below level i (its parent, when i > 0). Only a '#'
    // here covers that, or at the root '+/#', which matches every topic of one level or more, as '#' does.
    if (y === '#') return i === 0 && x === '+' && al.length === 2 && al[1] === '#';
    if (x === '+') continue; // y is '+' or a literal: exactly one level either way
    if (y === '+' || x !== y) return false;
  }
  return fl.length === al.length;
}

/**
 * Whether some topic name is matched by both filters.
 * @example
 * filtersOverlap('devices/#', 'devices/+/secret') // true
 * filtersOverlap('devices/a/#', 'devices/b/#') // false
 */
export function filtersOverlap(a: string, b: string): boolean {
  const al = splitLevels(a);
  const bl = splitLevels(b);
  // [MQTT-4.7.2-1] a leading wildcard never matches a `$` topic.
  if ((isWild(al[0]) && isDollar(bl[0])) || (isWild(bl[0]) && isDollar(al[0]))) return false;
  const n = Math.max(al.length, bl.length);
  for (let i = 0; i < n; i++) {
    const x = al[i];
    const y = bl[i];
    if (x === '#' || y === '#') {
      // '#' also matches the parent level, but at the root there is no parent topic (a topic is non-empty).
      return true;
    }
    if (x === undefined || y === undefined) return false;
    if (x === '+' || y === '+') continue;
    if (x !== y) return false;
  }
  return true;
}
