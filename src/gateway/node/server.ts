import { createServer, type Server } from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { readFileSync, unwatchFile, watchFile } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { getRequestListener } from '@hono/node-server';
import { Hono } from 'hono';
import { Redis } from 'ioredis';
import type { JWK } from 'jose';
import pino, { type Logger } from 'pino';
import { ConfigError, loadYaml, parseConfig } from '../../config/load.ts';
import { gatewayConfigSchema, routeIssuers, type GatewayConfig } from '../../config/gateway-schema.ts';
import { gatewayHandlers, type GatewayHandlers } from '../chain.ts';
import type { Forwarder } from '../filters/proxy.ts';
import { compileRoute, RouteConfigError, type CompiledRoute } from '../route.ts';
import type { GatewayAuditEvent } from '../types.ts';
import { SessionBindings } from '../sessions.ts';
import { RedisSessionBindings } from './redis-sessions.ts';
import { RedisDpopReplay } from './redis-dpop-replay.ts';
import { gatewayDpopKey } from './dpop-key.ts';
import { MemoryDpopReplay } from '../dpop.ts';
import { ApprovalMemory } from '../approvals.ts';
import { RedisApprovals } from './redis-approvals.ts';
import { AuditWriter } from './audit-writer.ts';
import { nodeForwarder } from './forwarder.ts';
import { gatewayListener } from './listener.ts';
import { GatewayMetrics } from './metrics.ts';
import { nodeVerifier } from './verifier.ts';
import { SigningKeys } from '../signing-keys.ts';
import { signingKeyFile } from './key-file.ts';
import { RevocationFeeds } from './revocation-feeds.ts';
import { nodeRateLimits } from './rate-limits.ts';
import { compileWebRoute, type CompiledWebRoute } from '../web/route.ts';
import { webApp, webPathMatcher } from '../web/app.ts';
import { MemoryWebSessions } from '../web/store.ts';
import { IdentitySigner, newIdentityKey } from '../web/assertion.ts';
import { RedisWebSessions, sharedWebSecret } from './redis-web-sessions.ts';
import { identityKeyFile, webSessionKey } from './identity-key.ts';

export interface GatewayHandle {
  url: string;
  adminUrl: string;
  metrics: GatewayMetrics;
  audit: AuditWriter;
  /** Reads the routes file again; false (old routes kept, reason logged) when it is invalid. */
  reload(): Promise<boolean>;
  close(): Promise<void>;
}

export interface StartGatewayOptions {
  log?: Logger;
  env?: Record<string, string | undefined>;
  /** The file the config came from: watched, and its routes reloaded when it changes. */
  configFile?: string;
  watchIntervalMs?: number;
}

function listen(server: Server, host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const address = server.address() as AddressInfo;
      resolve(`http://${host.includes(':') ? `[${host}]` : host}:${address.port}`);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/** Starts the gateway: the MCP listener, the admin listener (/metrics, /healthz), and the routes file watch. */
export async function startGateway(config: GatewayConfig, options: StartGatewayOptions = {}): Promise<GatewayHandle> {
  const log = options.log ?? pino({ level: process.env.LOG_LEVEL ?? 'info' });
  const env = options.env ?? process.env;
  const metrics = new GatewayMetrics();
  const audit = new AuditWriter({
    file: config.audit.file,
    maxBytes: config.audit.max_bytes,
    keep: config.audit.keep,
    stdout: config.audit.stdout,
    bufferEvents: config.audit.buffer_events,
    log,
    onWritten: (count) => metrics.auditWritten.inc(count),
    onDropped: (count) => metrics.auditDropped.inc(count),
  });
  await audit.open();
  const observer = {
    ready: () => audit.ready(),
    record(event: GatewayAuditEvent) {
      metrics.observe(event);
      audit.record(event);
    },
  };
  // Global rate limits: commands fail at once when Redis is down (no offline queue), and the
  // throttle filter turns that into 503 — fail closed.
  const redis = env.REDIS_URL ? new Redis(env.REDIS_URL, { enableOfflineQueue: false, maxRetriesPerRequest: 1, lazyConnect: false }) : undefined;
  redis?.on('error', (error) => log.warn({ err: error }, 'redis error'));
  // Commands fail at once until the connection is ready (no offline queue), so a gateway that
  // listened first would answer its first requests 503 with Redis perfectly well. Wait for it, for
  // a bounded time: a Redis that is down does not hold the start (those requests get 503).
  if (redis) await redisReady(redis, 3_000);
  const forwarder: Forwarder = nodeForwarder({ onDispatched: () => audit.upstreamWaiting() });
  // Session bindings span instances and restarts through Redis (issue 11); in one process otherwise.
  const idleMs = config.session_idle_seconds * 1000;
  const sessions = redis ? new RedisSessionBindings(redis, config.rate_limit_prefix, idleMs) : new SessionBindings({ idleMs });
  // DPoP proof jtis (RFC 9449 §11.1): refused on every gateway sharing the Redis, else in this process;
  // kept across reloads, like the nonce key of routes with require_nonce when dpop_nonce_key_env is unset.
  const dpopReplay = redis ? new RedisDpopReplay(redis, config.rate_limit_prefix) : new MemoryDpopReplay();
  const dpopNonceKey = randomBytes(32);
  const dpopKey = gatewayDpopKey({ dataDir: config.data_dir, redis, prefix: config.rate_limit_prefix, onError: (error) => log.warn({ reason: error.message }, "cannot keep or share the gateway's DPoP key") });
  // Calls held for approval are recognized on retry by any gateway sharing the Redis (issue 14).
  const approvals = redis ? new RedisApprovals(redis, config.rate_limit_prefix) : new ApprovalMemory();
  // The AS keys outlive route reloads, and restarts when there is a data dir (issue 11, item 10).
  const keyFile = config.data_dir ? signingKeyFile(config.data_dir) : undefined;
  const signingKeys = new SigningKeys({
    initial: keyFile?.load((error) => log.warn({ reason: error.message }, 'cannot read the saved signing keys')),
    onChange: (keys) => {
      try {
        keyFile?.save(keys);
      } catch (error) {
        log.warn({ reason: (error as Error).message }, 'cannot save the signing keys');
      }
    },
  });
  // Revocation feeds live outside the per-reload build: a reload keeps their state.
  const feeds = new RevocationFeeds({ redisUrl: env.REDIS_URL, onError: (error) => log.warn({ err: error.message }, 'revocation feed error') });
  const acquireRevocations = feeds.acquire.bind(feeds);
  const rateLimits = nodeRateLimits({ redis });
  // Web routes (issue 15): sessions shared through Redis like the MCP bindings; the identity
  // assertion key and the default cookie key kept in the data dir when there is one.
  const webSessions = redis ? new RedisWebSessions(redis, config.rate_limit_prefix) : new MemoryWebSessions();
  // Made once, when a web route first appears (at start or at a reload): a gateway with MCP routes
  // only keeps no key it does not use.
  let webKeys: { signer: IdentitySigner; defaultSecret: Uint8Array } | undefined;
  const prepareWebKeys = async (): Promise<void> => {
    if (webKeys) return;
    const identityFile = config.data_dir ? identityKeyFile(config.data_dir) : undefined;
    const keepWebKey = (error: Error) => log.warn({ reason: error.message }, 'cannot keep the web routes\' keys in the data dir');
    const fileIdentity = identityFile?.load(keepWebKey);
    let savedIdentity = fileIdentity;
    let defaultSecret: Uint8Array | undefined;
    if (redis) {
      // Several gateways behind one name must sign with one key and read each other's cookies.
      try {
        savedIdentity = JSON.parse(await sharedWebSecret(redis, config.rate_limit_prefix, 'identity-key', async () => JSON.stringify(savedIdentity ?? (await newIdentityKey()))));
        defaultSecret = Buffer.from(await sharedWebSecret(redis, config.rate_limit_prefix, 'session-key', () => Buffer.from(webSessionKey(config.data_dir, keepWebKey)).toString('base64url')), 'base64url');
      } catch (error) {
        log.warn({ reason: (error as Error).message }, 'cannot share the web routes\' keys through Redis; this gateway uses its own');
      }
    }
    const save = (jwk: JWK) => {
      try {
        identityFile?.save(jwk);
      } catch (error) {
        keepWebKey(error as Error);
      }
    };
    // The shared key is also kept locally: a restart while Redis is down signs with the same key.
    if (savedIdentity && JSON.stringify(savedIdentity) !== JSON.stringify(fileIdentity)) save(savedIdentity);
    webKeys = { signer: await IdentitySigner.create({ saved: savedIdentity, onNew: save }), defaultSecret: defaultSecret ?? webSessionKey(config.data_dir, keepWebKey) };
  };
  const hasWebRoutes = (next: GatewayConfig) => next.routes.some((route) => route.kind === 'web');

  interface Built {
    app: Hono<never>;
    routes: CompiledRoute[];
    web: CompiledWebRoute[];
    fetch: (request: Request, bindings: unknown) => Response | Promise<Response>;
    /** Each MCP route's chain, run by the Node listener without the adapter (node/listener.ts). */
    handlers: GatewayHandlers;
    isWeb?: (path: string) => boolean;
  }
  const build = (next: GatewayConfig): Built => {
    const paths = new Set<string>();
    const routes: CompiledRoute[] = [];
    const web: CompiledWebRoute[] = [];
    try {
      next.routes.forEach((route, index) => {
        if (paths.has(route.path)) throw new RouteConfigError(`routes[${index}]: path ${route.path} is used twice`);
        paths.add(route.path);
        if (route.kind === 'web') {
          web.push(compileWebRoute(route, index, { env, defaultSecret: webKeys!.defaultSecret }));
          return;
        }
        for (const entry of routeIssuers(route)) {
          if (entry.mode === 'jwt' && !entry.revocation_list) {
            log.warn({ route: route.path, issuer: entry.issuer }, 'route verifies tokens locally without a revocation_list: revoked tokens and disabled agents are accepted until the tokens expire');
          }
        }
        routes.push(
          compileRoute(route, index, {
            env,
            rateLimits,
            rateLimitPrefix: next.rate_limit_prefix,
            createVerifier: nodeVerifier,
            signingKeys,
            acquireRevocations,
            dpopReplay,
            dpopNonceKey,
            dpopKey,
            dpopNonceKeyEnv: next.dpop_nonce_key_env,
            // tool_pins.snapshot: JSON, relative to the config file (read again on each reload).
            readSnapshot: (file) => JSON.parse(readFileSync(resolve(options.configFile ? dirname(options.configFile) : '.', file), 'utf8')),
            onError: (error) => log.warn({ err: error.message }, 'cannot refresh the authorization server keys'),
          }),
        );
      });
    } catch (error) {
      for (const route of [...routes, ...web]) route.close();
      if (error instanceof RouteConfigError) throw new ConfigError(`invalid gateway configuration: ${error.message}`);
      throw error;
    }
    const handlers = gatewayHandlers(routes, { observer, forwarder, sessions, approvals });
    const app = handlers.app as unknown as Hono<never>;
    if (web.length === 0) return { app, routes, web, handlers, fetch: (request, bindings) => app.fetch(request, bindings as never) };
    const webRoutes = webApp(web, { observer, forwarder, store: webSessions, signer: webKeys!.signer });
    const isWeb = webPathMatcher(web, routes.map((route) => route.config.path));
    return {
      app,
      routes,
      web,
      handlers,
      isWeb,
      fetch: (request, bindings) => {
        const start = request.url.indexOf('/', request.url.indexOf('//') + 2);
        const end = request.url.indexOf('?', start);
        const path = start < 0 ? '/' : request.url.slice(start, end < 0 ? undefined : end);
        return isWeb(path) ? webRoutes.fetch(request, bindings as never) : app.fetch(request, bindings as never);
      },
    };
  };
  const closeRoutes = (built: Built | undefined) => built && [...built.routes, ...built.web].forEach((route) => route.close());

  let current: ReturnType<typeof build> | undefined;
  const server = createServer(gatewayListener(() => current!));
  server.keepAliveTimeout = 65_000;
  const admin = new Hono();
  admin.get('/metrics', async (c) => c.body(await metrics.registry.metrics(), 200, { 'content-type': metrics.registry.contentType }));
  admin.get('/healthz', (c) => c.json({ status: 'ok', routes: [...current!.routes, ...current!.web].map((route) => route.config.path) }));
  const adminServer = createServer(getRequestListener(admin.fetch));
  let url: string;
  let adminUrl: string;
  try {
    if (hasWebRoutes(config)) await prepareWebKeys();
    current = build(config);
    signingKeys.sweep();
    url = await listen(server, config.listen.host, config.listen.port);
    adminUrl = await listen(adminServer, config.admin.listen.host, config.admin.listen.port);
  } catch (error) {
    // Nothing may keep the process alive after a refused start.
    closeRoutes(current);
    signingKeys.close();
    if (server.listening) await closeServer(server);
    redis?.disconnect();
    await feeds.close();
    await Promise.all([forwarder.close(), audit.close()]);
    throw error;
  }

  const reload = async (): Promise<boolean> => {
    if (!options.configFile) return false;
    try {
      const next = parseConfig(gatewayConfigSchema, await loadYaml(options.configFile), options.configFile);
      if (hasWebRoutes(next)) await prepareWebKeys();
      const previous = current!;
      current = build(next);
      closeRoutes(previous);
      signingKeys.sweep();
      metrics.reloads.inc({ result: 'ok' });
      log.info({ routes: next.routes.map((route) => route.path) }, 'gateway routes reloaded');
      if (JSON.stringify([next.listen, next.admin, next.audit]) !== JSON.stringify([config.listen, config.admin, config.audit])) {
        log.warn('listen, admin and audit settings changed in the file; they take effect on restart');
      }
      return true;
    } catch (error) {
      metrics.reloads.inc({ result: 'refused' });
      log.error({ reason: (error as Error).message }, 'gateway routes NOT reloaded: the new file is invalid; the previous routes stay in effect');
      return false;
    }
  };
  if (options.configFile) {
    watchFile(options.configFile, { interval: options.watchIntervalMs ?? 1_000 }, (now, before) => {
      if (now.mtimeMs !== before.mtimeMs || now.size !== before.size) void reload();
    });
  }

  return {
    url,
    adminUrl,
    metrics,
    audit,
    reload,
    async close() {
      if (options.configFile) unwatchFile(options.configFile);
      await Promise.all([closeServer(server), closeServer(adminServer)]);
      closeRoutes(current);
      signingKeys.close();
      await forwarder.close();
      await audit.close();
      await feeds.close();
      redis?.disconnect();
    },
  };
}

export async function loadGatewayConfig(file: string): Promise<GatewayConfig> {
  return parseConfig(gatewayConfigSchema, await loadYaml(file), file);
}

/** Resolves when the connection is ready, fails (Redis is down: no point waiting), or after `timeoutMs`. */
function redisReady(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      redis.off('ready', done);
      redis.off('error', done);
      resolve();
    };
    const timer = setTimeout(done, timeoutMs);
    redis.once('ready', done);
    redis.once('error', done);
  });
}
