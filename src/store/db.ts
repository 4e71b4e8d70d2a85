import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'libsql';
import pg from 'pg';
import { Kysely, PostgresDialect, SqliteDialect, type Generated } from 'kysely';

/** Table shapes. Times are epoch seconds; JSON is stored as text so both engines read it alike. */
export interface Tables {
  clients: {
    client_id: string;
    source: string;
    metadata: string;
    secret_hash: string | null;
    registration_token_hash: string | null;
    created_at: number;
    last_used_at: number | null;
    kind: Generated<string>;
    agent: string | null;
    disabled_at: number | null;
    fingerprint: string | null;
    tokens_valid_after: number | null;
  };
  users: {
    sub: string;
    username: string;
    password_hash: string | null;
    profile: string;
    created_at: number;
    roles: string | null;
    source: string | null;
    email: string | null;
  };
  grants: {
    id: string;
    sub: string;
    client_id: string;
    resource: string;
    scope: string;
    auth_time: number | null;
    acr: string | null;
    sid: string | null;
    nonce: string | null;
    created_at: number;
    expires_at: number;
    revoked_at: number | null;
  };
  authorization_codes: {
    code_hash: string;
    grant_id: string;
    client_id: string;
    redirect_uri: string;
    code_challenge: string;
    scope: string;
    resource: string;
    expires_at: number;
    consumed_at: number | null;
    dpop_jkt: string | null;
  };
  refresh_tokens: {
    token_hash: string;
    grant_id: string;
    client_id: string;
    scope: string;
    created_at: number;
    expires_at: number;
    rotated_at: number | null;
    revoked_at: number | null;
    dpop_jkt: string | null;
  };
  access_tokens: {
    jti: string;
    grant_id: string | null;
    client_id: string;
    expires_at: number;
    revoked_at: number | null;
    token_hash: string | null;
    claims: string | null;
  };
  resources: {
    id: string;
    definition: string;
    source: string;
    updated_at: number;
  };
  agreement_acceptances: {
    sub: string;
    agreement_id: string;
    version: number;
    accepted_at: number;
  };
  consents: {
    sub: string;
    client_id: string;
    resource: string;
    scope: string;
    high_risk_ticked: string | null;
    created_at: number;
  };
  settings: {
    kind: string;
    id: string;
    definition: string;
    updated_at: number;
  };
  transactions: {
    id: string;
    status: string;
    sub: string;
    client_id: string;
    act: string;
    resource: string;
    tool: string;
    arguments_hash: string;
    summary: string;
    details: string | null;
    requested_by: string;
    created_at: number;
    expires_at: number;
    decided_at: number | null;
    decided_how: string | null;
    used_at: number | null;
  };
  tool_pins: {
    resource: string;
    upstream: string;
    tool: string;
    status: string;
    approved_hash: string | null;
    approved_definition: string | null;
    pending_hash: string | null;
    pending_definition: string | null;
    first_seen: number;
    changed_at: number | null;
    approved_by: string | null;
    approved_at: number | null;
    reported_by: string;
  };
  totp_credentials: {
    sub: string;
    secret: string;
    created_at: number;
    confirmed_at: number | null;
    last_step: number | null;
  };
  remembered_devices: {
    id: string;
    sub: string;
    token_hash: string;
    previous_hash: string | null;
    rotated_at: number | null;
    device_hash: string;
    auth_time: number;
    amr: string;
    address_prefix: string | null;
    user_agent: string | null;
    country: string | null;
    created_at: number;
    last_used_at: number;
    expires_at: number;
  };
  federated_identities: {
    issuer: string;
    subject: string;
    sub: string;
    created_at: number;
    last_used_at: number | null;
  };
  workload_identities: {
    issuer: string;
    subject: string;
    client_id: string;
    claims: string | null;
  };
  audit_events: {
    id: Generated<number>;
    at: number;
    type: string;
    outcome: string;
    client_id: string | null;
    sub: string | null;
    error: string | null;
    reason: string | null;
    data: string | null;
  };
}

export type Db = Kysely<Tables>;
export type Driver = 'sqlite' | 'postgres';

export interface ConnectOptions {
  driver: Driver;
  /** SQLite file path (or ':memory:'). */
  sqliteFile?: string;
  /** PostgreSQL connection string. */
  databaseUrl?: string;
  /** Told about connection errors that no request is waiting for (PostgreSQL restarting, say). */
  onConnectionError?: (error: Error) => void;
}

// int8 (bigint) columns hold epoch seconds and ids, well inside Number's exact range.
pg.types.setTypeParser(20, (value) => Number(value));

export function connect(options: ConnectOptions): Db {
  if (options.driver === 'postgres') {
    if (!options.databaseUrl) throw new Error('postgres storage needs DATABASE_URL');
    // A bounded connect wait: a request fails (503) rather than hangs when the server is unreachable.
    const pool = new pg.Pool({ connectionString: options.databaseUrl, max: 10, connectionTimeoutMillis: 5_000 });
    const report = (error: Error) => options.onConnectionError?.(error);
    // Without these listeners a server restart kills the process: node-postgres emits 'error' on
    // the pool for idle clients and on a checked-out client (inside a transaction) that loses its
    // connection, and an unheard 'error' event throws. The pool drops broken clients itself; the
    // query in flight fails and its request is answered 503.
    pool.on('error', report);
    pool.on('connect', (client) => client.on('error', report));
    return new Kysely<Tables>({ dialect: new PostgresDialect({ pool }) });
  }
  const file = options.sqliteFile ?? ':memory:';
  if (file !== ':memory:') mkdirSync(dirname(file), { recursive: true });
  const database = new Database(file);
  // WAL lets readers proceed while the single writer commits; NORMAL sync is durable in WAL mode
  // except for the last transactions before a power loss.
  database.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;');
  // Kysely prepares every query anew; reusing prepared statements by SQL text saves the parse
  // (libsql's prepare was 8 % of the token endpoint). Kysely's SQL has placeholders, so the
  // number of distinct texts is small; the bound keeps an unusual caller from growing it forever.
  const statements = new Map<string, ReturnType<typeof database.prepare>>();
  const prepare = database.prepare.bind(database);
  database.prepare = ((sql: string) => {
    let statement = statements.get(sql);
    if (!statement) {
      statement = prepare(sql);
      if (statements.size < 1000) statements.set(sql, statement);
    }
    return statement;
  }) as typeof database.prepare;
  // libsql implements the better-sqlite3 API that Kysely's SqliteDialect expects.
  return new Kysely<Tables>({ dialect: new SqliteDialect({ database: database as never }) });
}

/** A nullable column as an optional field. */
export const orUndefined = <T>(value: T | null): T | undefined => (value === null ? undefined : value);
