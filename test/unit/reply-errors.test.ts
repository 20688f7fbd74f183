/**
 * How a lock-store error is treated: a failover's replies clear up by themselves (retry), a
 * refusal only a person can fix is reported as such. UNBLOCKED, the reply a blocked WAIT gets
 * when its primary is demoted, was taken for a misconfigured store (seen in
 * test/faults/cluster-freeze.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { StaleFenceError } from '../../src/errors.js';
import { classifyError } from '../../src/lock/reply-errors.js';

function replyError(message: string): Error {
  return Object.assign(new Error(message), { name: 'ReplyError' });
}

describe('classifyError', () => {
  it.each([
    [
      'UNBLOCKED force unblock from blocking operation, instance state changed (master -> replica?)',
      'transient',
    ],
    ["READONLY You can't write against a read only replica.", 'transient'],
    ['MOVED 3999 127.0.0.1:6381', 'transient'],
    ['CLUSTERDOWN The cluster is down', 'transient'],
    ['NOREPLICAS Not enough good replicas to write.', 'transient'],
    ['WRONGPASS invalid username-password pair or user is disabled.', 'permanent'],
    ["NOPERM this user has no permissions to run the 'evalsha' command", 'permanent'],
    ["ERR unknown command 'EVALSHA'", 'permanent'],
  ])('%s: %s', (message, expected) => {
    expect(classifyError(replyError(message))).toBe(expected);
  });

  it('a dropped connection is transient, a refusal of our own is ours', () => {
    expect(classifyError(new Error('Connection is closed.'))).toBe('transient');
    expect(classifyError(new StaleFenceError('job-1', 1))).toBe('ours');
  });
});
