// Remembered sign-ins in SQL (SQLite and PostgreSQL). A rotation is one conditional UPDATE on the
// current token hash, so two instances presented the same cookie at once cannot both rotate it.
import type { Db, Tables } from './db.ts';
import type { RememberedRecord, RememberedStore } from './types.ts';

type Row = Tables['remembered_devices'];

function toRecord(row: Row): RememberedRecord {
  const optional = <K extends string, V>(key: K, value: V | null) => (value === null ? {} : ({ [key]: value } as Record<K, V>));
  return {
    id: row.id,
    sub: row.sub,
    tokenHash: row.token_hash,
    ...optional('previousHash', row.previous_hash),
    ...(row.rotated_at !== null ? { rotatedAt: Number(row.rotated_at) } : {}),
    deviceHash: row.device_hash,
    authTime: Number(row.auth_time),
    amr: JSON.parse(row.amr) as string[],
    ...optional('addressPrefix', row.address_prefix),
    ...optional('userAgent', row.user_agent),
    ...optional('country', row.country),
    createdAt: Number(row.created_at),
    lastUsedAt: Number(row.last_used_at),
    expiresAt: Number(row.expires_at),
  };
}

export function rememberedStore(db: Db): RememberedStore {
  return {
    async create(r) {
      await db
        .insertInto('remembered_devices')
        .values({
          id: r.id,
          sub: r.sub,
          token_hash: r.tokenHash,
          previous_hash: null,
          rotated_at: null,
          device_hash: r.deviceHash,
          auth_time: r.authTime,
          amr: JSON.stringify(r.amr),
          address_prefix: r.addressPrefix ?? null,
          user_agent: r.userAgent ?? null,
          country: r.country ?? null,
          created_at: r.createdAt,
          last_used_at: r.lastUsedAt,
          expires_at: r.expiresAt,
        })
        .execute();
    },
    async find(id) {
      const row = await db.selectFrom('remembered_devices').selectAll().where('id', '=', id).executeTakeFirst();
      return row && toRecord(row);
    },
    async rotate(id, expectedHash, next) {
      const result = await db
        .updateTable('remembered_devices')
        .set({
          token_hash: next.tokenHash,
          previous_hash: expectedHash,
          rotated_at: next.at,
          last_used_at: next.at,
          address_prefix: next.addressPrefix ?? null,
          user_agent: next.userAgent ?? null,
          country: next.country ?? null,
        })
        .where('id', '=', id)
        .where('token_hash', '=', expectedHash)
        .executeTakeFirst();
      return Number(result.numUpdatedRows) > 0;
    },
    async listBySub(sub, now) {
      const rows = await db.selectFrom('remembered_devices').selectAll().where('sub', '=', sub).where('expires_at', '>', now).orderBy('last_used_at', 'desc').orderBy('id').execute();
      return rows.map(toRecord);
    },
    async delete(id, sub) {
      let query = db.deleteFrom('remembered_devices').where('id', '=', id);
      if (sub !== undefined) query = query.where('sub', '=', sub);
      const result = await query.executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
    async deleteBySub(sub) {
      const result = await db.deleteFrom('remembered_devices').where('sub', '=', sub).executeTakeFirst();
      return Number(result.numDeletedRows);
    },
  };
}
