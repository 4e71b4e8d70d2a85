import { appendFileSync, existsSync } from 'node:fs';

/**
 * Optional services (PostgreSQL, Redis, Chromium). A test that needs one is skipped with a reason
 * when the service is absent, and fails instead when MANDATE_REQUIRE_SERVICES=1 (set by .ci/run):
 * in CI nothing may be skipped.
 */
export function skipUnless(available: boolean, reason: string): { skip: string | false } {
  if (available) return { skip: false };
  if (process.env.MANDATE_REQUIRE_SERVICES === '1') {
    throw new Error(`required service missing in CI: ${reason}`);
  }
  if (process.env.MANDATE_SKIP_LOG) appendFileSync(process.env.MANDATE_SKIP_LOG, `${reason}\n`);
  return { skip: reason };
}

export const postgresUrl = process.env.DATABASE_URL;
export const redisUrl = process.env.REDIS_URL;
export const chromiumPath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export const needsPostgres = () => skipUnless(Boolean(postgresUrl), 'PostgreSQL tests: DATABASE_URL is not set');
export const needsRedis = () => skipUnless(Boolean(redisUrl), 'Redis tests: REDIS_URL is not set');
export const needsChromium = () => skipUnless(existsSync(chromiumPath), `browser tests: ${chromiumPath} is not installed`);

/**
 * Runs `body` against a PostgreSQL database of its own (created on the DATABASE_URL server, dropped
 * after), for migration tests: a database, not a schema, because Kysely's migrator looks for its
 * tables in every schema it can introspect, so the shared test database's kysely_migration_lock
 * would make it skip creating its own.
 */
export async function withPrivateDatabase(prefix: string, body: (databaseUrl: string) => Promise<void>): Promise<void> {
  const { default: pg } = await import('pg');
  const { randomBytes } = await import('node:crypto');
  const name = `${prefix}_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: postgresUrl });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
    const url = new URL(postgresUrl!);
    url.pathname = `/${name}`;
    await body(url.toString());
  } finally {
    await admin.query(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}
