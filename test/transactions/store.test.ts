import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openSqlStore, transactionStatus, type SqlStore, type TransactionRecord } from '../../src/store/index.ts';
import { randomToken } from '../../src/core/index.ts';
import { needsPostgres, postgresUrl } from '../helpers/services.ts';

/** The transaction store (issue 14) on every engine available here: each change of state happens once. */
function suite(name: string, options: { skip: string | false }, open: () => Promise<SqlStore>) {
  describe(`transactions on ${name}`, options, () => {
    let store: SqlStore;
    const now = Math.floor(Date.now() / 1000);
    const binding = { sub: 'u1', clientId: 'agent', argumentsHash: 'h'.repeat(43) };
    const make = async (overrides: Partial<TransactionRecord> = {}): Promise<TransactionRecord> => {
      const tx: TransactionRecord = {
        id: randomToken(16),
        status: 'pending',
        sub: binding.sub,
        clientId: binding.clientId,
        act: ['mcp-server', 'sample-agent'],
        resource: 'https://bank.test/mcp',
        tool: 'transfer',
        argumentsHash: binding.argumentsHash,
        summary: 'Transfer 250.00 EUR to Bob',
        details: { amount: 250, to: 'Bob' },
        requestedBy: 'gateway',
        createdAt: now,
        expiresAt: now + 300,
        ...overrides,
      };
      await store.transactions.create(tx);
      return tx;
    };

    before(async () => {
      store = await open();
    });
    after(async () => {
      await store?.close();
    });

    it('round-trips a transaction, its chain and details', async () => {
      const tx = await make();
      const found = await store.transactions.find(tx.id);
      assert.equal(found?.status, 'pending');
      assert.deepEqual(found?.act, ['mcp-server', 'sample-agent']);
      assert.deepEqual(found?.details, { amount: 250, to: 'Bob' });
      assert.equal(found?.expiresAt, now + 300);
      assert.equal(found?.decidedAt, undefined);
      assert.equal(await store.transactions.find('nope'), undefined);
    });

    it('decides once, for its own user only, before it expires', async () => {
      const tx = await make();
      assert.equal(await store.transactions.decide(tx.id, 'someone-else', { status: 'approved', at: now, how: 'password' }), false);
      const [a, b] = await Promise.all([
        store.transactions.decide(tx.id, 'u1', { status: 'approved', at: now, how: 'password' }),
        store.transactions.decide(tx.id, 'u1', { status: 'denied', at: now }),
      ]);
      assert.equal([a, b].filter(Boolean).length, 1, 'one decision wins');
      const expired = await make({ expiresAt: now + 5 });
      assert.equal(await store.transactions.decide(expired.id, 'u1', { status: 'approved', at: now + 5, how: 'password' }), false);
      assert.equal(transactionStatus((await store.transactions.find(expired.id))!, now + 5), 'expired');
    });

    it('uses an approved transaction exactly once, with its binding, before it expires', async () => {
      const tx = await make();
      assert.equal(await store.transactions.use(tx.id, binding, now), false, 'pending: not usable');
      assert.equal(await store.transactions.decide(tx.id, 'u1', { status: 'approved', at: now, how: 'totp' }), true);
      assert.equal(await store.transactions.use(tx.id, { ...binding, argumentsHash: 'x'.repeat(43) }, now), false, 'other arguments');
      assert.equal(await store.transactions.use(tx.id, { ...binding, clientId: 'other' }, now), false, 'other client');
      assert.equal(await store.transactions.use(tx.id, binding, now + 300), false, 'expired');
      const results = await Promise.all(Array.from({ length: 8 }, () => store.transactions.use(tx.id, binding, now + 1)));
      assert.equal(results.filter(Boolean).length, 1, 'exactly one concurrent use wins');
      const used = await store.transactions.find(tx.id);
      assert.deepEqual([used?.status, used?.usedAt, used?.decidedHow], ['used', now + 1, 'totp']);
    });

    it("lists a user's pending, unexpired transactions, newest first", async () => {
      const sub = `u-${randomToken(6)}`;
      const old = await make({ sub, createdAt: now - 10 });
      const recent = await make({ sub, createdAt: now });
      await make({ sub, expiresAt: now });
      const decided = await make({ sub });
      await store.transactions.decide(decided.id, sub, { status: 'denied', at: now });
      await make({ sub: `${sub}-other` });
      assert.deepEqual((await store.transactions.listPending(sub, now)).map((t) => t.id), [recent.id, old.id]);
    });

    it('sweeps transactions a day after they expired', async () => {
      const gone = await make({ expiresAt: now - 86_401 });
      const kept = await make({ expiresAt: now - 10 });
      await store.sweep(now);
      assert.equal(await store.transactions.find(gone.id), undefined);
      assert.ok(await store.transactions.find(kept.id));
    });
  });
}

suite('SQLite', { skip: false }, () => openSqlStore({ driver: 'sqlite', sqliteFile: ':memory:' }));
suite('PostgreSQL', needsPostgres(), () => openSqlStore({ driver: 'postgres', databaseUrl: postgresUrl }));
