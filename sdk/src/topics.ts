/**
 * Typed topics, entirely at the type level (this file emits no code).
 *
 * An application describes its topics as a map from filters to payload types:
 *   interface Topics { 'devices/+/cpu/temperature': number; 'devices/+/status': 'online' | 'offline' }
 * and passes it to `connect<Topics>()`. Then:
 * - `subscribe(filter, handler)`: a filter that is a key of the map gives the handler
 *   that key's payload type; any other filter gives `unknown` (the SDK cannot know what
 *   arbitrary topics carry, and guessing a union would be unsound);
 * - `publish(topic, value)`: the topic is matched against every key with MQTT's rules
 *   (`+` one level, `#` the rest, `$` topics not matched by leading wildcards) and `value`
 *   must fit every matching key's type (a subscriber of each of them receives it);
 *   a topic no key matches, or a non-literal `string`, accepts `unknown`.
 */

/**
 * A map from topic filters to the payload type published on matching topics.
 * @example
 * interface Topics { 'devices/+/cpu/temperature': number; 'devices/+/status': 'online' | 'offline' }
 * const client = await connect<Topics>(url);
 */
export type TopicMap = object;

/**
 * Splits a topic or filter into its levels.
 * @example
 * type L = SplitLevels<'a/b/c'>; // ['a', 'b', 'c']
 */
export type SplitLevels<S extends string> = S extends `${infer Head}/${infer Rest}` ? [Head, ...SplitLevels<Rest>] : [S];

type MatchLevels<F extends string[], T extends string[]> = F extends ['#']
  ? true // '#' also matches the parent level: 'a/#' matches 'a'
  : F extends [infer FH extends string, ...infer FR extends string[]]
    ? T extends [infer TH extends string, ...infer TR extends string[]]
      ? FH extends '+'
        ? MatchLevels<FR, TR>
        : [FH] extends [TH]
          ? [TH] extends [FH]
            ? MatchLevels<FR, TR>
            : false
          : false
      : false
    : T extends []
      ? true
      : false;

/**
 * Whether filter `F` matches topic `T` (both string literals), by MQTT's rules.
 * @example
 * type Yes = FilterMatches<'devices/+/cpu/#', 'devices/pi/cpu/temp'>; // true
 * type No = FilterMatches<'#', '$SYS/uptime'>; // false
 */
export type FilterMatches<F extends string, T extends string> = T extends `$${string}`
  ? F extends `+${string}` | `#${string}`
    ? false
    : MatchLevels<SplitLevels<F>, SplitLevels<T>>
  : MatchLevels<SplitLevels<F>, SplitLevels<T>>;

/**
 * Keys of `Topics` whose filter matches topic `T`.
 * @example
 * type K = MatchingFilters<{ 'a/+': number; 'a/#': unknown; 'b': string }, 'a/x'>; // 'a/+' | 'a/#'
 */
export type MatchingFilters<Topics extends TopicMap, T extends string> = {
  [K in keyof Topics & string]: FilterMatches<K, T> extends true ? K : never;
}[keyof Topics & string];

type IntersectPayloads<Topics extends TopicMap, K extends keyof Topics> = {
  [P in K]: (value: Topics[P]) => void;
}[K] extends (value: infer V) => void
  ? V
  : never;

/**
 * The type a value published on topic `T` must have.
 * @example
 * type V = PublishValue<{ 'devices/+/cpu/temperature': number }, 'devices/pi/cpu/temperature'>; // number
 */
export type PublishValue<Topics extends TopicMap, T extends string> = string extends T
  ? unknown
  : [MatchingFilters<Topics, T>] extends [never]
    ? unknown
    : IntersectPayloads<Topics, MatchingFilters<Topics, T>>;

/**
 * The type of values delivered to a subscription on filter `F`.
 * @example
 * type V = FilterValue<{ 'devices/+/status': 'online' | 'offline' }, 'devices/+/status'>; // 'online' | 'offline'
 */
export type FilterValue<Topics extends TopicMap, F extends string> = F extends keyof Topics ? Topics[F] : unknown;

/**
 * The type of values delivered to a subscription on one or several filters.
 * @example
 * type V = FiltersValue<{ a: number; b: string }, 'a' | 'b'>; // number | string
 */
export type FiltersValue<Topics extends TopicMap, F extends string | readonly string[]> = F extends string
  ? FilterValue<Topics, F>
  : F extends readonly (infer E extends string)[]
    ? FilterValue<Topics, E>
    : unknown;

/**
 * The value type a built-in codec name forces, or `Fallback` for a codec that keeps the typed value.
 * @example
 * type B = CodecValue<'raw', number>; // Uint8Array
 */
export type CodecValue<C, Fallback> = C extends 'raw' ? Uint8Array : C extends 'text' ? string : Fallback;
