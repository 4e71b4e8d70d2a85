import type { Db } from './db.ts';
import type { FederationStore } from './types.ts';

/** Links of federated identities (an IdP's subject → a local user), in SQL. */
export function federationStore(db: Db): FederationStore {
  return {
    async findLink(issuer, subject) {
      const row = await db.selectFrom('federated_identities').selectAll().where('issuer', '=', issuer).where('subject', '=', subject).executeTakeFirst();
      return row && { issuer: row.issuer, subject: row.subject, sub: row.sub, createdAt: row.created_at, ...(row.last_used_at !== null ? { lastUsedAt: row.last_used_at } : {}) };
    },
    async link(record) {
      const result = await db
        .insertInto('federated_identities')
        .values({ issuer: record.issuer, subject: record.subject, sub: record.sub, created_at: record.createdAt, last_used_at: record.lastUsedAt ?? null })
        .onConflict((oc) => oc.columns(['issuer', 'subject']).doNothing())
        .executeTakeFirst();
      return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
    },
    async touch(issuer, subject, at) {
      await db.updateTable('federated_identities').set({ last_used_at: at }).where('issuer', '=', issuer).where('subject', '=', subject).execute();
    },
    async issuersOf(sub) {
      const rows = await db.selectFrom('federated_identities').select('issuer').distinct().where('sub', '=', sub).orderBy('issuer').execute();
      return rows.map((row) => row.issuer);
    },
    async unlinkBySub(sub) {
      const result = await db.deleteFrom('federated_identities').where('sub', '=', sub).executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}
