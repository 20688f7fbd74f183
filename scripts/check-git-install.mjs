#!/usr/bin/env node
// Installs this repository's HEAD commit as a git dependency of an empty app
// (`npm install git+file://…`, as a user would with a git URL before a release) and imports
// it there, ESM and CommonJS. npm builds a git dependency with its `prepare` script, so this
// fails if `prepare` stops building dist/, or if a peer the main entry needs is optional.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..');
const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
const app = mkdtempSync(join(tmpdir(), 'bullmq-paired-git-install-'));
const npm = (args) =>
  execFileSync('npm', args, { cwd: app, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
try {
  writeFileSync(join(app, 'package.json'), '{ "name": "empty-app", "private": true }\n');
  npm(['install', '--no-audit', '--no-fund', `git+file://${root}#${head}`]);
  const probe = (code, type) =>
    execFileSync(process.execPath, [`--input-type=${type}`, '-e', code], {
      cwd: app,
      encoding: 'utf8',
    }).trim();
  const esm = probe(
    "const m = await import('bullmq-paired'); console.log(typeof m.PairedQueue, typeof m.PairedLock);",
    'module',
  );
  const cjs = probe(
    "const m = require('bullmq-paired'); console.log(typeof m.PairedQueue, typeof m.PairedLock);",
    'commonjs',
  );
  for (const [kind, out] of [
    ['import', esm],
    ['require', cjs],
  ]) {
    if (out !== 'function function') {
      console.error(
        `git install of ${head}: ${kind} gave "${out}", expected PairedQueue and PairedLock`,
      );
      process.exit(1);
    }
  }
  console.log(`git install of ${head.slice(0, 7)} into an empty app: import and require work`);
} catch (err) {
  console.error(`git install of ${head} into an empty app failed:\n${err.stderr ?? err.message}`);
  process.exit(1);
} finally {
  rmSync(app, { recursive: true, force: true });
}
