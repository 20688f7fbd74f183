/**
 * A client's first call of each script is an EVAL, which loads it: an EVALSHA answered
 * NOSCRIPT first would cost one more round trip, and that first call may be the one a takeover
 * waits on (a shadow's first look at its dead executor's liveness: +40 ms over a 20 ms link,
 * bench geo_takeover_kill). A flushed cache (a restart) is still served, by the fallback.
 */
import { describe, expect, it } from 'vitest';
import { PairedLock } from '../../src/index.js';
import { deferred, nextEvent } from '../support/deferred.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

const redis = useRedis();

/** eu runs `id` while us shadows it (acquire, the owners watch, inspect, complete). */
async function pairedRun(eu: PairedLock, us: PairedLock, id: string) {
  const started = deferred();
  const release = deferred();
  const first = eu.run(id, async () => {
    started.resolve();
    await release.promise;
    return 'by eu';
  });
  await started.promise;
  const shadowing = nextEvent(us, 'shadowing');
  const second = us.run(id, () => 'by us');
  await shadowing; // us watches eu meanwhile
  release.resolve();
  return Promise.all([first, second]);
}

describe('loading the scripts', () => {
  it('never asks for a script by its hash before the client sent it whole', async () => {
    const admin = redis().connect();
    await admin.script('FLUSH');
    await admin.config('RESETSTAT');
    const prefix = uniquePrefix('load');
    const eu = new PairedLock(redis().connect(), { member: 'eu', prefix });
    const us = new PairedLock(redis().connect(), { member: 'us', prefix });
    try {
      const [first, second] = await pairedRun(eu, us, 'task-1');
      expect(first).toMatchObject({ role: 'executor', result: 'by eu' });
      expect(second).toMatchObject({ role: 'shadow', result: 'by eu' });
      // Before: every client's first EVALSHA of each script was answered NOSCRIPT.
      expect(await admin.info('errorstats')).not.toContain('errorstat_NOSCRIPT');
      // A flushed cache (as after a restart) is served by the EVAL fallback.
      await admin.script('FLUSH');
      const [again] = await pairedRun(eu, us, 'task-2');
      expect(again).toMatchObject({ role: 'executor', result: 'by eu' });
    } finally {
      await Promise.all([eu.close(), us.close()]);
    }
  });
});
