/** `npm run chaos [-- --jobs N]`: the full soak (20 000 jobs by default) on a private Redis. */
import { Command } from 'commander';
import { startCluster } from '../support/cluster.js';
import { startRedis } from '../support/redis.js';
import { runSoak } from './soak.js';

const {
  jobs,
  executor,
  twins,
  cluster: onCluster,
} = new Command()
  .option('--jobs <n>', 'jobs to run', '20000')
  .option('--executor <choice>', "PairedQueue's executor: first or balanced", 'first')
  .option('--twins <names>', 'comma-separated twin names (three or more: one region each)', 'eu,us')
  .option('--cluster', 'pair records on a local Redis Cluster (3 masters, 3 replicas)', false)
  .parse()
  .opts<{ jobs: string; executor: 'first' | 'balanced'; twins: string; cluster: boolean }>();
const redis = await startRedis({ purpose: 'the chaos run (npm run chaos)' });
const cluster = onCluster ? await startCluster() : undefined;
try {
  const report = await runSoak(redis, Number(jobs), {
    minMs: 20,
    maxMs: 200,
    executor,
    twins: twins.split(','),
    ...(cluster ? { lockCluster: cluster.nodes } : {}),
    log: (line) => console.log(line),
  });
  console.table(report);
  const ok =
    report.lost === 0 && report.fenceViolations === 0 && report.overlapsWithLiveOwner === 0;
  console.log(ok ? 'chaos: every invariant held' : 'chaos: INVARIANT VIOLATED');
  process.exitCode = ok ? 0 : 1;
} finally {
  await cluster?.stop();
  await redis.stop();
}
process.exit();
