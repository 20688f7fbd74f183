/** The CLI's exit codes; `docs/cli.md` and `--help` list the same table. */
export const EXIT = {
  ok: 0,
  /** inspect: no pair record and no copy in any twin queue under that id. */
  notFound: 1,
  /** Bad command line: unknown option, missing argument, bad URL or number. */
  usage: 2,
  /** A Redis could not be reached in time, refused the connection or the credentials. */
  redisUnavailable: 3,
  /** Anything else: a record this library did not write, an unexpected Redis reply. */
  failed: 4,
} as const;

export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

export const EXIT_CODES_HELP = `
Exit codes:
  0  ok
  1  inspect: nothing found (no pair record and no copy in any twin queue)
  2  usage error (unknown option, missing argument, bad URL or number)
  3  a Redis was unreachable, timed out, or refused the connection or credentials
  4  any other failure (a corrupt record, an unexpected Redis error)`;

/** An error the CLI reports as one line on stderr, exiting with `exitCode`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export function usageError(message: string): CliError {
  return new CliError(message, EXIT.usage);
}
