import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { subscriberOptions } from '../../src/lock/subscriber-options.js';

describe('subscriber connection options', () => {
  it('keep an offline queue when the client turned it off, and resubscribe themselves (ioredis resubscribes unawaited)', () => {
    // Never connects: only its options are read.
    const client = new Redis({ lazyConnect: true, enableOfflineQueue: false });
    try {
      expect(subscriberOptions(client)).toMatchObject({
        enableOfflineQueue: true,
        enableReadyCheck: false,
        // ioredis's own resubscribe is a promise nobody awaits: we resubscribe on 'ready'.
        autoResubscribe: false,
      });
    } finally {
      client.disconnect();
    }
  });
});
