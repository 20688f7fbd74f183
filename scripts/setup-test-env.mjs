#!/usr/bin/env node
/**
 * `npm test` runs this first (the `pretest` script). The suite needs three programs besides
 * Node:
 *   - redis-server: every test file starts private servers on free ports; tests that kill,
 *     freeze or restart Redis, Sentinel and replica tests need the binary even when REDIS_URL
 *     is set;
 *   - openssl: the TLS test makes its own self-signed certificate;
 *   - chromium (Debian's; or CHROMIUM_PATH): the Bull Board test drives it through
 *     playwright-core, which downloads no browser;
 *   - PostgreSQL's server binaries (initdb, postgres; Debian's package `postgresql`): the
 *     tests of twins on BullMQ's PostgreSQL backend start private servers (never the system
 *     service).
 * All present: prints nothing. Missing, as root with apt-get: installs them (Debian package
 * names). Otherwise: one message naming the command to run, and exit code 1, so the suite
 * does not start only to fail on them.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync } from 'node:fs';

const onPath = (command) =>
  spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;

const executable = (path) => {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
};

/** Debian keeps initdb off PATH, under /usr/lib/postgresql/<version>/bin (test/support/postgres.ts). */
const hasPostgresServer = () => {
  const root = '/usr/lib/postgresql';
  const installed =
    existsSync(root) && readdirSync(root).some((v) => executable(`${root}/${v}/bin/initdb`));
  return installed || onPath('initdb');
};

/** The Debian packages still missing, in install order. */
function missingPackages() {
  const missing = [];
  if (!onPath('redis-server')) missing.push('redis-server');
  if (!onPath('openssl')) missing.push('openssl');
  // The same path the browser test launches (test/examples/bull-board.test.ts).
  if (!executable(process.env.CHROMIUM_PATH ?? '/usr/bin/chromium')) missing.push('chromium');
  if (!hasPostgresServer()) missing.push('postgresql');
  return missing;
}

const missing = missingPackages();
if (missing.length === 0) process.exit(0);

const install = `apt-get update && apt-get install -y --no-install-recommends ${missing.join(' ')}`;
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;

if (isRoot && onPath('apt-get')) {
  console.log(`npm test needs ${missing.join(', ')}; installing: ${install}`);
  const ran = spawnSync('sh', ['-c', install], {
    stdio: 'inherit',
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  const still = missingPackages();
  if (ran.status === 0 && still.length === 0) process.exit(0);
  console.error(
    `\nnpm test: apt-get exited with ${ran.status}; still missing: ${still.join(', ')}.`,
  );
  process.exit(1);
}

const notes = [];
if (missing.includes('chromium')) {
  notes.push('Another Chromium or Chrome: set CHROMIUM_PATH to its binary.');
}
if (missing.includes('redis-server')) {
  notes.push(
    'REDIS_URL does not replace redis-server: tests that kill, restart or replicate Redis always start their own.',
  );
}
console.error(
  `npm test needs ${missing.join(', ')}, missing on this machine. On Debian or Ubuntu, run:\n\n` +
    `  sudo sh -c '${install}'\n` +
    notes.map((note) => `\n${note}`).join('') +
    (notes.length > 0 ? '\n' : ''),
);
process.exit(1);
