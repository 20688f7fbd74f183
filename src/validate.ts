/**
 * Option validation shared by every public constructor: each problem is a TypeError that
 * names the option and the value received, thrown once at construction.
 */
/** A received value as an error message shows it: never "[object Object]" or "a object". */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || value == null) {
    return String(value);
  }
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  const name = (value as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof name === 'string' && name !== '' && name !== 'Object'
    ? `an object (${name})`
    : 'an object';
}

/**
 * Job data must survive JSON (BullMQ stores it so): refused before anything is written, so
 * twins on two Redis fail alike with the reason instead of a partial add.
 */
export function assertJsonData(owner: string, data: unknown): void {
  try {
    JSON.stringify(data);
  } catch (err) {
    throw new TypeError(
      `${owner}: job data cannot be stored as JSON (${err instanceof Error ? err.message : String(err)}); pass plain JSON data (no cycles, no BigInt)`,
    );
  }
}

export function optionError(
  owner: string,
  option: string,
  value: unknown,
  expected: string,
): TypeError {
  return new TypeError(`${owner}: option "${option}" must be ${expected}, received ${show(value)}`);
}

export function assertKnownOptions(owner: string, options: object, known: readonly string[]): void {
  for (const [name, value] of Object.entries(options)) {
    if (!known.includes(name)) {
      throw new TypeError(
        `${owner}: unknown option "${name}"; known options are ${known.map((k) => `"${k}"`).join(', ')}`,
      );
    }
    // null is not "the default": a null from a config file is more likely a mistake.
    if (value === null) {
      throw new TypeError(
        `${owner}: option "${name}" is null; leave it out (or undefined) for its default`,
      );
    }
  }
}

export function integerOption(
  owner: string,
  option: string,
  value: unknown,
  { min, max = Number.MAX_SAFE_INTEGER }: { min: number; max?: number },
): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `between ${min} and ${max}`;
    throw optionError(owner, option, value, `an integer ${range}`);
  }
  return value;
}

export function stringOption(owner: string, option: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw optionError(owner, option, value, 'a non-empty string');
  }
  return value;
}

export function enumOption<T extends string>(
  owner: string,
  option: string,
  value: unknown,
  allowed: readonly T[],
): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    throw optionError(owner, option, value, `one of ${allowed.map((a) => `"${a}"`).join(', ')}`);
  }
  return value as T;
}

export function booleanOption(owner: string, option: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw optionError(owner, option, value, 'true or false');
  return value;
}

/** The `twins` option of PairedQueue and PairedQueueEvents: exactly two, by name. */
/**
 * The twins of `owner`'s options: two, or (`upTo` more than 2: PairedQueue, PairedQueueEvents)
 * as many as `upTo`, each region its own twin.
 */
export function twinEntries<T>(
  owner: string,
  twins: Record<string, T> | undefined,
  upTo = 2,
): [string, T][] {
  const entries = Object.entries(twins ?? {});
  if (entries.length < 2 || entries.length > upTo) {
    const expected =
      upTo === 2
        ? 'an object with exactly two twins, e.g. { eu: {...}, us: {...} }'
        : 'an object with two or more twins, e.g. { eu: {...}, us: {...}, ap: {...} }';
    throw optionError(owner, 'twins', twins, expected);
  }
  return entries;
}
