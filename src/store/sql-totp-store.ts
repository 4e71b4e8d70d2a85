// TOTP credentials in SQL (SQLite and PostgreSQL). Every change that a concurrent request could
// race (a replayed code, a confirmation against a secret replaced meanwhile) is one conditional
// UPDATE, so two instances cannot both accept the same code.
import { orUndefined, type Db } from './db.ts';
import type { TotpStore } from './types.ts';

export function totpStore(db: Db): TotpStore {
  return {
    async find(sub) {
      const row = await db.selectFrom('totp_credentials').selectAll().where('sub', '=', sub).executeTakeFirst();
      if (!row) return undefined;
      const confirmedAt = orUndefined(row.confirmed_at);
      const lastStep = orUndefined(row.last_step);
      return {
        sub: row.sub,
        secret: row.secret,
        createdAt: Number(row.created_at),
        ...(confirmedAt !== undefined ? { confirmedAt: Number(confirmedAt) } : {}),
        ...(lastStep !== undefined ? { lastStep: Number(lastStep) } : {}),
      };
    },
    async putPending(record) {
      const result = await db
        .insertInto('totp_credentials')
        .values({ sub: record.sub, secret: record.secret, created_at: record.createdAt, confirmed_at: null, last_step: null })
        .onConflict((oc) =>
          oc
            .column('sub')
            .doUpdateSet({ secret: record.secret, created_at: record.createdAt, last_step: null })
            .where('totp_credentials.confirmed_at', 'is', null),
        )
        .executeTakeFirst();
      return Number(result.numInsertedOrUpdatedRows ?? 0n) > 0;
    },
    async confirm(sub, secret, step, at) {
      const result = await db
        .updateTable('totp_credentials')
        .set({ confirmed_at: at, last_step: step })
        .where('sub', '=', sub)
        .where('secret', '=', secret)
        .where('confirmed_at', 'is', null)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    async useStep(sub, step) {
      const result = await db
        .updateTable('totp_credentials')
        .set({ last_step: step })
        .where('sub', '=', sub)
        .where('confirmed_at', 'is not', null)
        .where((eb) => eb.or([eb('last_step', 'is', null), eb('last_step', '<', step)]))
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    async delete(sub) {
      const result = await db.deleteFrom('totp_credentials').where('sub', '=', sub).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
    async confirmedAmong(subs) {
      if (subs.length === 0) return new Set();
      const rows = await db.selectFrom('totp_credentials').select('sub').where('sub', 'in', subs).where('confirmed_at', 'is not', null).execute();
      return new Set(rows.map((r) => r.sub));
    },
  };
}
