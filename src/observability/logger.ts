import { optionError } from '../validate.js';

/**
 * The logger a `PairedProcessor` writes its decisions to: the shape of pino's (and of
 * bunyan's and of a pino child): `logger.info({ jobId, twin }, 'message')`. Only ids and pair
 * facts are logged, never job data or results.
 */
export interface PairedLogger {
  debug(fields: object, message?: string): void;
  info(fields: object, message?: string): void;
  warn(fields: object, message?: string): void;
  error(fields: object, message?: string): void;
}

const LEVELS = ['debug', 'info', 'warn', 'error'] as const;

const noop = (): void => {};

/** The default: logs nothing. */
export const silentLogger: PairedLogger = Object.freeze({
  debug: noop,
  info: noop,
  warn: noop,
  error: noop,
});

export function loggerOption(owner: string, value: unknown): PairedLogger {
  if (value === undefined) return silentLogger;
  if (typeof value !== 'object' || value === null) {
    throw optionError(
      owner,
      'logger',
      value,
      'an object with debug, info, warn and error methods (e.g. a pino logger)',
    );
  }
  const missing = LEVELS.filter(
    (level) => typeof (value as Record<string, unknown>)[level] !== 'function',
  );
  if (missing.length > 0) {
    throw optionError(
      owner,
      'logger',
      value,
      `a logger with ${missing.join(', ')} method(s) (e.g. a pino logger)`,
    );
  }
  return value as PairedLogger;
}
