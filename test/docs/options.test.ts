/**
 * Keeps docs/options.md honest. The option names each constructor accepts are read from the
 * code itself: every public constructor checks its options with `assertKnownOptions(owner,
 * options, known)`, so a spy on that function records the exact list the code enforces. Each
 * list must match the option names in the tables of its section of the doc, both ways: an
 * option added to the code without a row fails here, and so does a row for an option the code
 * does not accept. Every probe carries an unknown option, so construction stops at the
 * check, before any connection is made (lock.run needs one PairedLock on a real Redis).
 */
import { readFileSync } from 'node:fs';
import type { WorkerOptions } from 'bullmq';
import { afterAll, describe, expect, it, vi } from 'vitest';
import {
  PairedLock,
  PairedProcessor,
  PairedQueue,
  type PairedQueueOptions,
  type PairedWorkerOptions,
} from '../../src/index.js';
import { useRedis } from '../support/file-redis.js';

const redis = useRedis();

const checked = vi.hoisted(() => [] as { owner: string; options: object; known: string[] }[]);

vi.mock('../../src/validate.js', async (importOriginal) => {
  const original = await importOriginal<typeof import('../../src/validate.js')>();
  return {
    ...original,
    assertKnownOptions(owner: string, options: object, known: readonly string[]): void {
      checked.push({ owner, options, known: [...known] });
      original.assertKnownOptions(owner, options, known);
    },
  };
});

const DOC = new URL('../../docs/options.md', import.meta.url);
const PROBE = 'notAnOption';

interface Row {
  name: string;
  /** type, default, accepted values, what it does */
  cells: string[];
}

/** The option rows of the tables in each `## ` section, keyed by the section's first word. */
function documentedRows(markdown: string): Map<string, Row[]> {
  const sections = new Map<string, Row[]>();
  let rows: Row[] | undefined;
  for (const line of markdown.split('\n')) {
    const heading = /^## (.+)$/.exec(line);
    if (heading) {
      const key = (heading[1] as string).replaceAll('`', '').split(/[\s(]/)[0] as string;
      rows = [];
      sections.set(key, rows);
      continue;
    }
    const row = /^\|\s*`([^`]+)`\s*\|(.*)\|\s*$/.exec(line);
    if (row && rows) {
      const cells = (row[2] as string).split(/(?<!\\)\|/).map((cell) => cell.trim());
      rows.push({ name: row[1] as string, cells });
    }
  }
  return sections;
}

/** Runs `construct` on `probe` and returns the option names the code checked `probe` against. */
function acceptedOptions(probe: object, construct: () => unknown): string[] {
  expect(construct).toThrow(new RegExp(`unknown option "${PROBE}"`));
  const call = checked.find((c) => c.options === probe);
  if (call === undefined) {
    throw new Error(
      'no assertKnownOptions call saw the probe: the constructor no longer checks its option names there, so this test cannot read them',
    );
  }
  expect(call.known.length).toBeGreaterThan(0);
  return call.known;
}

function expectSameNames(section: string, documented: string[] | undefined, accepted: string[]) {
  expect(documented, `docs/options.md has no "## ${section}" section`).toBeDefined();
  const doc = documented ?? [];
  const undocumented = accepted.filter((name) => !doc.includes(name));
  const unknown = doc.filter((name) => !accepted.includes(name));
  const twice = doc.filter((name, i) => doc.indexOf(name) !== i);
  expect(
    { undocumented, unknown, twice },
    `docs/options.md, section ${section}: "undocumented" options need a row, "unknown" rows name options the code does not accept`,
  ).toEqual({ undocumented: [], unknown: [], twice: [] });
}

const sections = documentedRows(readFileSync(DOC, 'utf8'));
const names = (section: string): string[] | undefined =>
  sections.get(section)?.map((row) => row.name);
const locks: PairedLock[] = [];

afterAll(async () => {
  for (const lock of locks) await lock.close();
});

describe('docs/options.md', () => {
  it('gives every option a type, a default, its accepted values and what it does', () => {
    const rows = [...sections.values()].flat();
    expect(rows.length).toBeGreaterThan(30);
    for (const { name, cells } of rows) {
      expect(cells, `the row for "${name}" needs exactly four more cells`).toHaveLength(4);
      expect(
        cells.filter((cell) => cell === ''),
        `empty cells in the row for "${name}"`,
      ).toEqual([]);
    }
  });

  it('documents exactly the options PairedQueue accepts, with those of each twin', () => {
    const probe = { [PROBE]: true } as unknown as PairedQueueOptions;
    const own = acceptedOptions(probe, () => new PairedQueue('docs', probe));
    const twin = { connection: {}, [PROBE]: true };
    const twins = { twins: { a: twin, b: { connection: {} } } } as unknown as PairedQueueOptions;
    const perTwin = acceptedOptions(twin, () => new PairedQueue('docs', twins));
    expectSameNames('PairedQueue', names('PairedQueue'), [
      ...own,
      ...perTwin.map((name) => `twins.<twin>.${name}`),
    ]);
  });

  it('documents exactly the options PairedProcessor accepts (and PairedWorker as `paired`)', () => {
    const probe = { [PROBE]: true } as never;
    const accepted = acceptedOptions(probe, () => new PairedProcessor(async () => null, probe));
    expectSameNames('PairedProcessor', names('PairedProcessor'), accepted);
  });

  it("documents PairedWorker's own options next to BullMQ's", () => {
    // The compiler keeps this list whole: a key added to PairedWorkerOptions beyond BullMQ's
    // WorkerOptions is missing here, and `npm run typecheck` fails until it is added.
    const own: Record<Exclude<keyof PairedWorkerOptions, keyof WorkerOptions>, true> = {
      paired: true,
    };
    expectSameNames('PairedWorker', names('PairedWorker'), Object.keys(own));
  });

  it('documents exactly the options PairedLock and lock.run accept', () => {
    const probe = { member: 'docs', [PROBE]: true } as never;
    // A real client: lock.run needs a PairedLock that was built.
    const client = redis().connect();
    const accepted = acceptedOptions(probe, () => new PairedLock(client, probe));
    expectSameNames('PairedLock', names('PairedLock'), accepted);

    const lock = new PairedLock(client, { member: 'docs' });
    locks.push(lock);
    const runProbe = { [PROBE]: true } as never;
    const run = acceptedOptions(runProbe, () => lock.run('docs', () => null, runProbe));
    expectSameNames('lock.run', names('lock.run'), run);
  });
});
