// Transactions (high-risk actions waiting for approval) in SQL, SQLite and PostgreSQL alike. Every
// change of state is one conditional UPDATE whose WHERE clause is the whole precondition, so two
// concurrent decisions or uses cannot both succeed (no read-then-write).
import type { Selectable } from 'kysely';
import { orUndefined, type Db, type Tables } from './db.ts';
import type { TransactionRecord, TransactionStore } from './types.ts';

function toRecord(row: Selectable<Tables['transactions']>): TransactionRecord {
  return {
    id: row.id,
    status: row.status as TransactionRecord['status'],
    sub: row.sub,
    clientId: row.client_id,
    act: JSON.parse(row.act) as string[],
    resource: row.resource,
    tool: row.tool,
    argumentsHash: row.arguments_hash,
    summary: row.summary,
    details: row.details ? (JSON.parse(row.details) as Record<string, unknown>) : undefined,
    requestedBy: row.requested_by,
    createdAt: Number(row.created_at),
    expiresAt: Number(row.expires_at),
    decidedAt: orUndefined(row.decided_at),
    decidedHow: orUndefined(row.decided_how) as TransactionRecord['decidedHow'],
    usedAt: orUndefined(row.used_at),
  };
}

export function transactionStore(db: Db): TransactionStore {
  return {
    async create(tx) {
      await db
        .insertInto('transactions')
        .values({
          id: tx.id,
          status: tx.status,
          sub: tx.sub,
          client_id: tx.clientId,
          act: JSON.stringify(tx.act),
          resource: tx.resource,
          tool: tx.tool,
          arguments_hash: tx.argumentsHash,
          summary: tx.summary,
          details: tx.details === undefined ? null : JSON.stringify(tx.details),
          requested_by: tx.requestedBy,
          created_at: tx.createdAt,
          expires_at: tx.expiresAt,
          decided_at: tx.decidedAt ?? null,
          decided_how: tx.decidedHow ?? null,
          used_at: tx.usedAt ?? null,
        })
        .execute();
    },
    async find(id) {
      const row = await db.selectFrom('transactions').selectAll().where('id', '=', id).executeTakeFirst();
      return row && toRecord(row);
    },
    async decide(id, sub, decision) {
      const result = await db
        .updateTable('transactions')
        .set({ status: decision.status, decided_at: decision.at, decided_how: decision.how ?? null })
        .where('id', '=', id)
        .where('sub', '=', sub)
        .where('status', '=', 'pending')
        .where('expires_at', '>', decision.at)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    async use(id, binding, at) {
      const result = await db
        .updateTable('transactions')
        .set({ status: 'used', used_at: at })
        .where('id', '=', id)
        .where('status', '=', 'approved')
        .where('expires_at', '>', at)
        .where('sub', '=', binding.sub)
        .where('client_id', '=', binding.clientId)
        .where('arguments_hash', '=', binding.argumentsHash)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    async listPending(sub, now) {
      const rows = await db
        .selectFrom('transactions')
        .selectAll()
        .where('sub', '=', sub)
        .where('status', '=', 'pending')
        .where('expires_at', '>', now)
        .orderBy('created_at', 'desc')
        .orderBy('id')
        .limit(100)
        .execute();
      return rows.map(toRecord);
    },
    async list(filter) {
      let query = db.selectFrom('transactions').selectAll();
      if (filter.sub !== undefined) query = query.where('sub', '=', filter.sub);
      if (filter.tool !== undefined) query = query.where('tool', '=', filter.tool);
      if (filter.since !== undefined) query = query.where('created_at', '>=', filter.since);
      if (filter.until !== undefined) query = query.where('created_at', '<', filter.until);
      // Expiry is never written: pending and approved read as expired once expires_at has passed.
      if (filter.status === 'expired') query = query.where('status', 'in', ['pending', 'approved']).where('expires_at', '<=', filter.now);
      else if (filter.status === 'pending' || filter.status === 'approved') query = query.where('status', '=', filter.status).where('expires_at', '>', filter.now);
      else if (filter.status !== undefined) query = query.where('status', '=', filter.status);
      const after = filter.after;
      if (after) query = query.where((eb) => eb.or([eb('created_at', '<', after.createdAt), eb.and([eb('created_at', '=', after.createdAt), eb('id', '<', after.id)])]));
      const rows = await query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
      return rows.map(toRecord);
    },
  };
}

/** Transactions are kept a day past their expiry (a late poll still learns the outcome), then swept. */
export const TRANSACTION_RETENTION_SECONDS = 86_400;
