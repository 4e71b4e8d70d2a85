import type { Selectable, Transaction } from 'kysely';
import { connect, orUndefined, type ConnectOptions, type Db, type Driver, type Tables } from './db.ts';
import { auditStore } from './sql-audit-store.ts';
import { clientStore } from './sql-client-store.ts';
import { federationStore } from './sql-federation-store.ts';
import { TRANSACTION_RETENTION_SECONDS, transactionStore } from './sql-transaction-store.ts';
import { toolPinStore } from './sql-tool-pin-store.ts';
import { totpStore } from './sql-totp-store.ts';
import { rememberedStore } from './sql-remembered-store.ts';
import { migrate } from './migrations.ts';
import type {
  AccessTokenRecord,
  AgreementStore,
  ResourceRecord,
  ResourceStore,
  AuthorizationCodeRecord,
  ConsentStore,
  GrantRecord,
  GrantStore,
  IssuedTokens,
  RefreshTokenRecord,
  SettingStore,
  Store,
  UserRecord,
  UserStore,
} from './types.ts';

function userStore(db: Db): UserStore {
  const toRecord = (row: Selectable<Tables['users']>) => ({
    sub: row.sub,
    username: row.username,
    passwordHash: orUndefined(row.password_hash),
    profile: JSON.parse(row.profile),
    createdAt: row.created_at,
    roles: row.roles ? (JSON.parse(row.roles) as string[]) : undefined,
    source: (orUndefined(row.source) ?? undefined) as UserRecord['source'],
  });
  const lowerEmail = (email: string | undefined) => (typeof email === 'string' && email !== '' ? email.toLowerCase() : null);
  return {
    async findByUsername(username) {
      const row = await db.selectFrom('users').selectAll().where('username', '=', username).executeTakeFirst();
      return row && toRecord(row);
    },
    async findBySub(sub) {
      const row = await db.selectFrom('users').selectAll().where('sub', '=', sub).executeTakeFirst();
      return row && toRecord(row);
    },
    async upsert(user) {
      const values = {
        sub: user.sub,
        username: user.username,
        password_hash: user.passwordHash ?? null,
        profile: JSON.stringify(user.profile),
        created_at: user.createdAt,
        roles: user.roles && user.roles.length > 0 ? JSON.stringify(user.roles) : null,
        source: user.source ?? null,
        email: lowerEmail(user.profile.email),
      };
      await db
        .insertInto('users')
        .values(values)
        .onConflict((oc) => oc.column('sub').doUpdateSet({ ...values, created_at: undefined }))
        .execute();
    },
    async findByEmail(email) {
      const key = lowerEmail(email);
      if (key === null) return [];
      const rows = await db.selectFrom('users').selectAll().where('email', '=', key).orderBy('sub').execute();
      return rows.map(toRecord);
    },
    async list() {
      const rows = await db.selectFrom('users').selectAll().orderBy('username').execute();
      return rows.map(toRecord);
    },
    async delete(sub) {
      // Its second factor and its links go with it: a later user given the same sub must not inherit them.
      await db.deleteFrom('totp_credentials').where('sub', '=', sub).execute();
      await db.deleteFrom('remembered_devices').where('sub', '=', sub).execute();
      await db.deleteFrom('federated_identities').where('sub', '=', sub).execute();
      const result = await db.deleteFrom('users').where('sub', '=', sub).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
  };
}

function grantStore(db: Db, driver: Driver): GrantStore {
  /**
   * Locks the grant row (PostgreSQL; SQLite has one writer at a time anyway) and says whether it is
   * still in force. `revokeGrant` takes the same lock first, so a rotation or redemption either
   * commits before a revocation (which then revokes what it wrote) or sees the grant revoked.
   */
  const grantOpen = async (trx: Transaction<Tables>, grantId: string) => {
    let query = trx.selectFrom('grants').select('revoked_at').where('id', '=', grantId);
    if (driver === 'postgres') query = query.forUpdate();
    const row = await query.executeTakeFirst();
    return row !== undefined && row.revoked_at === null;
  };
  const writeIssued = async (trx: Transaction<Tables>, issued: IssuedTokens) => {
    if (issued.refreshToken) await trx.insertInto('refresh_tokens').values(refreshTokenRow(issued.refreshToken)).execute();
    if (issued.accessToken) await trx.insertInto('access_tokens').values(accessTokenRow(issued.accessToken)).execute();
  };
  const grantFromRow = (row: Selectable<Tables['grants']>): GrantRecord => ({
    id: row.id,
    sub: row.sub,
    clientId: row.client_id,
    resource: row.resource,
    scope: row.scope,
    authTime: orUndefined(row.auth_time),
    acr: orUndefined(row.acr),
    sid: orUndefined(row.sid),
    nonce: orUndefined(row.nonce),
    createdAt: row.created_at,
    expiresAt: row.expires_at,
    revokedAt: orUndefined(row.revoked_at),
  });
  return {
    async createGrant(grant) {
      await db
        .insertInto('grants')
        .values({
          id: grant.id,
          sub: grant.sub,
          client_id: grant.clientId,
          resource: grant.resource,
          scope: grant.scope,
          auth_time: grant.authTime ?? null,
          acr: grant.acr ?? null,
          sid: grant.sid ?? null,
          nonce: grant.nonce ?? null,
          created_at: grant.createdAt,
          expires_at: grant.expiresAt,
          revoked_at: null,
        })
        .execute();
    },
    async findGrant(id) {
      const row = await db.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst();
      return row && grantFromRow(row);
    },
    async revokeGrant(id, at) {
      await db.transaction().execute(async (trx) => {
        await trx.updateTable('grants').set({ revoked_at: at }).where('id', '=', id).where('revoked_at', 'is', null).execute();
        await trx.updateTable('refresh_tokens').set({ revoked_at: at }).where('grant_id', '=', id).where('revoked_at', 'is', null).execute();
        await trx.updateTable('access_tokens').set({ revoked_at: at }).where('grant_id', '=', id).where('revoked_at', 'is', null).execute();
      });
    },
    async createCode(code: AuthorizationCodeRecord) {
      await db
        .insertInto('authorization_codes')
        .values({
          code_hash: code.codeHash,
          grant_id: code.grantId,
          client_id: code.clientId,
          redirect_uri: code.redirectUri,
          code_challenge: code.codeChallenge,
          scope: code.scope,
          resource: code.resource,
          expires_at: code.expiresAt,
          consumed_at: null,
          dpop_jkt: code.dpopJkt ?? null,
        })
        .execute();
    },
    async findCode(codeHash) {
      const row = await db.selectFrom('authorization_codes').selectAll().where('code_hash', '=', codeHash).executeTakeFirst();
      return row && codeFromRow(row);
    },
    async redeemCode(codeHash, at, { grantId, issued }) {
      return db.transaction().execute(async (trx) => {
        if (!(await grantOpen(trx, grantId))) return 'revoked';
        const updated = await trx
          .updateTable('authorization_codes')
          .set({ consumed_at: at })
          .where('code_hash', '=', codeHash)
          .where('consumed_at', 'is', null)
          .executeTakeFirst();
        if (Number(updated.numUpdatedRows) !== 1) return 'replayed';
        await writeIssued(trx, issued);
        return 'redeemed';
      });
    },
    async consumeCode(codeHash, at) {
      // The conditional update is the atomic step: of two concurrent redemptions only one wins.
      const updated = await db
        .updateTable('authorization_codes')
        .set({ consumed_at: at })
        .where('code_hash', '=', codeHash)
        .where('consumed_at', 'is', null)
        .executeTakeFirst();
      const row = await db.selectFrom('authorization_codes').selectAll().where('code_hash', '=', codeHash).executeTakeFirst();
      if (!row) return undefined;
      return { firstUse: Number(updated.numUpdatedRows) === 1, code: codeFromRow(row) };
    },
    async createRefreshToken(token: RefreshTokenRecord) {
      await db.insertInto('refresh_tokens').values(refreshTokenRow(token)).execute();
    },
    async findRefreshToken(tokenHash) {
      const row = await db.selectFrom('refresh_tokens').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst();
      if (!row) return undefined;
      return {
        tokenHash: row.token_hash,
        grantId: row.grant_id,
        clientId: row.client_id,
        scope: row.scope,
        createdAt: row.created_at,
        expiresAt: row.expires_at,
        rotatedAt: orUndefined(row.rotated_at),
        revokedAt: orUndefined(row.revoked_at),
        ...(row.dpop_jkt !== null ? { dpopJkt: row.dpop_jkt } : {}),
      };
    },
    async rotateRefreshToken(tokenHash, at, { grantId, reuseSince, issued }) {
      return db.transaction().execute(async (trx) => {
        if (!(await grantOpen(trx, grantId))) return 'revoked';
        const updated = await trx
          .updateTable('refresh_tokens')
          .set({ rotated_at: at })
          .where('token_hash', '=', tokenHash)
          .where('rotated_at', 'is', null)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        let outcome: 'rotated' | 'reused' = 'rotated';
        if (Number(updated.numUpdatedRows) !== 1) {
          const row = await trx.selectFrom('refresh_tokens').select(['rotated_at', 'revoked_at']).where('token_hash', '=', tokenHash).executeTakeFirst();
          if (!row || row.revoked_at !== null) return 'revoked';
          if (row.rotated_at === null || row.rotated_at < reuseSince) return 'replayed';
          outcome = 'reused';
        }
        // A bound refresh token's replacement stays bound to the same key (RFC 9449 §5).
        if (issued.refreshToken && issued.refreshToken.dpopJkt === undefined) {
          const bound = await trx.selectFrom('refresh_tokens').select('dpop_jkt').where('token_hash', '=', tokenHash).executeTakeFirst();
          if (bound?.dpop_jkt) issued = { ...issued, refreshToken: { ...issued.refreshToken, dpopJkt: bound.dpop_jkt } };
        }
        await writeIssued(trx, issued);
        return outcome;
      });
    },
    async recordAccessToken(token: AccessTokenRecord) {
      await db.insertInto('access_tokens').values(accessTokenRow(token)).execute();
    },
    async recordAccessTokens(tokens) {
      if (tokens.length === 0) return;
      await db
        .insertInto('access_tokens')
        .values(tokens.map(accessTokenRow))
        .onConflict((oc) => oc.column('jti').doNothing())
        .execute();
    },
    async findAccessToken(jti) {
      const row = await db.selectFrom('access_tokens').selectAll().where('jti', '=', jti).executeTakeFirst();
      return row && accessTokenFromRow(row);
    },
    async findAccessTokenByHash(tokenHash) {
      const row = await db.selectFrom('access_tokens').selectAll().where('token_hash', '=', tokenHash).executeTakeFirst();
      return row && accessTokenFromRow(row);
    },
    async revokeByClient(clientId, at) {
      await db.transaction().execute(async (trx) => {
        await trx.updateTable('grants').set({ revoked_at: at }).where('client_id', '=', clientId).where('revoked_at', 'is', null).execute();
        await trx.updateTable('refresh_tokens').set({ revoked_at: at }).where('client_id', '=', clientId).where('revoked_at', 'is', null).execute();
        await trx.updateTable('access_tokens').set({ revoked_at: at }).where('client_id', '=', clientId).where('revoked_at', 'is', null).execute();
      });
    },
    async listRevokedAccessTokens(now, since = 0) {
      const rows = await db
        .selectFrom('access_tokens')
        .select(['jti', 'expires_at', 'revoked_at'])
        .where('revoked_at', '>=', since)
        .where('expires_at', '>', now)
        .orderBy('revoked_at')
        .execute();
      return rows.map((r) => ({ jti: r.jti, expiresAt: r.expires_at, revokedAt: r.revoked_at! }));
    },
    async listGrantsBySub(sub) {
      const rows = await db.selectFrom('grants').selectAll().where('sub', '=', sub).orderBy('created_at', 'desc').orderBy('id').execute();
      return rows.map(grantFromRow);
    },
    async listRevokedGrants(since) {
      const rows = await db.selectFrom('grants').select(['id', 'revoked_at']).where('revoked_at', '>=', since).orderBy('revoked_at').execute();
      return rows.map((r) => ({ id: r.id, revokedAt: r.revoked_at! }));
    },
    async revokeAccessToken(token, at) {
      await db
        .insertInto('access_tokens')
        .values({ jti: token.jti, grant_id: token.grantId ?? null, client_id: token.clientId, expires_at: token.expiresAt, revoked_at: at })
        .onConflict((oc) => oc.column('jti').doUpdateSet({ revoked_at: at }))
        .execute();
    },
  };
}

function refreshTokenRow(token: RefreshTokenRecord): Selectable<Tables['refresh_tokens']> {
  return {
    token_hash: token.tokenHash,
    grant_id: token.grantId,
    client_id: token.clientId,
    scope: token.scope,
    created_at: token.createdAt,
    expires_at: token.expiresAt,
    rotated_at: null,
    revoked_at: null,
    dpop_jkt: token.dpopJkt ?? null,
  };
}

function codeFromRow(row: Selectable<Tables['authorization_codes']>): AuthorizationCodeRecord {
  return {
    codeHash: row.code_hash,
    grantId: row.grant_id,
    clientId: row.client_id,
    redirectUri: row.redirect_uri,
    codeChallenge: row.code_challenge,
    scope: row.scope,
    resource: row.resource,
    expiresAt: row.expires_at,
    consumedAt: orUndefined(row.consumed_at),
    ...(row.dpop_jkt !== null ? { dpopJkt: row.dpop_jkt } : {}),
  };
}

function accessTokenRow(token: AccessTokenRecord): Selectable<Tables['access_tokens']> {
  return {
    jti: token.jti,
    grant_id: token.grantId ?? null,
    client_id: token.clientId,
    expires_at: token.expiresAt,
    revoked_at: token.revokedAt ?? null,
    token_hash: token.tokenHash ?? null,
    claims: token.claims ? JSON.stringify(token.claims) : null,
  };
}

function accessTokenFromRow(row: Selectable<Tables['access_tokens']>): AccessTokenRecord {
  return {
    jti: row.jti,
    grantId: orUndefined(row.grant_id),
    clientId: row.client_id,
    expiresAt: row.expires_at,
    revokedAt: orUndefined(row.revoked_at),
    tokenHash: orUndefined(row.token_hash),
    claims: row.claims ? JSON.parse(row.claims) : undefined,
  };
}

function agreementStore(db: Db): AgreementStore {
  return {
    async find(sub, agreementId) {
      const row = await db.selectFrom('agreement_acceptances').selectAll().where('sub', '=', sub).where('agreement_id', '=', agreementId).executeTakeFirst();
      return row && { sub: row.sub, agreementId: row.agreement_id, version: row.version, acceptedAt: row.accepted_at };
    },
    async accept(a) {
      const values = { sub: a.sub, agreement_id: a.agreementId, version: a.version, accepted_at: a.acceptedAt };
      await db
        .insertInto('agreement_acceptances')
        .values(values)
        .onConflict((oc) => oc.columns(['sub', 'agreement_id']).doUpdateSet({ version: a.version, accepted_at: a.acceptedAt }))
        .execute();
    },
  };
}

function resourceStore(db: Db): ResourceStore {
  return {
    async list() {
      const rows = await db.selectFrom('resources').selectAll().orderBy('id').execute();
      return rows.map((r) => ({ id: r.id, definition: JSON.parse(r.definition), source: r.source as ResourceRecord['source'], updatedAt: r.updated_at }));
    },
    async upsert(resource) {
      const values = { id: resource.id, definition: JSON.stringify(resource.definition), source: resource.source, updated_at: resource.updatedAt };
      await db
        .insertInto('resources')
        .values(values)
        .onConflict((oc) => oc.column('id').doUpdateSet({ definition: values.definition, source: values.source, updated_at: values.updated_at }))
        .execute();
    },
    async delete(id) {
      const result = await db.deleteFrom('resources').where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
  };
}

function settingStore(db: Db): SettingStore {
  return {
    async list(kind) {
      const rows = await db.selectFrom('settings').selectAll().where('kind', '=', kind).orderBy('id').execute();
      return rows.map((r) => ({ kind, id: r.id, definition: JSON.parse(r.definition), updatedAt: Number(r.updated_at) }));
    },
    async upsert(setting) {
      const values = { kind: setting.kind, id: setting.id, definition: JSON.stringify(setting.definition), updated_at: setting.updatedAt };
      await db
        .insertInto('settings')
        .values(values)
        .onConflict((oc) => oc.columns(['kind', 'id']).doUpdateSet({ definition: values.definition, updated_at: values.updated_at }))
        .execute();
    },
    async delete(kind, id) {
      const result = await db.deleteFrom('settings').where('kind', '=', kind).where('id', '=', id).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
  };
}

function consentStore(db: Db): ConsentStore {
  return {
    async find(sub, clientId, resource) {
      const row = await db
        .selectFrom('consents')
        .selectAll()
        .where('sub', '=', sub)
        .where('client_id', '=', clientId)
        .where('resource', '=', resource)
        .executeTakeFirst();
      if (!row) return undefined;
      const ticked = row.high_risk_ticked ?? undefined;
      return { sub: row.sub, clientId: row.client_id, resource: row.resource, scope: row.scope, ...(ticked !== undefined ? { highRiskTicked: ticked } : {}), createdAt: row.created_at };
    },
    async upsert(consent) {
      const ticked = consent.highRiskTicked ?? null;
      await db
        .insertInto('consents')
        .values({ sub: consent.sub, client_id: consent.clientId, resource: consent.resource, scope: consent.scope, high_risk_ticked: ticked, created_at: consent.createdAt })
        .onConflict((oc) => oc.columns(['sub', 'client_id', 'resource']).doUpdateSet({ scope: consent.scope, high_risk_ticked: ticked, created_at: consent.createdAt }))
        .execute();
    },
    async listBySub(sub) {
      const rows = await db.selectFrom('consents').selectAll().where('sub', '=', sub).orderBy('client_id').orderBy('resource').execute();
      return rows.map((row) => ({ sub: row.sub, clientId: row.client_id, resource: row.resource, scope: row.scope, createdAt: row.created_at }));
    },
    async delete(sub, clientId, resource) {
      const result = await db.deleteFrom('consents').where('sub', '=', sub).where('client_id', '=', clientId).where('resource', '=', resource).executeTakeFirst();
      return Number(result.numDeletedRows) > 0;
    },
  };
}

export interface SqlStore extends Store {
  db: Db;
  driver: Driver;
}

/**
 * The store over a database, without touching it yet: connections open on first use, so a server
 * can be built while the database is down and call `migrate()` once it is back.
 */
export function createSqlStore(options: ConnectOptions): SqlStore & { migrate(): Promise<void> } {
  const db = connect(options);
  return {
    db,
    driver: options.driver,
    migrate: () => migrate(db as never, options.driver),
    clients: clientStore(db),
    users: userStore(db),
    grants: grantStore(db, options.driver),
    consents: consentStore(db),
    agreements: agreementStore(db),
    resources: resourceStore(db),
    settings: settingStore(db),
    transactions: transactionStore(db),
    toolPins: toolPinStore(db),
    totp: totpStore(db),
    remembered: rememberedStore(db),
    federation: federationStore(db),
    audit: auditStore(db, options.driver),
    async sweep(now) {
      await db.deleteFrom('authorization_codes').where('expires_at', '<', now).execute();
      await db.deleteFrom('refresh_tokens').where('expires_at', '<', now).execute();
      await db.deleteFrom('access_tokens').where('expires_at', '<', now).execute();
      await db.deleteFrom('grants').where('expires_at', '<', now).execute();
      await db.deleteFrom('remembered_devices').where('expires_at', '<', now).execute();
      await db.deleteFrom('transactions').where('expires_at', '<', now - TRANSACTION_RETENTION_SECONDS).execute();
    },
    async close() {
      await db.destroy();
    },
  };
}

/** Opens the database, runs migrations and returns the store. */
export async function openSqlStore(options: ConnectOptions): Promise<SqlStore> {
  const { migrate: run, ...store } = createSqlStore(options);
  await run();
  return store;
}
