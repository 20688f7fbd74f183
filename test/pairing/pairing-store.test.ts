/**
 * The pairing record on a PostgreSQL twin: a row of `<schema>.bullmq_paired_pairing`, made by
 * the first writer, used by a role with no right to create anything.
 */
import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { pairingStoreOf } from '../../src/pairing/pairing-store.js';
import { useClosers } from '../support/closers.js';
import { usePostgres } from '../support/file-postgres.js';

const postgres = usePostgres();
const closers = useClosers();

function pool(url: string): pg.Pool {
  const made = new pg.Pool({ connectionString: url });
  closers.push(() => made.end());
  return made;
}

/** The store of a queue on `schema`, as a BullMQ PostgreSQL backend would hold it. */
const storeOn = (db: pg.Pool, schema: string) =>
  pairingStoreOf({ name: 'push', backend: { connection: { pool: db, schema } } });

describe('the pairing record on PostgreSQL', () => {
  it('is made by the first writer and refused to another group', async () => {
    const admin = pool(postgres().url);
    await admin.query('CREATE SCHEMA IF NOT EXISTS paired_a');
    const store = storeOn(admin, 'paired_a');
    expect(await store.read('bull:push:paired')).toBeUndefined();
    expect(await store.writeUnlessOtherGroup('bull:push:paired', '{"group":"g"}', 'g')).toBe(
      undefined,
    );
    // The same group again: written (another twin set under one group is a label change).
    expect(await store.writeUnlessOtherGroup('bull:push:paired', '{"group":"g","v":2}', 'g')).toBe(
      undefined,
    );
    // Another group: not written, the recorded one returned.
    expect(await store.writeUnlessOtherGroup('bull:push:paired', '{"group":"h"}', 'h')).toBe(
      '{"group":"g","v":2}',
    );
    expect(await store.read('bull:push:paired')).toBe('{"group":"g","v":2}');
  });

  it('works for a role that may use the table but not create in the schema (before: permission denied)', async () => {
    const admin = pool(postgres().url);
    await admin.query('CREATE SCHEMA IF NOT EXISTS paired_b');
    await storeOn(admin, 'paired_b').writeUnlessOtherGroup('k1', '{"group":"g"}', 'g');
    await admin.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'paired_limited') THEN
        CREATE ROLE paired_limited LOGIN;
      END IF; END $$`);
    await admin.query('GRANT USAGE ON SCHEMA paired_b TO paired_limited');
    await admin.query(
      'GRANT SELECT, INSERT, UPDATE ON paired_b.bullmq_paired_pairing TO paired_limited',
    );
    const url = new URL(postgres().url);
    url.username = 'paired_limited';
    const limited = storeOn(pool(url.toString()), 'paired_b');
    expect(await limited.read('k1')).toBe('{"group":"g"}');
    expect(await limited.writeUnlessOtherGroup('k2', '{"group":"g"}', 'g')).toBeUndefined();
    expect(await limited.read('k2')).toBe('{"group":"g"}');
  });
});
