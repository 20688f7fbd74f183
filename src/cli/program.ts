import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { PairedError } from '../errors.js';
import { CliError, EXIT, EXIT_CODES_HELP, type ExitCode } from './exit-codes.js';
import { formatInspect, formatStats } from './format.js';
import { foundNothing, inspectJob } from './inspect.js';
import { RedisPool } from './redis.js';
import { collectStats } from './stats.js';
import { type RawOptions, resolveTarget, type Target } from './target.js';

const EXAMPLES = `
Examples:
  # two queue names on one Redis (PairedProcessor group "push")
  bullmq-paired inspect --redis redis://localhost:6379 --queue push-a --queue push-b --group push n-123
  # one queue name on two Redis servers, records in a third
  bullmq-paired inspect --redis redis://eu:6379 --twin-redis redis://us:6379 --lock-redis redis://lock:6379 --queue push n-123
  bullmq-paired stats --redis redis://localhost:6379 --queue push-a --queue push-b --group push --json
  # three regions, records on a Redis Cluster
  bullmq-paired stats --redis redis://eu:6379 --twin-redis redis://us:6379 --twin-redis redis://ap:6379 --lock-redis redis+cluster://lock-1:6379,lock-2:6379 --queue push`;

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a whole number ≥ 1');
  return n;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** The options every command takes: where the twin queues and the lock store are. */
function withTargetOptions(command: Command): Command {
  return command
    .addOption(
      new Option(
        '--redis <url>',
        'queue Redis, and the lock store unless --lock-redis (a Cluster: redis+cluster://host:port[,host:port])',
      )
        .env('REDIS_URL')
        .makeOptionMandatory(),
    )
    .option(
      '--queue <name>',
      'twin queue name; repeat for more twins (on one Redis, or one per server)',
      collect,
    )
    .option('--twin-queue <name>', 'the other twin queue name (same as a second --queue)')
    .option(
      '--twin-redis <url>',
      "another twin's Redis, or postgres://… for a twin on BullMQ's PostgreSQL backend; repeat for more (queue names: one --queue for all, or one per server)",
      collect,
    )
    .option('--lock-redis <url>', 'Redis holding the pair records (default: --redis)')
    .option('--prefix <prefix>', 'BullMQ key prefix', 'bull')
    .option('--twin-prefix <prefix>', "the other twins' BullMQ prefix (default: --prefix)")
    .option('--lock-prefix <prefix>', 'PairedProcessor/PairedLock prefix option', 'paired')
    .option(
      '--group <name>',
      'PairedProcessor group option (default: the queue name, when the twins share one)',
    )
    .option(
      '--hash <key>',
      'records kept as fields of this hash (PairedLock run(id, fn, { hash }))',
    )
    .option('--timeout <ms>', 'connect and command timeout', positiveInteger, 5_000)
    .option('--json', 'print JSON for scripts');
}

/**
 * Runs `fn` with the connections its target needs and closes them whatever happens.
 * Returns the exit code; errors are printed as one line naming what to fix.
 */
async function run(
  options: RawOptions,
  fn: (pool: RedisPool, target: Target) => Promise<ExitCode>,
): Promise<ExitCode> {
  const target = resolveTarget(options);
  const pool = new RedisPool(target.timeoutMs);
  try {
    return await fn(pool, target);
  } finally {
    await pool.close();
  }
}

function print(json: boolean | undefined, report: unknown, human: () => string): void {
  process.stdout.write(`${json ? JSON.stringify(report, null, 2) : human()}\n`);
}

export function buildProgram(setExitCode: (code: ExitCode) => void): Command {
  const program = new Command('bullmq-paired')
    .description('Read-only views of bullmq-paired pair records and their twin BullMQ queues.')
    .exitOverride()
    .showHelpAfterError('(add --help for usage)')
    .addHelpText('after', `${EXAMPLES}\n${EXIT_CODES_HELP}`);

  withTargetOptions(
    program
      .command('inspect')
      .description("a job's pair record and each twin copy's BullMQ state")
      .argument('<jobId>', 'the job id both twins share')
      .addHelpText('after', EXIT_CODES_HELP),
  ).action(async (jobId: string, options: RawOptions) => {
    const code = await run(options, async (pool, target) => {
      const report = await inspectJob(pool, target, jobId);
      print(options.json, report, () => formatInspect(report));
      return foundNothing(report) ? EXIT.notFound : EXIT.ok;
    });
    setExitCode(code);
  });

  withTargetOptions(
    program
      .command('stats')
      .description('pair records by state (SCAN of the lock store) and twin queue job counts')
      .addHelpText('after', EXIT_CODES_HELP),
  )
    .option('--count <n>', 'SCAN/HSCAN COUNT batch size', positiveInteger, 1_000)
    .action(async (options: RawOptions & { count: number }) => {
      const code = await run(options, async (pool, target) => {
        const report = await collectStats(pool, target, options.count);
        print(options.json, report, () => formatStats(report));
        return EXIT.ok;
      });
      setExitCode(code);
    });
  return program;
}

/** Parses `argv` (as process.argv), runs the command; resolves with the exit code. */
export async function runCli(argv: readonly string[]): Promise<ExitCode> {
  let exitCode: ExitCode = EXIT.ok;
  const program = buildProgram((code) => {
    exitCode = code;
  });
  try {
    await program.parseAsync([...argv]);
    return exitCode;
  } catch (err) {
    // Commander has printed its message (and the help hint) already.
    if (err instanceof CommanderError) return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    if (err instanceof CliError) {
      process.stderr.write(`bullmq-paired: ${err.message}\n`);
      return err.exitCode;
    }
    const detail =
      err instanceof PairedError
        ? `${err.code}: ${err.message}`
        : err instanceof Error
          ? err.message
          : String(err);
    process.stderr.write(`bullmq-paired: ${detail}\n`);
    return EXIT.failed;
  }
}
