/**
 * The agent's log: one plain line per event on stderr (journald adds the time and unit), filtered by level.
 * No dependency: the agent must stay small on a device that runs it for months.
 */
import type { LogLevel, Logger } from './types.js';

const RANK: Record<LogLevel, number> = { error: 0, warn: 1, info: 2, debug: 3 };

export const LOG_LEVELS: readonly LogLevel[] = ['error', 'warn', 'info', 'debug'];

/**
 * @example
 * const log = createLogger('info'); log.warn('exec gpio: exited with code 1');
 */
export function createLogger(level: LogLevel, write: (line: string) => void = (l) => process.stderr.write(l + '\n')): Logger {
  const max = RANK[level];
  const at = (l: LogLevel) => (msg: string) => {
    if (RANK[l] <= max) write(`${l} ${msg}`);
  };
  return { error: at('error'), warn: at('warn'), info: at('info'), debug: at('debug') };
}

