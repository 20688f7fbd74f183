#!/usr/bin/env node
// Checks the published shape: only dist, README, LICENSE, CHANGELOG (and package.json) ship,
// both the ESM and the CommonJS entry load and export the public API, and the CLI starts.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const [report] = JSON.parse(
  execFileSync(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], { encoding: 'utf8' }),
);
const allowed = (path) =>
  path.startsWith('dist/') ||
  ['README.md', 'LICENSE', 'CHANGELOG.md', 'package.json'].includes(path);
const unexpected = report.files.map((f) => f.path).filter((path) => !allowed(path));
const required = [
  'README.md',
  'LICENSE',
  'CHANGELOG.md',
  'dist/esm/index.js',
  'dist/cjs/index.js',
  'dist/esm/index.d.ts',
  'dist/cjs/index.d.ts',
  'dist/esm/cli/main.js',
];
const missing = required.filter((path) => !report.files.some((f) => f.path === path));
if (unexpected.length > 0 || missing.length > 0) {
  console.error(
    `package contents wrong:\n  unexpected: ${unexpected.join(', ') || '-'}\n  missing: ${missing.join(', ') || '-'}`,
  );
  process.exit(1);
}

const esm = await import('bullmq-paired');
const cjs = createRequire(import.meta.url)('bullmq-paired');
for (const [kind, api] of [
  ['esm', esm],
  ['cjs', cjs],
]) {
  for (const name of [
    'PairedLock',
    'PairedError',
    'LeaseLostError',
    'StaleFenceError',
    'PeerFailedError',
  ]) {
    if (typeof api[name] !== 'function') {
      console.error(`${kind} build does not export ${name}`);
      process.exit(1);
    }
  }
}
// prom-client is an optional peer: the main entry must not load it, `/prometheus` must.
const require = createRequire(import.meta.url);
const promLoaded = () => Object.keys(require.cache).some((path) => path.includes('/prom-client/'));
if (promLoaded()) {
  console.error(
    'the CommonJS main entry loaded prom-client: keep it behind bullmq-paired/prometheus',
  );
  process.exit(1);
}
const probe = spawnSync(
  process.execPath,
  [
    '--input-type=module',
    '-e',
    // A resolve hook that refuses prom-client: importing the main entry must still work.
    `import { register } from 'node:module';
     register('data:text/javascript,' + encodeURIComponent(
       'export async function resolve(s, c, next) { if (s === "prom-client") throw new Error("prom-client loaded"); return next(s, c); }'));
     await import('bullmq-paired');`,
  ],
  { cwd: new URL('..', import.meta.url), encoding: 'utf8' },
);
if (probe.status !== 0) {
  console.error(`the ESM main entry needs prom-client:\n${probe.stderr}`);
  process.exit(1);
}
for (const [kind, api] of [
  ['esm', await import('bullmq-paired/prometheus')],
  ['cjs', require('bullmq-paired/prometheus')],
]) {
  if (typeof api.PairedMetrics !== 'function') {
    console.error(`${kind} bullmq-paired/prometheus does not export PairedMetrics`);
    process.exit(1);
  }
}

// The `bin` must start under plain node, from the built files alone (no tsx, no dev tools).
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const bin = pkg.bin?.['bullmq-paired'];
if (bin !== './dist/esm/cli/main.js') {
  console.error(`package.json bin["bullmq-paired"] is ${bin}, expected ./dist/esm/cli/main.js`);
  process.exit(1);
}
if (
  !readFileSync(new URL(`../${bin}`, import.meta.url), 'utf8').startsWith('#!/usr/bin/env node')
) {
  console.error(`${bin} does not start with #!/usr/bin/env node`);
  process.exit(1);
}
const help = spawnSync(process.execPath, [bin, '--help'], {
  cwd: new URL('..', import.meta.url),
  encoding: 'utf8',
});
if (help.status !== 0 || !help.stdout.includes('Exit codes:')) {
  console.error(`node ${bin} --help exited ${help.status}:\n${help.stdout}${help.stderr}`);
  process.exit(1);
}

console.log(
  `package ok: ${report.files.length} files, ${(report.unpackedSize / 1024).toFixed(1)} KiB unpacked`,
);
