import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { openSqlStore, type SqlStore, type TransactionRecord } from '../../src/store/index.ts';
import { randomToken } from '../../src/core/index.ts';
import { needsPostgres, postgresUrl } from '../helpers/services.ts';

/** The transaction store's list query (the admin plane's `transactions.list`) on every engine available here. */
function suite(name: string, options: { skip: string | false }, open: () => Promise<SqlStore>) {
  describe(`listing transactions on ${name}`, options, () => {
    let store: SqlStore;
    const now = Math.floor(Date.now() / 1000);
    // Users of their own per run: PostgreSQL keeps rows between runs.
    const alice = `alice-${randomToken(6)}`;
    const bob = `bob-${randomToken(6)}`;
    const made: Record<string, TransactionRecord> = {};
    const make = async (key: string, overrides: Partial<TransactionRecord>) => {
      const tx: TransactionRecord = {
        id: randomToken(16),
        status: 'pending',
        sub: alice,
        clientId: 'agent',
        act: ['sample-agent'],
        resource: 'https://bank.test/mcp',
        tool: 'transfer',
        argumentsHash: 'h'.repeat(43),
        summary: `Transfer (${key})`,
        requestedBy: 'gateway',
        createdAt: now,
        expiresAt: now + 300,
        ...overrides,
      };
      await store.transactions.create(tx);
      made[key] = tx;
    };
    const ids = (list: TransactionRecord[]) => list.map((t) => Object.entries(made).find(([, m]) => m.id === t.id)?.[0] ?? `other:${t.id}`);

    before(async () => {
      store = await open();
      await make('pending', { createdAt: now - 10 });
      await make('approved', { status: 'approved', decidedAt: now - 5, decidedHow: 'password', createdAt: now - 20 });
      await make('denied', { status: 'denied', decidedAt: now - 25, createdAt: now - 30 });
      await make('used', { status: 'used', decidedAt: now - 35, usedAt: now - 34, createdAt: now - 40 });
      await make('expired-pending', { expiresAt: now, createdAt: now - 300 });
      await make('expired-approved', { status: 'approved', expiresAt: now - 1, createdAt: now - 400 });
      await make('bob', { sub: bob, tool: 'delete_account', createdAt: now - 15 });
    });
    after(async () => {
      await store?.close();
    });

    it("lists a user's transactions newest first, every status", async () => {
      const list = await store.transactions.list({ now, limit: 50, sub: alice });
      assert.deepEqual(ids(list), ['pending', 'approved', 'denied', 'used', 'expired-pending', 'expired-approved']);
    });

    it('filters by status as transactionStatus reads it: expired ones are pending or approved past their expiry', async () => {
      const by = async (status: TransactionRecord['status'] | 'expired') => ids(await store.transactions.list({ now, limit: 50, sub: alice, status }));
      assert.deepEqual(await by('pending'), ['pending']);
      assert.deepEqual(await by('approved'), ['approved']);
      assert.deepEqual(await by('denied'), ['denied']);
      assert.deepEqual(await by('used'), ['used']);
      assert.deepEqual(await by('expired'), ['expired-pending', 'expired-approved']);
    });

    it('filters by tool and by a creation time window (since inclusive, until exclusive)', async () => {
      assert.deepEqual(ids(await store.transactions.list({ now, limit: 50, tool: 'delete_account', since: now - 15, until: now - 14 })), ['bob']);
      assert.deepEqual(ids(await store.transactions.list({ now, limit: 50, sub: alice, since: now - 30, until: now - 10 })), ['approved', 'denied']);
    });

    it('pages after the last item of the previous page, equal creation times included', async () => {
      const sub = `tied-${randomToken(6)}`;
      for (let i = 0; i < 5; i++) await make(`tied-${i}`, { sub, createdAt: now - 100 });
      const seen: string[] = [];
      let after: { createdAt: number; id: string } | undefined;
      for (let i = 0; i < 4; i++) {
        const page = await store.transactions.list({ now, limit: 2, sub, after });
        seen.push(...page.map((t) => t.id));
        const last = page.at(-1);
        if (!last) break;
        after = { createdAt: last.createdAt, id: last.id };
      }
      assert.equal(seen.length, 5);
      assert.equal(new Set(seen).size, 5, 'no item twice');
      assert.deepEqual(seen, (await store.transactions.list({ now, limit: 50, sub })).map((t) => t.id), 'the pages read as one list');
    });
  });
}

suite('SQLite', { skip: false }, () => openSqlStore({ driver: 'sqlite', sqliteFile: ':memory:' }));
suite('PostgreSQL', needsPostgres(), () => openSqlStore({ driver: 'postgres', databaseUrl: postgresUrl }));
