import type { Selectable, Transaction } from 'kysely';
import { orUndefined, type Db, type Tables } from './db.ts';
import { WorkloadIdentityTaken } from './types.ts';
import type { ClientRecord, ClientStore, WorkloadIdentityRecord } from './types.ts';

type ClientRow = Selectable<Tables['clients']> & { wi_issuer?: string | null; wi_subject?: string | null; wi_claims?: string | null };

/** Clients (configured, registered, admin-made) and their workload identities, in SQL. */
export function clientStore(db: Db): ClientStore {
  // Each client read carries its workload identity (left join: most clients have none).
  const selectClients = () =>
    db
      .selectFrom('clients')
      .leftJoin('workload_identities as wi', 'wi.client_id', 'clients.client_id')
      .selectAll('clients')
      .select(['wi.issuer as wi_issuer', 'wi.subject as wi_subject', 'wi.claims as wi_claims']);
  /**
   * Writes the client's workload identity (or its absence) in the caller's transaction; one held
   * by another client throws WorkloadIdentityTaken, which rolls the client write back too.
   */
  const writeWorkload = async (trx: Transaction<Tables>, clientId: string, workload: WorkloadIdentityRecord | undefined) => {
    await trx.deleteFrom('workload_identities').where('client_id', '=', clientId).execute();
    if (!workload) return;
    const held = await trx.selectFrom('workload_identities').select('client_id').where('issuer', '=', workload.issuer).where('subject', '=', workload.subject).executeTakeFirst();
    if (held) throw new WorkloadIdentityTaken(workload.issuer, workload.subject, held.client_id);
    const claims = workload.claims && Object.keys(workload.claims).length > 0 ? JSON.stringify(workload.claims) : null;
    await trx
      .insertInto('workload_identities')
      .values({ issuer: workload.issuer, subject: workload.subject, client_id: clientId, claims })
      .execute()
      .catch((error: unknown) => {
        // A concurrent claim committed between the check and the insert: the primary key refuses it.
        const code = (error as { code?: unknown }).code;
        if (code === '23505' || (typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT'))) throw new WorkloadIdentityTaken(workload.issuer, workload.subject, 'another client');
        throw error;
      });
  };
  const toRecord = (row: ClientRow): ClientRecord => ({
    clientId: row.client_id,
    source: row.source as ClientRecord['source'],
    metadata: JSON.parse(row.metadata),
    secretHash: orUndefined(row.secret_hash),
    registrationTokenHash: orUndefined(row.registration_token_hash),
    createdAt: row.created_at,
    lastUsedAt: orUndefined(row.last_used_at),
    agent: row.agent ? JSON.parse(row.agent) : undefined,
    disabledAt: orUndefined(row.disabled_at),
    tokensValidAfter: orUndefined(row.tokens_valid_after),
    fingerprint: orUndefined(row.fingerprint),
    ...(row.wi_issuer && row.wi_subject
      ? { workloadIdentity: { issuer: row.wi_issuer, subject: row.wi_subject, ...(row.wi_claims ? { claims: JSON.parse(row.wi_claims) } : {}) } }
      : {}),
  });
  return {
    async find(clientId) {
      const row = await selectClients().where('clients.client_id', '=', clientId).executeTakeFirst();
      return row && toRecord(row);
    },
    async upsert(client) {
      const values = {
        client_id: client.clientId,
        source: client.source,
        metadata: JSON.stringify(client.metadata),
        secret_hash: client.secretHash ?? null,
        registration_token_hash: client.registrationTokenHash ?? null,
        created_at: client.createdAt,
        last_used_at: client.lastUsedAt ?? null,
        kind: client.agent ? 'agent' : 'client',
        agent: client.agent ? JSON.stringify(client.agent) : null,
        disabled_at: client.disabledAt ?? null,
        tokens_valid_after: client.tokensValidAfter ?? null,
        fingerprint: client.fingerprint ?? null,
      };
      await db.transaction().execute(async (trx) => {
        await trx
          .insertInto('clients')
          .values(values)
          .onConflict((oc) => oc.column('client_id').doUpdateSet({ ...values, created_at: undefined }))
          .execute();
        await writeWorkload(trx, client.clientId, client.workloadIdentity);
      });
    },
    async delete(clientId) {
      return db.transaction().execute(async (trx) => {
        await trx.deleteFrom('workload_identities').where('client_id', '=', clientId).execute();
        const result = await trx.deleteFrom('clients').where('client_id', '=', clientId).executeTakeFirst();
        return Number(result.numDeletedRows) > 0;
      });
    },
    async touch(clientId, at) {
      // The first use stays the first: another instance (its cached record not yet touched) may record it again.
      await db.updateTable('clients').set({ last_used_at: at }).where('client_id', '=', clientId).where('last_used_at', 'is', null).execute();
    },
    async list() {
      const rows = await selectClients().orderBy('clients.created_at').execute();
      return rows.map(toRecord);
    },
    async update(clientId, patch, options = {}) {
      const set: Record<string, unknown> = {};
      if ('metadata' in patch) set.metadata = JSON.stringify(patch.metadata);
      if ('secretHash' in patch) set.secret_hash = patch.secretHash ?? null;
      if ('registrationTokenHash' in patch) set.registration_token_hash = patch.registrationTokenHash ?? null;
      if ('fingerprint' in patch) set.fingerprint = patch.fingerprint ?? null;
      if ('agent' in patch) set.agent = patch.agent ? JSON.stringify(patch.agent) : null;
      if ('disabledAt' in patch) set.disabled_at = patch.disabledAt ?? null;
      if ('tokensValidAfter' in patch) set.tokens_valid_after = patch.tokensValidAfter ?? null;
      if (!('workloadIdentity' in patch)) {
        if (Object.keys(set).length === 0) return false;
        let query = db.updateTable('clients').set(set).where('client_id', '=', clientId);
        if (options.onlyIfEnabled) query = query.where('disabled_at', 'is', null);
        const result = await query.executeTakeFirst();
        return Number(result.numUpdatedRows) > 0;
      }
      return db.transaction().execute(async (trx) => {
        // The row is matched (and locked, PostgreSQL) by a no-op update when nothing else changes.
        let query = trx.updateTable('clients').set(Object.keys(set).length > 0 ? set : { client_id: clientId }).where('client_id', '=', clientId);
        if (options.onlyIfEnabled) query = query.where('disabled_at', 'is', null);
        const result = await query.executeTakeFirst();
        if (Number(result.numUpdatedRows) === 0) return false;
        await writeWorkload(trx, clientId, patch.workloadIdentity);
        return true;
      });
    },
    async findByFingerprint(fingerprint) {
      const row = await selectClients().where('clients.fingerprint', '=', fingerprint).executeTakeFirst();
      return row && toRecord(row);
    },
    async findByWorkload(issuer, subject) {
      const row = await selectClients().where('wi.issuer', '=', issuer).where('wi.subject', '=', subject).executeTakeFirst();
      return row && toRecord(row);
    },
    async countDynamic() {
      const row = await db.selectFrom('clients').select((eb) => eb.fn.countAll<number>().as('n')).where('source', '=', 'dynamic').executeTakeFirstOrThrow();
      return Number(row.n);
    },
    async deleteUnused(before) {
      const result = await db
        .deleteFrom('clients')
        .where('source', '=', 'dynamic')
        .where('last_used_at', 'is', null)
        .where('created_at', '<', before)
        .executeTakeFirst();
      return Number(result.numDeletedRows);
    },
    async listRestricted() {
      const rows = await db
        .selectFrom('clients')
        .select(['client_id', 'disabled_at', 'tokens_valid_after', 'agent'])
        .where((eb) => eb.or([eb('disabled_at', 'is not', null), eb('tokens_valid_after', 'is not', null), eb('agent', 'is not', null)]))
        .execute();
      return rows.map((r) => ({
        clientId: r.client_id,
        disabledAt: orUndefined(r.disabled_at),
        tokensValidAfter: orUndefined(r.tokens_valid_after),
        expiresAt: r.agent ? (JSON.parse(r.agent) as { expiresAt?: number }).expiresAt : undefined,
      }));
    },
  };
}
