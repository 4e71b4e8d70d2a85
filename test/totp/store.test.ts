import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomToken } from '../../src/core/index.ts';
import { openSqlStore, type SqlStore } from '../../src/store/index.ts';
import { needsPostgres, postgresUrl } from '../helpers/services.ts';

/** The TOTP store on every engine available here: the races it must settle are single UPDATEs. */
function totpSuite(name: string, options: { skip: string | false }, open: () => Promise<SqlStore>) {
  describe(`TOTP store on ${name}`, options, () => {
    let store: SqlStore;
    before(async () => {
      store = await open();
    });
    after(async () => store?.close());

    it('keeps a pending credential replaceable and a confirmed one not', async () => {
      const sub = `u-${randomToken(8)}`;
      assert.equal(await store.totp.putPending({ sub, secret: 'sealed-1', createdAt: 100 }), true);
      assert.equal(await store.totp.putPending({ sub, secret: 'sealed-2', createdAt: 101 }), true);
      assert.deepEqual(await store.totp.find(sub), { sub, secret: 'sealed-2', createdAt: 101 });
      assert.equal(await store.totp.useStep(sub, 5), false, 'a pending credential accepts no code');
      assert.equal(await store.totp.confirm(sub, 'sealed-1', 7, 102), false, 'confirming a replaced secret fails');
      assert.equal(await store.totp.confirm(sub, 'sealed-2', 7, 102), true);
      assert.equal(await store.totp.confirm(sub, 'sealed-2', 8, 103), false, 'confirmed once');
      assert.equal(await store.totp.putPending({ sub, secret: 'sealed-3', createdAt: 104 }), false, 'a confirmed credential is not replaced');
      assert.deepEqual(await store.totp.find(sub), { sub, secret: 'sealed-2', createdAt: 101, confirmedAt: 102, lastStep: 7 });
      assert.deepEqual([...(await store.totp.confirmedAmong([sub, 'nobody']))], [sub]);
      assert.equal(await store.totp.delete(sub), true);
      assert.equal(await store.totp.delete(sub), false);
      assert.equal(await store.totp.find(sub), undefined);
    });

    it('accepts each step once, and never one earlier than the last, even when raced', async () => {
      const sub = `u-${randomToken(8)}`;
      await store.totp.putPending({ sub, secret: 's', createdAt: 1 });
      await store.totp.confirm(sub, 's', 100, 2);
      assert.equal(await store.totp.useStep(sub, 100), false, 'the confirming step is spent');
      const raced = await Promise.all(Array.from({ length: 8 }, () => store.totp.useStep(sub, 101)));
      assert.equal(raced.filter(Boolean).length, 1, 'exactly one of eight concurrent uses of one step');
      assert.equal(await store.totp.useStep(sub, 99), false);
      assert.equal(await store.totp.useStep(sub, 102), true);
      assert.equal((await store.totp.find(sub))?.lastStep, 102);
    });

    it('deletes the credential with its user', async () => {
      const sub = `u-${randomToken(8)}`;
      await store.users.upsert({ sub, username: `n-${sub}`, profile: {}, createdAt: 1 });
      await store.totp.putPending({ sub, secret: 's', createdAt: 1 });
      await store.users.delete(sub);
      assert.equal(await store.totp.find(sub), undefined);
    });
  });
}

totpSuite('SQLite', { skip: false }, () => openSqlStore({ driver: 'sqlite', sqliteFile: ':memory:' }));
totpSuite('PostgreSQL', needsPostgres(), () => openSqlStore({ driver: 'postgres', databaseUrl: postgresUrl }));
