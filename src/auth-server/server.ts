import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import pino, { type Logger } from 'pino';
import type { AuthServerConfig } from '../config/schema.ts';
import { createSqlStore, type SqlStore } from '../store/sql-store.ts';
import { UNAVAILABLE_RETRY_AFTER_SECONDS, unavailableReason } from '../store/unavailable.ts';
import { memoryCache, onCacheFull } from '../store/memory-cache.ts';
import { redisCache } from '../store/redis-cache.ts';
import { cachedClientStore } from '../store/cached-clients.ts';
import { OAuthError } from '../core/errors.ts';
import { createAuthServerApp, temporarilyUnavailable } from './app.ts';
import { AuditLog } from './audit.ts';
import { stopLogoutDeliveries } from './backchannel-logout.ts';
import { BatchWriter } from './batch-writer.ts';
import type { AccessTokenRecord } from '../store/types.ts';
import { adminTokenFor, seedFromConfig } from './bootstrap.ts';
import { createContext, type ServerContext } from './context.ts';
import { KeyManager } from './keys.ts';
import { limiterFactory } from './limits.ts';
import { totpSealKey } from './totp-seal.ts';
import { trustedProxyList } from './client-address.ts';
import { publishRevocations } from './revocation-publisher.ts';
import { checkClientFlags } from './client-flags.ts';
import { useRiskEvaluator, type RiskEvaluator } from './remember/index.ts';

export interface AuthServerHandle {
  ctx: ServerContext;
  store: SqlStore;
  /** The URL it listens on (the port is the real one when 0 was asked). */
  url: string;
  close(): Promise<void>;
}

export function maxTokenTtl(config: AuthServerConfig): number {
  return Math.max(config.tokens.access_token_ttl, config.tokens.id_token_ttl, ...config.resources.map((r) => r.access_token_ttl ?? 0));
}

/** Paths that need no database: gateways can fetch keys from an AS whose database is down. */
const SERVED_WHILE_STARTING = /^\/(?:jwks$|\.well-known\/)/;

/**
 * Opens storage, keys and state, seeds the configuration, and listens. When the database is
 * unreachable it starts anyway: requests are answered 503 `temporarily_unavailable` (keys and
 * metadata excepted) while migrations and seeding are retried in the background, until they pass.
 */
export async function startAuthServer(
  config: AuthServerConfig,
  options: {
    log?: Logger;
    listen?: boolean;
    env?: Record<string, string | undefined>;
    /** Judges the risk of "Keep me signed in" instead of the built-in evaluator (docs/browser-sessions.md). */
    riskEvaluator?: RiskEvaluator;
  } = {},
): Promise<AuthServerHandle> {
  const log = options.log ?? pino({ level: process.env.LOG_LEVEL ?? 'info' });
  const env = options.env ?? process.env;
  // Settings that can be wrong are checked before anything is opened.
  trustedProxyList(config.trusted_proxies);
  checkClientFlags(config);
  // The data dir holds the database, keys and secrets: only its owner may enter it.
  if (!existsSync(config.data_dir)) mkdirSync(config.data_dir, { recursive: true, mode: 0o700 });
  const driver = config.storage.driver ?? (env.DATABASE_URL ? 'postgres' : 'sqlite');
  const opened = createSqlStore({
    driver,
    databaseUrl: env.DATABASE_URL,
    sqliteFile: resolve(config.data_dir, config.storage.sqlite_file),
    onConnectionError: (error) => log.warn({ reason: unavailableReason(error) ?? error.message }, 'database connection lost'),
  });
  const clientCache = cachedClientStore(opened.clients, { ttlSeconds: config.storage.client_cache_seconds });
  const store: SqlStore = { ...opened, clients: clientCache };
  const now = () => Math.floor(Date.now() / 1000);
  const keys = new KeyManager({ dataDir: config.data_dir, maxTokenTtl: maxTokenTtl(config) });
  await keys.init();
  // Short-lived state and rate limits: shared through Redis when REDIS_URL is set, else in this
  // process. MANDATE_REDIS_PREFIX separates deployments (and test runs) sharing one Redis.
  let redisWarnedAt = 0;
  const onRedisError = (error: Error) => {
    // ioredis reports every failed reconnection: one line per 10 s is enough.
    if (Date.now() - redisWarnedAt < 10_000) return;
    redisWarnedAt = Date.now();
    log.warn({ reason: error.message }, 'redis unavailable; requests that need it are answered 503');
  };
  const redisPrefix = env.MANDATE_REDIS_PREFIX ?? 'mandate:';
  const redis = env.REDIS_URL ? redisCache(env.REDIS_URL, { prefix: redisPrefix, onError: onRedisError }) : undefined;
  // Without Redis, a full memory cache refuses new entries (never forgets a live single-use
  // marker): the request is answered 503 temporarily_unavailable and the reason audited.
  const cache =
    redis ??
    onCacheFull(memoryCache(), (key, error) => {
      const reason = `${error.message}: refused a ${key.split(':')[0]} entry`;
      audit.record({ at: now(), type: 'cache.full', outcome: 'failure', error: 'temporarily_unavailable', reason });
      return new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable; try again shortly', { status: 503, reason, headers: { 'Retry-After': String(UNAVAILABLE_RETRY_AFTER_SECONDS) } });
    });
  const limiter = limiterFactory({
    redis: redis?.client,
    prefix: `${redisPrefix}limit:${config.issuer.replace(/\/$/, '')}:`,
    onUnavailable: (reason) => audit.record({ at: now(), type: 'limit.unavailable', outcome: 'failure', error: 'temporarily_unavailable', reason }),
  });
  const audit = new AuditLog(store.audit, log);
  const trackedTokens = new BatchWriter<AccessTokenRecord>((records) => store.grants.recordAccessTokens(records), log, { name: 'token records' });
  // Revocations see every token issued before them on this instance: pending records go first.
  const grants = store.grants;
  store.grants = {
    ...grants,
    revokeGrant: async (id, at) => {
      await trackedTokens.flush();
      await grants.revokeGrant(id, at);
    },
    revokeByClient: async (clientId, at) => {
      await trackedTokens.flush();
      await grants.revokeByClient(clientId, at);
    },
  };
  const ctx = createContext({ config, store, cache, keys, audit, trackedTokens, log, now, limiter });
  useRiskEvaluator(ctx, options.riskEvaluator);
  // Revocations, grant revocations and client changes reach other instances and gateways at once.
  const feed = publishRevocations({ ctx, store, redisUrl: env.REDIS_URL, onClientChanged: (clientId) => clientCache.invalidate(clientId) });
  // The TOTP sealing key, generated on first start (or a bad totp.key_env refused now, not at the first enrolment).
  totpSealKey(config);
  const app = createAuthServerApp(ctx, { adminToken: config.admin.bootstrap_token ? adminTokenFor(config) : undefined });
  const prepare = async () => {
    await opened.migrate();
    await seedFromConfig(config, store, now());
    await ctx.reloadResources();
    await ctx.reloadSettings();
  };
  let ready = false;
  let closed = false;
  let retryTimer: NodeJS.Timeout | undefined;
  try {
    await prepare();
    ready = true;
  } catch (error) {
    // A database that is down is waited for; anything else (a bad configuration) refuses the start.
    if (!unavailableReason(error)) {
      await Promise.all([feed.close(), trackedTokens.close(), audit.close(), cache.close(), store.close()]).catch(() => undefined);
      throw error;
    }
    log.warn({ reason: unavailableReason(error) }, 'database unavailable at start; answering 503 and retrying in the background');
    const retry = (delayMs: number) => {
      retryTimer = setTimeout(() => {
        prepare().then(
          () => {
            ready = !closed;
            log.info('database available; serving');
          },
          (err: unknown) => {
            if (!unavailableReason(err)) log.error({ err }, 'database preparation failed; retrying');
            if (!closed) retry(Math.min(delayMs * 2, 5_000));
          },
        );
      }, delayMs);
    };
    retry(250);
  }
  const notReady = () =>
    new Response(JSON.stringify(temporarilyUnavailable().toResponseObject()), {
      status: 503,
      headers: { 'content-type': 'application/json', 'cache-control': 'no-store', 'retry-after': String(UNAVAILABLE_RETRY_AFTER_SECONDS) },
    });
  const fetch: typeof app.fetch = (request, ...rest) => (ready || SERVED_WHILE_STARTING.test(new URL(request.url).pathname) ? app.fetch(request, ...rest) : notReady());
  const sweep = async () => {
    await ctx.reloadResources();
    await ctx.reloadSettings();
    await store.sweep(now());
    const removed = await store.clients.deleteUnused(now() - config.registration.unused_client_expiry_days * 86_400);
    if (removed > 0) log.info({ removed }, 'deleted dynamic clients never used');
  };
  const sweeper = setInterval(() => void sweep().catch((err) => log.warn({ err }, 'sweep failed')), 60_000);
  sweeper.unref();

  let server: ServerType | undefined;
  let url = ctx.issuer;
  const close = async () => {
    closed = true;
    clearTimeout(retryTimer);
    clearInterval(sweeper);
    await new Promise<void>((r) => {
      if (!server?.listening) return r();
      server.close(() => r());
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
    });
    // Logout tokens under way finish (no more retries), so their outcomes reach the audit log.
    await stopLogoutDeliveries(ctx);
    await trackedTokens.close();
    await feed.close();
    await audit.close();
    await cache.close();
    await store.close();
  };
  if (options.listen !== false) {
    try {
      const port = await new Promise<number>((resolvePort, reject) => {
        server = serve({ fetch, hostname: config.listen.host, port: config.listen.port }, (info) => resolvePort(info.port));
        server.once('error', reject);
      });
      url = `http://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${port}`;
    } catch (error) {
      // A refused listen (the port is taken) must not leave connections and timers holding the process.
      await close().catch(() => undefined);
      throw error;
    }
  }
  return { ctx, store, url, close };
}

export const keyFile = (config: AuthServerConfig) => join(config.data_dir, 'keys.json');
