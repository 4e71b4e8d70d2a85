import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { connect, type Driver } from '../src/store/db.ts';
import { migrate } from '../src/store/migrations.ts';
import { needsPostgres, withPrivateDatabase } from './helpers/services.ts';

/**
 * Migration 0011 over a database that already has users: their lower-cased email is filled in
 * from the profile, so account linking by email finds users created before it.
 */
async function backfill(driver: Driver, options: { sqliteFile?: string; databaseUrl?: string }) {
  const db = connect({ driver, ...options });
  try {
    await migrate(db as never, driver, '0010_remembered_devices');
    const user = (sub: string, profile: Record<string, unknown>) => ({ sub, username: sub, password_hash: null, profile: JSON.stringify(profile), created_at: 1, roles: null, source: null });
    // Written as 0010 knew the table: no email column yet.
    await db.insertInto('users').values([user('u1', { email: 'Ann@Example.COM', name: 'Ann' }), user('u2', { name: 'No Mail' })]).execute();
    await migrate(db as never, driver);
    const rows = await db.selectFrom('users').select(['sub', 'email']).orderBy('sub').execute();
    assert.deepEqual(rows, [
      { sub: 'u1', email: 'ann@example.com' },
      { sub: 'u2', email: null },
    ]);
    // The new tables are there and empty.
    assert.deepEqual(await db.selectFrom('federated_identities').selectAll().execute(), []);
    assert.deepEqual(await db.selectFrom('workload_identities').selectAll().execute(), []);
  } finally {
    await db.destroy();
  }
}

describe('migration 0011_dpop_federation', () => {
  it('fills users.email from existing profiles on SQLite', () => backfill('sqlite', { sqliteFile: ':memory:' }));

  it('fills users.email from existing profiles on PostgreSQL (in a database of its own)', needsPostgres(), async () => {
    await withPrivateDatabase('m0011', (databaseUrl) => backfill('postgres', { databaseUrl }));
  });
});
