/**
 * Structured logs: pino, JSON lines on stdout. Tokens and payloads are never
 * logged; connection context is the remote address and a connection id.
 */
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level: string): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
