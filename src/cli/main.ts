#!/usr/bin/env node
// `bullmq-paired inspect|stats`: see docs/cli.md. No top-level await: this file is also
// compiled to CommonJS.
import { runCli } from './program.js';

void runCli(process.argv).then((code) => {
  // Every connection has been quit by now, but ioredis can leave a 2 s socket-teardown
  // timer behind after a timed-out handshake: exit once the output is flushed, not then.
  process.stdout.write('', () => process.stderr.write('', () => process.exit(code)));
});
