/**
 * Every ```ts block of README.md and docs/*.md must compile under `tsc --strict`, as a reader
 * who pastes it into a strict project would compile it. One tsc run checks them all: each
 * block becomes a module in a temporary folder inside the repository (so 'bullmq', 'ioredis'
 * and the rest resolve from node_modules), with 'bullmq-paired' mapped to src/ by `paths`.
 *
 * What a block may take for granted:
 * - the reader's own values (their processor, their Redis clients, their push gateway), which
 *   READER_VALUES below declares with the types the library expects;
 * - a block that imports nothing from 'bullmq-paired' is a fragment: it gets the usual
 *   imports (STANDARD_IMPORTS) of every name it does not import itself. A block that does
 *   import from 'bullmq-paired' is meant to be copied whole and gets no imports added.
 * Added lines go below the block, so tsc's line numbers point into the document.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { basename, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

const DOCUMENTS = [
  'README.md',
  ...readdirSync(join(ROOT, 'docs'))
    .filter((name) => name.endsWith('.md'))
    .sort()
    .map((name) => `docs/${name}`),
];

const STANDARD_IMPORTS: Record<string, string[]> = {
  bullmq: ['Queue', 'Worker', 'type Job'],
  ioredis: ['Redis'],
  'bullmq-paired': ['PairedLock', 'PairedProcessor', 'PairedQueue', 'PairedWorker'],
};

const READER_VALUES = `// The reader's own values, which the documents' snippets take as given.
import type { Job } from 'bullmq';
import type { PairedProcessor, RunContext } from 'bullmq-paired';
import type { Redis } from 'ioredis';

declare global {
  interface PushNotification {
    token: string;
    text: string;
  }
  /** Redis clients: one per region's queues, the lock store, or all in one. */
  const connection: Redis;
  const redisEU: Redis;
  const redisUS: Redis;
  const redisAP: Redis;
  const redisLock: Redis;
  const queueRedis: Redis;
  const lockRedis: Redis;
  const lockConnection: Redis;
  /** BullMQ processors (PairedProcessor also passes signal and pair; these ignore them). */
  const sendPush: (job: Job<PushNotification>) => Promise<{ delivered: boolean }>;
  const processor: (job: Job) => Promise<unknown>;
  /** A PairedLock task. */
  const sendIt: (context: RunContext) => Promise<{ delivered: boolean }>;
  /** A push gateway client that refuses stale fences. */
  const gateway: {
    send(
      notification: PushNotification,
      options: { fence: number; signal: AbortSignal },
    ): Promise<{ delivered: boolean }>;
  };
  const notification: PushNotification;
  const data: PushNotification;
  const paired: PairedProcessor;
  function report(error: unknown): void;
}

export {};
`;

interface Snippet {
  /** e.g. README.md:63, the line of the block's first code line */
  where: string;
  document: string;
  firstLine: number;
  code: string;
}

/** The ```ts blocks of a Markdown document (fences may be indented, e.g. in a list item). */
function tsBlocks(document: string, markdown: string): Snippet[] {
  const snippets: Snippet[] = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```ts\s*$/.exec(lines[i] as string);
    if (!open) continue;
    const indent = (open[1] as string).length;
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j] as string); j++) {
      body.push(
        (lines[j] as string).slice(
          Math.min(indent, /^\s*/.exec(lines[j] as string)?.[0].length ?? 0),
        ),
      );
    }
    if (j === lines.length)
      throw new Error(`${document}:${i + 1}: a \`\`\`ts block is never closed`);
    snippets.push({
      where: `${document}:${i + 2}`,
      document,
      firstLine: i + 2,
      code: body.join('\n'),
    });
    i = j;
  }
  return snippets;
}

/** Names a block imports itself, and whether it imports from 'bullmq-paired' (a whole block). */
function ownImports(code: string): { names: Set<string>; whole: boolean } {
  const names = new Set<string>();
  let whole = false;
  for (const statement of code.matchAll(/^import\s+([\s\S]*?)\s+from\s+['"]([^'"]+)['"]/gm)) {
    const clause = statement[1] as string;
    if (statement[2] === 'bullmq-paired') whole = true;
    for (const part of clause.replace(/^type\s+/, '').split(/[{},]/)) {
      const name = part
        .trim()
        .replace(/^type\s+/, '')
        .replace(/^\*\s+as\s+/, '')
        .split(/\s+as\s+/)
        .pop();
      if (name) names.add(name);
    }
  }
  return { names, whole };
}

/** The block as a module: the code itself, then the imports a fragment needs. */
function moduleSource({ code }: Snippet): string {
  const { names, whole } = ownImports(code);
  const added = whole
    ? []
    : Object.entries(STANDARD_IMPORTS).flatMap(([from, wanted]) => {
        const missing = wanted.filter((name) => !names.has(name.replace(/^type\s+/, '')));
        return missing.length > 0 ? [`import { ${missing.join(', ')} } from '${from}';`] : [];
      });
  return [
    code,
    '',
    '// added by test/docs/readme-snippets.test.ts',
    ...added,
    'export {};',
    '',
  ].join('\n');
}

interface Diagnostic {
  where: string;
  message: string;
}

/** Type-checks every snippet in one tsc run; its diagnostics, located in the documents. */
function typeCheck(snippets: Snippet[]): { diagnostics: Diagnostic[]; output: string } {
  // Inside the repository so modules resolve from its node_modules; removed afterwards.
  const dir = mkdtempSync(join(ROOT, '.snippets-'));
  try {
    const files = new Map<string, Snippet>();
    snippets.forEach((snippet, index) => {
      const file = `${String(index).padStart(2, '0')}-${basename(snippet.document, '.md')}-L${snippet.firstLine}.ts`;
      writeFileSync(join(dir, file), moduleSource(snippet));
      files.set(file, snippet);
    });
    writeFileSync(join(dir, 'reader-values.d.ts'), READER_VALUES);
    const toRoot = relative(dir, ROOT);
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        extends: `${toRoot}/tsconfig.json`,
        compilerOptions: {
          strict: true,
          noEmit: true,
          paths: {
            'bullmq-paired': [`${toRoot}/src/index.ts`],
            'bullmq-paired/prometheus': [`${toRoot}/src/prometheus.ts`],
          },
        },
        include: [],
        files: ['reader-values.d.ts', ...files.keys()],
      }),
    );
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const run = spawnSync(
      process.execPath,
      [tsc, '--noEmit', '--strict', '--pretty', 'false', '-p', join(dir, 'tsconfig.json')],
      { cwd: ROOT, encoding: 'utf8' },
    );
    if (run.error) throw run.error;
    const output = `${run.stdout}${run.stderr}`.trim();
    const diagnostics: Diagnostic[] = [];
    // Errors inside src/ are `npm run typecheck`'s to report; here only the snippets' count.
    let current: Diagnostic | undefined;
    for (const line of output.split('\n')) {
      const located = /^(.*?)\((\d+),(\d+)\): (.*)$/.exec(line);
      if (located) {
        const file = located[1] as string;
        const snippet = files.get(basename(file));
        current = snippet
          ? {
              where: `${snippet.document}:${snippet.firstLine + Number(located[2]) - 1}`,
              message: located[4] as string,
            }
          : basename(file) === 'reader-values.d.ts'
            ? { where: `${file}:${located[2]}`, message: located[4] as string }
            : undefined;
        if (current) diagnostics.push(current);
      } else if (/^\s/.test(line)) {
        // tsc continues a message on indented lines.
        if (current) current.message += `\n${line}`;
      } else if (line.trim() !== '') {
        current = { where: 'tsc', message: line };
        diagnostics.push(current);
      }
    }
    if (run.status !== 0 && diagnostics.length === 0 && !/\): error /.test(output)) {
      diagnostics.push({ where: 'tsc', message: `exited with ${run.status}: ${output}` });
    }
    return { diagnostics, output };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('TypeScript in the documents', () => {
  const snippets = DOCUMENTS.flatMap((document) =>
    tsBlocks(document, readFileSync(join(ROOT, document), 'utf8')),
  );

  it('finds the README blocks (so an empty check cannot pass)', () => {
    expect(snippets.filter((s) => s.document === 'README.md').length).toBeGreaterThanOrEqual(3);
  });

  it('compiles every ```ts block of README.md and docs/*.md under tsc --strict', () => {
    const { diagnostics } = typeCheck(snippets);
    expect(
      diagnostics.map(({ where, message }) => `${where}: ${message}`),
      `checked ${snippets.length} blocks: ${snippets.map((s) => s.where).join(', ')}`,
    ).toEqual([]);
  });
});
