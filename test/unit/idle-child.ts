/** A child for child.test.ts: says `ready`, then waits to be killed. */
import { say } from '../fixtures/io.js';

say({ event: 'ready', pid: process.pid });
setInterval(() => {}, 60_000);
