import { Migrator, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import type { Driver } from './db.ts';

/** Migrations, in order. Never edit one that has shipped; add the next. */
function migrations(driver: Driver): Record<string, Migration> {
  const bigint = 'bigint' as const;
  return {
    '0001_initial': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('clients')
          .addColumn('client_id', 'text', (c) => c.primaryKey())
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('metadata', 'text', (c) => c.notNull())
          .addColumn('secret_hash', 'text')
          .addColumn('registration_token_hash', 'text')
          .addColumn('created_at', bigint, (c) => c.notNull())
          .addColumn('last_used_at', bigint)
          .execute();
        await db.schema
          .createTable('users')
          .addColumn('sub', 'text', (c) => c.primaryKey())
          .addColumn('username', 'text', (c) => c.notNull().unique())
          .addColumn('password_hash', 'text')
          .addColumn('profile', 'text', (c) => c.notNull())
          .addColumn('created_at', bigint, (c) => c.notNull())
          .execute();
        await db.schema
          .createTable('grants')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('sub', 'text', (c) => c.notNull())
          .addColumn('client_id', 'text', (c) => c.notNull())
          .addColumn('resource', 'text', (c) => c.notNull())
          .addColumn('scope', 'text', (c) => c.notNull())
          .addColumn('auth_time', bigint)
          .addColumn('acr', 'text')
          .addColumn('sid', 'text')
          .addColumn('nonce', 'text')
          .addColumn('created_at', bigint, (c) => c.notNull())
          .addColumn('expires_at', bigint, (c) => c.notNull())
          .addColumn('revoked_at', bigint)
          .execute();
        await db.schema
          .createTable('authorization_codes')
          .addColumn('code_hash', 'text', (c) => c.primaryKey())
          .addColumn('grant_id', 'text', (c) => c.notNull())
          .addColumn('client_id', 'text', (c) => c.notNull())
          .addColumn('redirect_uri', 'text', (c) => c.notNull())
          .addColumn('code_challenge', 'text', (c) => c.notNull())
          .addColumn('scope', 'text', (c) => c.notNull())
          .addColumn('resource', 'text', (c) => c.notNull())
          .addColumn('expires_at', bigint, (c) => c.notNull())
          .addColumn('consumed_at', bigint)
          .execute();
        await db.schema
          .createTable('refresh_tokens')
          .addColumn('token_hash', 'text', (c) => c.primaryKey())
          .addColumn('grant_id', 'text', (c) => c.notNull())
          .addColumn('client_id', 'text', (c) => c.notNull())
          .addColumn('scope', 'text', (c) => c.notNull())
          .addColumn('created_at', bigint, (c) => c.notNull())
          .addColumn('expires_at', bigint, (c) => c.notNull())
          .addColumn('rotated_at', bigint)
          .addColumn('revoked_at', bigint)
          .execute();
        await db.schema.createIndex('refresh_tokens_grant').on('refresh_tokens').column('grant_id').execute();
        await db.schema
          .createTable('access_tokens')
          .addColumn('jti', 'text', (c) => c.primaryKey())
          .addColumn('grant_id', 'text')
          .addColumn('client_id', 'text', (c) => c.notNull())
          .addColumn('expires_at', bigint, (c) => c.notNull())
          .addColumn('revoked_at', bigint)
          .execute();
        await db.schema.createIndex('access_tokens_grant').on('access_tokens').column('grant_id').execute();
        await db.schema
          .createTable('consents')
          .addColumn('sub', 'text', (c) => c.notNull())
          .addColumn('client_id', 'text', (c) => c.notNull())
          .addColumn('resource', 'text', (c) => c.notNull())
          .addColumn('scope', 'text', (c) => c.notNull())
          .addColumn('created_at', bigint, (c) => c.notNull())
          .addPrimaryKeyConstraint('consents_pk', ['sub', 'client_id', 'resource'])
          .execute();
        await db.schema
          .createTable('audit_events')
          .addColumn('id', driver === 'postgres' ? 'bigserial' : 'integer', (c) =>
            driver === 'postgres' ? c.primaryKey() : c.primaryKey().autoIncrement(),
          )
          .addColumn('at', bigint, (c) => c.notNull())
          .addColumn('type', 'text', (c) => c.notNull())
          .addColumn('outcome', 'text', (c) => c.notNull())
          .addColumn('client_id', 'text')
          .addColumn('sub', 'text')
          .addColumn('error', 'text')
          .addColumn('reason', 'text')
          .addColumn('data', 'text')
          .execute();
        await db.schema.createIndex('audit_events_type').on('audit_events').columns(['type', 'at']).execute();
      },
    },
    '0002_agents_agreements_opaque_tokens': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('clients').addColumn('kind', 'text', (c) => c.notNull().defaultTo('client')).execute();
        await db.schema.alterTable('clients').addColumn('agent', 'text').execute();
        await db.schema.alterTable('clients').addColumn('disabled_at', bigint).execute();
        await db.schema.alterTable('clients').addColumn('fingerprint', 'text').execute();
        await db.schema.createIndex('clients_fingerprint').on('clients').column('fingerprint').execute();
        await db.schema
          .createTable('agreement_acceptances')
          .addColumn('sub', 'text', (c) => c.notNull())
          .addColumn('agreement_id', 'text', (c) => c.notNull())
          .addColumn('version', 'integer', (c) => c.notNull())
          .addColumn('accepted_at', bigint, (c) => c.notNull())
          .addPrimaryKeyConstraint('agreement_acceptances_pk', ['sub', 'agreement_id'])
          .execute();
        await db.schema.alterTable('access_tokens').addColumn('token_hash', 'text').execute();
        await db.schema.alterTable('access_tokens').addColumn('claims', 'text').execute();
        await db.schema.createIndex('access_tokens_hash').on('access_tokens').column('token_hash').execute();
        await db.schema.createIndex('access_tokens_client').on('access_tokens').column('client_id').execute();
        await db.schema.createIndex('grants_client').on('grants').column('client_id').execute();
      },
    },
    '0003_resources': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('resources')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('definition', 'text', (c) => c.notNull())
          .addColumn('source', 'text', (c) => c.notNull())
          .addColumn('updated_at', bigint, (c) => c.notNull())
          .execute();
      },
    },
    '0004_client_token_cutoff': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('clients').addColumn('tokens_valid_after', bigint).execute();
      },
    },
    // The revocation list is read by `revoked_at` (every gateway polls it with `since`): without
    // these, each poll scans every access token and grant.
    '0005_revocation_indexes': {
      async up(db: Kysely<unknown>) {
        await db.schema.createIndex('access_tokens_revoked').on('access_tokens').column('revoked_at').execute();
        await db.schema.createIndex('grants_revoked').on('grants').column('revoked_at').execute();
      },
    },
    // The high-risk scopes the user ticked: a remembered consent skips the page only while they
    // cover what this client needs ticked. Old rows stay null: nothing ticked, so asked again.
    '0006_consent_high_risk_ticked': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('consents').addColumn('high_risk_ticked', 'text').execute();
      },
    },
    // Admins are users with roles (issue 13); the admin API queries the audit log by subject,
    // client and time, lists a user's grants and consents, and keeps the agreements and
    // authentication policies it adds.
    '0007_admin_plane': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('users').addColumn('roles', 'text').execute();
        await db.schema.alterTable('users').addColumn('source', 'text').execute();
        await db.schema.createIndex('audit_events_at').on('audit_events').column('at').execute();
        await db.schema.createIndex('audit_events_sub').on('audit_events').columns(['sub', 'id']).execute();
        await db.schema.createIndex('audit_events_client').on('audit_events').columns(['client_id', 'id']).execute();
        await db.schema.createIndex('grants_sub').on('grants').column('sub').execute();
        await db.schema.createIndex('consents_sub').on('consents').column('sub').execute();
        await db.schema
          .createTable('settings')
          .addColumn('kind', 'text', (c) => c.notNull())
          .addColumn('id', 'text', (c) => c.notNull())
          .addColumn('definition', 'text', (c) => c.notNull())
          .addColumn('updated_at', bigint, (c) => c.notNull())
          .addPrimaryKeyConstraint('settings_pk', ['kind', 'id'])
          .execute();
      },
    },
    // High-risk actions (issue 14, docs/high-risk-actions.md): one tool call waiting for its user's
    // approval. `status` moves pending → approved|denied, approved → used, each by one conditional
    // UPDATE; expiry is read from expires_at, never written.
    '0008_transactions': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('transactions')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('sub', 'text', (c) => c.notNull())
          .addColumn('client_id', 'text', (c) => c.notNull())
          .addColumn('act', 'text', (c) => c.notNull())
          .addColumn('resource', 'text', (c) => c.notNull())
          .addColumn('tool', 'text', (c) => c.notNull())
          .addColumn('arguments_hash', 'text', (c) => c.notNull())
          .addColumn('summary', 'text', (c) => c.notNull())
          .addColumn('details', 'text')
          .addColumn('requested_by', 'text', (c) => c.notNull())
          .addColumn('created_at', bigint, (c) => c.notNull())
          .addColumn('expires_at', bigint, (c) => c.notNull())
          .addColumn('decided_at', bigint)
          .addColumn('decided_how', 'text')
          .addColumn('used_at', bigint)
          .execute();
        await db.schema.createIndex('transactions_sub').on('transactions').columns(['sub', 'status']).execute();
        await db.schema.createIndex('transactions_expires').on('transactions').column('expires_at').execute();
      },
    },
    // TOTP (RFC 6238) as an optional second factor (docs/totp.md): one row per user, the secret
    // sealed with AES-256-GCM (never in clear), pending until a first code confirms it; the last
    // accepted time step refuses a code used twice.
    '0009_totp': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('totp_credentials')
          .addColumn('sub', 'text', (c) => c.primaryKey())
          .addColumn('secret', 'text', (c) => c.notNull())
          .addColumn('created_at', bigint, (c) => c.notNull())
          .addColumn('confirmed_at', bigint)
          .addColumn('last_step', bigint)
          .execute();
      },
    },
    // Remembered sign-ins ("Keep me signed in", docs/browser-sessions.md): the cookie's token only
    // by hash, the previous hash to detect a replayed rotated value, bound to a device cookie's hash.
    '0010_remembered_devices': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('remembered_devices')
          .addColumn('id', 'text', (c) => c.primaryKey())
          .addColumn('sub', 'text', (c) => c.notNull())
          .addColumn('token_hash', 'text', (c) => c.notNull())
          .addColumn('previous_hash', 'text')
          .addColumn('rotated_at', bigint)
          .addColumn('device_hash', 'text', (c) => c.notNull())
          .addColumn('auth_time', bigint, (c) => c.notNull())
          .addColumn('amr', 'text', (c) => c.notNull())
          .addColumn('address_prefix', 'text')
          .addColumn('user_agent', 'text')
          .addColumn('country', 'text')
          .addColumn('created_at', bigint, (c) => c.notNull())
          .addColumn('last_used_at', bigint, (c) => c.notNull())
          .addColumn('expires_at', bigint, (c) => c.notNull())
          .execute();
        await db.schema.createIndex('remembered_devices_sub').on('remembered_devices').column('sub').execute();
        await db.schema.createIndex('remembered_devices_expires').on('remembered_devices').column('expires_at').execute();
      },
    },
    // Issue 17: DPoP binding of codes (RFC 9449 §10 dpop_jkt) and public clients' refresh tokens
    // (§5), users found by email (ID-JAG account linking), identities of other issuers linked to
    // local users, and platform (workload) identities of clients, one client each.
    '0011_dpop_federation': {
      async up(db: Kysely<unknown>) {
        await db.schema.alterTable('authorization_codes').addColumn('dpop_jkt', 'text').execute();
        await db.schema.alterTable('refresh_tokens').addColumn('dpop_jkt', 'text').execute();
        // A lower-cased copy of profile.email, kept by users.upsert.
        await db.schema.alterTable('users').addColumn('email', 'text').execute();
        await db.schema.createIndex('users_email').on('users').column('email').execute();
        const email = driver === 'postgres' ? sql`lower(profile::json->>'email')` : sql`lower(json_extract(profile, '$.email'))`;
        await sql`update users set email = ${email}`.execute(db);
        await db.schema
          .createTable('federated_identities')
          .addColumn('issuer', 'text', (c) => c.notNull())
          .addColumn('subject', 'text', (c) => c.notNull())
          .addColumn('sub', 'text', (c) => c.notNull())
          .addColumn('created_at', bigint, (c) => c.notNull())
          .addColumn('last_used_at', bigint)
          .addPrimaryKeyConstraint('federated_identities_pk', ['issuer', 'subject'])
          .execute();
        await db.schema.createIndex('federated_identities_sub').on('federated_identities').column('sub').execute();
        await db.schema
          .createTable('workload_identities')
          .addColumn('issuer', 'text', (c) => c.notNull())
          .addColumn('subject', 'text', (c) => c.notNull())
          .addColumn('client_id', 'text', (c) => c.notNull())
          // The exact-match extra claims (JSON object), or null.
          .addColumn('claims', 'text')
          .addPrimaryKeyConstraint('workload_identities_pk', ['issuer', 'subject'])
          .execute();
        await db.schema.createIndex('workload_identities_client').on('workload_identities').column('client_id').execute();
      },
    },
    // Issue 18, tool pinning (docs/gateway.md "Tool pinning"): per protected resource (a gateway
    // route's `resource`), upstream and tool, the approved definition's hash and JSON, and the one
    // waiting for an admin's decision. Every gateway instance asks the AS, so all agree.
    '0012_tool_pins': {
      async up(db: Kysely<unknown>) {
        await db.schema
          .createTable('tool_pins')
          .addColumn('resource', 'text', (c) => c.notNull())
          .addColumn('upstream', 'text', (c) => c.notNull().defaultTo(''))
          .addColumn('tool', 'text', (c) => c.notNull())
          // pinned | changed | new | rejected
          .addColumn('status', 'text', (c) => c.notNull())
          .addColumn('approved_hash', 'text')
          .addColumn('approved_definition', 'text')
          .addColumn('pending_hash', 'text')
          .addColumn('pending_definition', 'text')
          .addColumn('first_seen', bigint, (c) => c.notNull())
          .addColumn('changed_at', bigint)
          .addColumn('approved_by', 'text')
          .addColumn('approved_at', bigint)
          .addColumn('reported_by', 'text', (c) => c.notNull())
          .addPrimaryKeyConstraint('tool_pins_pk', ['resource', 'upstream', 'tool'])
          .execute();
        await db.schema.createIndex('tool_pins_status').on('tool_pins').columns(['status', 'changed_at']).execute();
      },
    },
  };
}

class StaticProvider implements MigrationProvider {
  constructor(private readonly all: Record<string, Migration>) {}
  async getMigrations(): Promise<Record<string, Migration>> {
    return this.all;
  }
}

/**
 * Brings the schema up to date (or up to `target`, a migration name: tests of a migration over
 * existing rows); several processes starting at once are serialized by Kysely's lock.
 */
export async function migrate(db: Kysely<unknown>, driver: Driver, target?: string): Promise<void> {
  const migrator = new Migrator({ db, provider: new StaticProvider(migrations(driver)) });
  const { error, results } = target === undefined ? await migrator.migrateToLatest() : await migrator.migrateTo(target);
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) {
    throw new Error(`database migration failed${failed ? ` at ${failed.migrationName}` : ''}: ${String(error)}`, { cause: error });
  }
}

export { sql };
