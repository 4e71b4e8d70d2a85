import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { serve, type ServerType } from '@hono/node-server';
import pino, { type Logger } from 'pino';
import type { AuthServerConfig } from '../config/schema.ts';
import { openSqlStore, type SqlStore } from '../store/sql-store.ts';
import { memoryCache } from '../store/memory-cache.ts';
import { redisCache } from '../store/redis-cache.ts';
import { cachedClientStore, type CachedClientStore } from '../store/cached-clients.ts';
import { createAuthServerApp } from './app.ts';
import { AuditLog } from './audit.ts';
import { BatchWriter } from './batch-writer.ts';
import type { AccessTokenRecord } from '../store/types.ts';
import { adminTokenFor, seedFromConfig } from './bootstrap.ts';
import { createContext, type ServerContext } from './context.ts';
import { KeyManager } from './keys.ts';
import { publishRevocations } from './revocation-publisher.ts';

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

export async function openStore(config: AuthServerConfig, env = process.env): Promise<SqlStore & { clients: CachedClientStore }> {
  const driver = config.storage.driver ?? (env.DATABASE_URL ? 'postgres' : 'sqlite');
  const store = await openSqlStore({ driver, databaseUrl: env.DATABASE_URL, sqliteFile: resolve(config.data_dir, config.storage.sqlite_file) });
  return { ...store, clients: cachedClientStore(store.clients, { ttlSeconds: config.storage.client_cache_seconds }) };
}

/** Opens storage, keys and state, seeds the configuration, and listens. */
export async function startAuthServer(config: AuthServerConfig, options: { log?: Logger; listen?: boolean; env?: NodeJS.ProcessEnv } = {}): Promise<AuthServerHandle> {
  const log = options.log ?? pino({ level: process.env.LOG_LEVEL ?? 'info' });
  const env = options.env ?? process.env;
  // The data dir holds the database, keys and secrets: only its owner may enter it.
  if (!existsSync(config.data_dir)) mkdirSync(config.data_dir, { recursive: true, mode: 0o700 });
  const store = await openStore(config, env);
  const clientCache = store.clients;
  const now = () => Math.floor(Date.now() / 1000);
  await seedFromConfig(config, store, now());
  const keys = new KeyManager({ dataDir: config.data_dir, maxTokenTtl: maxTokenTtl(config) });
  await keys.init();
  // Short-lived state: shared through Redis when REDIS_URL is set, else in this process.
  const cache = env.REDIS_URL ? redisCache(env.REDIS_URL) : memoryCache();
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
  const ctx = createContext({ config, store, cache, keys, audit, trackedTokens, log, now });
  // Revocations, grant revocations and client changes reach other instances and gateways at once.
  const feed = publishRevocations({ ctx, store, redisUrl: env.REDIS_URL, onClientChanged: (clientId) => clientCache.invalidate(clientId) });
  await ctx.reloadResources();
  const app = createAuthServerApp(ctx, { adminToken: adminTokenFor(config) });
  const sweep = async () => {
    await ctx.reloadResources();
    await store.sweep(now());
    const removed = await store.clients.deleteUnused(now() - config.registration.unused_client_expiry_days * 86_400);
    if (removed > 0) log.info({ removed }, 'deleted dynamic clients never used');
  };
  const sweeper = setInterval(() => void sweep().catch((err) => log.warn({ err }, 'sweep failed')), 60_000);
  sweeper.unref();

  let server: ServerType | undefined;
  let url = ctx.issuer;
  if (options.listen !== false) {
    const port = await new Promise<number>((resolvePort, reject) => {
      server = serve({ fetch: app.fetch, hostname: config.listen.host, port: config.listen.port }, (info) => resolvePort(info.port));
      server.once('error', reject);
    });
    url = `http://${config.listen.host.includes(':') ? `[${config.listen.host}]` : config.listen.host}:${port}`;
  }
  return {
    ctx,
    store,
    url,
    async close() {
      clearInterval(sweeper);
      await new Promise<void>((r) => {
        if (!server) return r();
        server.close(() => r());
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await trackedTokens.close();
      await feed.close();
      await audit.close();
      await cache.close();
      await store.close();
    },
  };
}

export const keyFile = (config: AuthServerConfig) => join(config.data_dir, 'keys.json');
