/**
 * A pair record's fields are listed once, in src/lock/lua/record.json; a settle clears every
 * field marked there as running-only (before: `movedSince` and `grace` stayed on a settled
 * record, since the settle script named the fields to clear itself). Real scripts on a real
 * Redis: a running record holding every field is settled each way, in key and hash mode.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { recordAddress } from '../../src/lock/keys.js';
import { readStoredRecord } from '../../src/lock/record.js';
import { type Settlement, settle } from '../../src/lock/scripts.js';
import { useRedis } from '../support/file-redis.js';
import { uniquePrefix } from '../support/redis.js';

interface FieldSpec {
  type: string;
  running?: boolean;
}
const schema = JSON.parse(
  readFileSync(new URL('../../src/lock/lua/record.json', import.meta.url), 'utf8'),
) as { fields: Record<string, FieldSpec> };
const running = Object.keys(schema.fields).filter((name) => schema.fields[name]?.running);

/** A running record owned by token 'tok' at fence 7, every running-only field set. */
function runningRecord(now: number): Record<string, unknown> {
  return {
    state: 'running',
    owner: 'eu',
    fence: 7,
    attempts: 2,
    token: 'tok',
    leaseUntil: now + 30_000,
    grantedAt: now,
    takeover: 'disconnected',
    createdAt: now,
    updatedAt: now,
    live: 'paired:live:x',
    skey: 'paired:session:x',
    grace: 400,
    goneSince: now,
    movedSince: now,
  };
}

const settlements: Settlement[] = [
  { state: 'done', result: '"ok"' },
  { state: 'failed', error: '{"message":"boom"}' },
  { state: 'released' },
];

describe('record fields', () => {
  const redis = useRedis();

  it('the running-only fields are named in record.json, movedSince among them', () => {
    expect(running).toEqual(
      expect.arrayContaining(['token', 'leaseUntil', 'live', 'skey', 'goneSince', 'movedSince']),
    );
  });

  for (const hashMode of [false, true]) {
    for (const settlement of settlements) {
      it(`a ${settlement.state} settle (${hashMode ? 'hash' : 'key'} mode) leaves no running-only field`, async () => {
        const client = redis().connect();
        try {
          const prefix = uniquePrefix('rf');
          const address = recordAddress(prefix, 'task-1', hashMode ? 'h' : undefined);
          const record = runningRecord(Date.now());
          expect(Object.keys(record).sort()).toEqual(expect.arrayContaining([...running].sort()));
          if (hashMode) await client.hset(address.key, address.field, JSON.stringify(record));
          else await client.set(address.key, JSON.stringify(record));

          const reply = await settle(
            client,
            address,
            { token: 'tok', fence: 7 },
            60_000,
            `${prefix}:settled`,
            settlement,
          );
          expect(reply).toEqual({ kind: 'ok' });

          const raw = hashMode
            ? await client.hget(address.key, address.field)
            : await client.get(address.key);
          const stored = readStoredRecord(raw ?? '');
          expect(stored).toMatchObject({ state: settlement.state, owner: 'eu', fence: 7 });
          for (const name of running) expect(stored, name).not.toHaveProperty(name);
          // What outlives the run stays: who ran it, how often, why, and when.
          expect(stored).toMatchObject({ attempts: 2, takeover: 'disconnected' });
        } finally {
          client.disconnect();
        }
      });
    }
  }
});
