// Tool pins (issue 18) in SQL, SQLite and PostgreSQL alike. Each change of state is one
// conditional UPDATE whose WHERE clause is the precondition, so concurrent gateways and admins
// cannot both win (no read-then-write).
import type { Selectable } from 'kysely';
import type { ToolDefinition } from '../core/tool-hash.ts';
import { orUndefined, type Db, type Tables } from './db.ts';
import type { ToolPinKey, ToolPinRecord, ToolPinStatus, ToolPinStore } from './pin-store.ts';

const parse = (text: string | null) => (text === null ? undefined : (JSON.parse(text) as ToolDefinition));

function toRecord(row: Selectable<Tables['tool_pins']>): ToolPinRecord {
  return {
    resource: row.resource,
    upstream: row.upstream,
    tool: row.tool,
    status: row.status as ToolPinStatus,
    approvedHash: orUndefined(row.approved_hash),
    approvedDefinition: parse(row.approved_definition),
    pendingHash: orUndefined(row.pending_hash),
    pendingDefinition: parse(row.pending_definition),
    firstSeen: Number(row.first_seen),
    changedAt: row.changed_at === null ? undefined : Number(row.changed_at),
    approvedBy: orUndefined(row.approved_by),
    approvedAt: row.approved_at === null ? undefined : Number(row.approved_at),
    reportedBy: row.reported_by,
  };
}

export function toolPinStore(db: Db): ToolPinStore {
  const byKey = (key: ToolPinKey) =>
    db.updateTable('tool_pins').where('resource', '=', key.resource).where('upstream', '=', key.upstream).where('tool', '=', key.tool);
  return {
    async find(key) {
      const row = await db.selectFrom('tool_pins').selectAll().where('resource', '=', key.resource).where('upstream', '=', key.upstream).where('tool', '=', key.tool).executeTakeFirst();
      return row && toRecord(row);
    },
    async any(resource, upstream) {
      const row = await db.selectFrom('tool_pins').select('tool').where('resource', '=', resource).where('upstream', '=', upstream).limit(1).executeTakeFirst();
      return row !== undefined;
    },
    async insert(record) {
      const result = await db
        .insertInto('tool_pins')
        .values({
          resource: record.resource,
          upstream: record.upstream,
          tool: record.tool,
          status: record.status,
          approved_hash: record.approvedHash ?? null,
          approved_definition: record.approvedDefinition === undefined ? null : JSON.stringify(record.approvedDefinition),
          pending_hash: record.pendingHash ?? null,
          pending_definition: record.pendingDefinition === undefined ? null : JSON.stringify(record.pendingDefinition),
          first_seen: record.firstSeen,
          changed_at: record.changedAt ?? null,
          approved_by: record.approvedBy ?? null,
          approved_at: record.approvedAt ?? null,
          reported_by: record.reportedBy,
        })
        .onConflict((oc) => oc.columns(['resource', 'upstream', 'tool']).doNothing())
        .executeTakeFirst();
      return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
    },
    async propose(key, pending) {
      const result = await byKey(key)
        .set((eb) => ({
          status: eb.case().when('approved_hash', 'is not', null).then('changed').else('new').end(),
          pending_hash: pending.hash,
          pending_definition: JSON.stringify(pending.definition),
          changed_at: pending.at,
          reported_by: pending.reportedBy,
        }))
        .where((eb) => eb.or([eb('pending_hash', 'is', null), eb('pending_hash', '!=', pending.hash)]))
        .where((eb) => eb.or([eb('approved_hash', 'is', null), eb('approved_hash', '!=', pending.hash)]))
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    async restore(key, approvedHash) {
      const result = await byKey(key).set({ status: 'pinned', pending_hash: null, pending_definition: null }).where('approved_hash', '=', approvedHash).where('status', '!=', 'pinned').executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    async approve(key, hash, by, at) {
      const result = await byKey(key)
        .set((eb) => ({ status: 'pinned', approved_hash: eb.ref('pending_hash'), approved_definition: eb.ref('pending_definition'), pending_hash: null, pending_definition: null, approved_by: by, approved_at: at }))
        .where('pending_hash', '=', hash)
        .where('status', 'in', ['changed', 'new', 'rejected'])
        .executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    async reject(key, hash, at) {
      const result = await byKey(key).set({ status: 'rejected', changed_at: at }).where('pending_hash', '=', hash).where('status', 'in', ['changed', 'new']).executeTakeFirst();
      return Number(result.numUpdatedRows) === 1;
    },
    async list(filter) {
      let query = db.selectFrom('tool_pins').selectAll();
      if (filter.resource !== undefined) query = query.where('resource', '=', filter.resource);
      if (filter.status !== undefined) query = query.where('status', '=', filter.status);
      const after = filter.after;
      if (after) {
        query = query.where((eb) =>
          eb.or([
            eb('resource', '>', after.resource),
            eb.and([eb('resource', '=', after.resource), eb('upstream', '>', after.upstream)]),
            eb.and([eb('resource', '=', after.resource), eb('upstream', '=', after.upstream), eb('tool', '>', after.tool)]),
          ]),
        );
      }
      const rows = await query.orderBy('resource').orderBy('upstream').orderBy('tool').limit(filter.limit).execute();
      return rows.map(toRecord);
    },
  };
}
