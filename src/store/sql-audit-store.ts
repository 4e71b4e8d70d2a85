// The audit log in SQL (SQLite and PostgreSQL): appended in batches, read newest first by the
// admin plane's queries and daily counts.
import type { Selectable } from 'kysely';
import { orUndefined, type Db, type Driver, type Tables } from './db.ts';
import { sql } from './migrations.ts';
import type { AuditDailyCount, AuditEvent, AuditStore } from './types.ts';

export function auditStore(db: Db, driver: Driver): AuditStore {
  const toEvent = (row: Selectable<Tables['audit_events']>) => ({
    id: Number(row.id),
    at: Number(row.at),
    type: row.type,
    outcome: row.outcome as AuditEvent['outcome'],
    clientId: orUndefined(row.client_id),
    sub: orUndefined(row.sub),
    error: orUndefined(row.error),
    reason: orUndefined(row.reason),
    data: row.data ? JSON.parse(row.data) : undefined,
  });
  // Substring search without LIKE, whose wildcards (% and _) would need escaping and whose case
  // rules differ between the engines: both functions compare bytes exactly.
  const contains = (needle: string) => (driver === 'postgres' ? sql<boolean>`strpos(data, ${needle}) > 0` : sql<boolean>`instr(data, ${needle}) > 0`);
  return {
    async append(events: AuditEvent[]) {
      if (events.length === 0) return;
      await db
        .insertInto('audit_events')
        .values(
          events.map((e) => ({
            at: e.at,
            type: e.type,
            outcome: e.outcome,
            client_id: e.clientId ?? null,
            sub: e.sub ?? null,
            error: e.error ?? null,
            reason: e.reason ?? null,
            data: e.data ? JSON.stringify(e.data) : null,
          })),
        )
        .execute();
    },
    async list(filter = {}) {
      let query = db.selectFrom('audit_events').selectAll().orderBy('id', 'desc').limit(filter.limit ?? 100);
      if (filter.type) query = query.where('type', '=', filter.type);
      if (filter.clientId) query = query.where('client_id', '=', filter.clientId);
      const rows = await query.execute();
      return rows.map(toEvent);
    },
    async query(q) {
      let query = db.selectFrom('audit_events').selectAll().orderBy('id', 'desc').limit(q.limit);
      if (q.type?.endsWith('*')) query = query.where(sql<boolean>`substr(type, 1, ${q.type.length - 1}) = ${q.type.slice(0, -1)}`);
      else if (q.type) query = query.where('type', '=', q.type);
      if (q.outcome) query = query.where('outcome', '=', q.outcome);
      if (q.clientId) query = query.where('client_id', '=', q.clientId);
      if (q.sub) query = query.where('sub', '=', q.sub);
      if (q.since !== undefined) query = query.where('at', '>=', q.since);
      if (q.until !== undefined) query = query.where('at', '<', q.until);
      if (q.beforeId !== undefined) query = query.where('id', '<', q.beforeId);
      for (const fragment of q.dataContains ?? []) query = query.where(contains(fragment));
      if (q.involves) {
        const who = q.involves;
        query = query.where((eb) => eb.or([eb('client_id', '=', who), eb.and([eb('data', 'is not', null), contains(JSON.stringify(who))])]));
      }
      return (await query.execute()).map(toEvent);
    },
    async dailyCounts(since, until) {
      const exchange = contains('"urn:ietf:params:oauth:grant-type:token-exchange"');
      const kind = sql<string>`case when type = 'token.issued' and ${exchange} then 'exchange' when type = 'token.issued' then 'issued' else 'refusal' end`;
      const day = sql<number>`(at / 86400)`;
      const rows = await db
        .selectFrom('audit_events')
        .select([day.as('day'), kind.as('kind'), (eb) => eb.fn.countAll<number>().as('count')])
        .where('at', '>=', since)
        .where('at', '<', until)
        .where((eb) => eb.or([eb('type', '=', 'token.issued'), eb('outcome', '=', 'failure')]))
        // By position: PostgreSQL would not match the two copies of a parameterized expression.
        .groupBy([sql`1`, sql`2`])
        .orderBy(sql`1`)
        .execute();
      return rows.map((r) => ({ day: Number(r.day), kind: r.kind as AuditDailyCount['kind'], count: Number(r.count) }));
    },
  };
}
