import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { openSqlStore, type SqlStore } from '../../src/store/sql-store.ts';
import type { RememberedRecord } from '../../src/store/types.ts';
import { needsPostgres, postgresUrl } from '../helpers/services.ts';

/**
 * The remembered-sign-in store (migration 0010) on SQLite and PostgreSQL: hashes only, one
 * conditional rotation, per-user listing without expired records, deletes, sweep, and a deleted
 * user taking its records along. PostgreSQL runs in a database of its own, made for this run.
 */
function suite(name: string, options: { skip: string | false }, open: () => Promise<{ store: SqlStore; drop: () => Promise<void> }>) {
  describe(`remembered store on ${name}`, options, () => {
    let store: SqlStore;
    let drop: () => Promise<void>;
    before(async () => {
      ({ store, drop } = await open());
    });
    after(async () => {
      await store?.close();
      await drop?.();
    });

    const record = (id: string, sub: string, extra: Partial<RememberedRecord> = {}): RememberedRecord => ({
      id,
      sub,
      tokenHash: `hash-${id}`,
      deviceHash: `device-${sub}`,
      authTime: 1000,
      amr: ['pwd'],
      addressPrefix: '203.0.113.0/24',
      userAgent: 'Chrome on Linux',
      createdAt: 1000,
      lastUsedAt: 1000,
      expiresAt: 5000,
      ...extra,
    });

    it('creates and finds a record, optional fields left out', async () => {
      await store.remembered.create(record('r1', 'u1'));
      assert.deepEqual(await store.remembered.find('r1'), record('r1', 'u1'));
      await store.remembered.create(record('r2', 'u1', { addressPrefix: undefined, userAgent: undefined, country: 'GB', lastUsedAt: 1500 }));
      const found = await store.remembered.find('r2');
      assert.equal(found?.country, 'GB');
      assert.equal('addressPrefix' in found!, false);
      assert.equal(await store.remembered.find('nope'), undefined);
    });

    it('rotates only from the current hash: of two concurrent rotations one wins', async () => {
      const [a, b] = await Promise.all([
        store.remembered.rotate('r1', 'hash-r1', { tokenHash: 'next-a', at: 2000, addressPrefix: '198.51.100.0/24', userAgent: 'Chrome on Linux' }),
        store.remembered.rotate('r1', 'hash-r1', { tokenHash: 'next-b', at: 2000 }),
      ]);
      assert.equal(Number(a) + Number(b), 1);
      const after = await store.remembered.find('r1');
      assert.equal(after?.previousHash, 'hash-r1');
      assert.equal(after?.rotatedAt, 2000);
      assert.equal(after?.lastUsedAt, 2000);
      assert.ok(after?.tokenHash === 'next-a' || after?.tokenHash === 'next-b');
      assert.equal(await store.remembered.rotate('r1', 'hash-r1', { tokenHash: 'late', at: 2001 }), false, 'the old hash rotates nothing');
    });

    it("lists a user's live records, most recently used first", async () => {
      await store.remembered.create(record('r3', 'u1', { expiresAt: 1999 }));
      await store.remembered.create(record('r4', 'u2'));
      assert.deepEqual((await store.remembered.listBySub('u1', 2500)).map((r) => r.id), ['r1', 'r2']);
      assert.deepEqual((await store.remembered.listBySub('u1', 1900)).map((r) => r.id), ['r1', 'r2', 'r3']);
    });

    it("deletes one (only the user's own when a user is named), or all of a user's", async () => {
      assert.equal(await store.remembered.delete('r4', 'u1'), false, "not u1's");
      assert.equal(await store.remembered.delete('r2', 'u1'), true);
      assert.equal(await store.remembered.delete('r2', 'u1'), false);
      assert.equal(await store.remembered.deleteBySub('u1'), 2);
      assert.equal(await store.remembered.deleteBySub('u1'), 0);
    });

    it('the sweep removes expired records; deleting a user removes theirs', async () => {
      await store.remembered.create(record('r5', 'u3', { expiresAt: 10 }));
      await store.sweep(100);
      assert.equal(await store.remembered.find('r5'), undefined);
      await store.users.upsert({ sub: 'u2', username: 'someone', profile: {}, createdAt: 1 });
      await store.users.delete('u2');
      assert.equal(await store.remembered.find('r4'), undefined);
    });
  });
}

suite('SQLite', { skip: false }, async () => ({ store: await openSqlStore({ driver: 'sqlite', sqliteFile: ':memory:' }), drop: async () => undefined }));

suite('PostgreSQL', needsPostgres(), async () => {
  const name = `mandate_remember_${randomBytes(5).toString('hex')}`;
  const admin = new pg.Client({ connectionString: postgresUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(postgresUrl!);
  url.pathname = `/${name}`;
  return {
    store: await openSqlStore({ driver: 'postgres', databaseUrl: url.href }),
    drop: async () => {
      const client = new pg.Client({ connectionString: postgresUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
});
