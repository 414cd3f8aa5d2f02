/**
 * Reconnect delays: exponential backoff with full jitter (AWS architecture blog,
 * "Exponential Backoff And Jitter"): the n-th retry waits a uniformly random time
 * in [0, min(maxDelayMs, minDelayMs * 2^n)]. Full jitter spreads a crowd of clients
 * that lost the same broker, so a restarted broker is not hit by all of them at once.
 */

/**
 * Bounds of the reconnect delay.
 * @example
 * await connect(url, { reconnect: { minDelayMs: 100, maxDelayMs: 5000 } satisfies BackoffOptions });
 */
export interface BackoffOptions {
  /** Upper bound of the first delay. */
  minDelayMs?: number;
  /** Upper bound of every delay. */
  maxDelayMs?: number;
}

/**
 * Default `minDelayMs`. 500 ms: a broker restart is usually back within a second, so the first retry comes soon.
 * @example
 * await connect(url, { reconnect: { minDelayMs: DEFAULT_MIN_DELAY_MS, maxDelayMs: 5000 } });
 */
export const DEFAULT_MIN_DELAY_MS = 500;
/**
 * Default `maxDelayMs`. 30 s: long enough to spare a struggling broker, short enough for a dashboard to recover unattended.
 * @example
 * await connect(url, { reconnect: { maxDelayMs: DEFAULT_MAX_DELAY_MS * 4 } }); // a battery-powered device
 */
export const DEFAULT_MAX_DELAY_MS = 30_000;

/**
 * The delay before retry number `attempt` (0-based), with full jitter.
 * `random` returns a number in [0, 1), like `Math.random` (injectable for tests).
 * @example
 * backoffDelay(0, { minDelayMs: 500, maxDelayMs: 30_000 }); // somewhere in [0, 500]
 * backoffDelay(3, { minDelayMs: 500, maxDelayMs: 30_000 }, () => 0.5); // 2000
 */
export function backoffDelay(attempt: number, options: BackoffOptions = {}, random: () => number = Math.random): number {
  const min = Math.max(0, options.minDelayMs ?? DEFAULT_MIN_DELAY_MS);
  const max = Math.max(min, options.maxDelayMs ?? DEFAULT_MAX_DELAY_MS);
  // 2^attempt overflows to Infinity after ~1000 attempts; min() keeps the ceiling finite.
  const ceiling = Math.min(max, min * 2 ** Math.min(attempt, 52));
  return Math.floor(random() * ceiling);
}
