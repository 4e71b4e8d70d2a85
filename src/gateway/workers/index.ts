/**
 * The gateway as a Cloudflare Worker (issue 16, first increment): `export default { fetch }`, built
 * into one ES module by `npm run edge:build` (scripts/build-edge.mjs → dist/edge/gateway.js) and
 * tested in workerd (test/edge/gateway-workerd.test.ts). Runtime-neutral code only (the lint rule
 * of src/gateway applies here).
 *
 * The route config is the Node gateway's file as JSON in the `MANDATE_GATEWAY_CONFIG` binding (a
 * string, or an object from a JSON var), validated with the same schema; the secrets a route names
 * (`client_secret_env`…) are read from the other bindings. Nothing happens at global scope (a
 * Worker may start no timer and do no I/O there): the routes are compiled on the first request, and
 * key sets fetch at first use and refresh on use. For now: MCP routes only, rate limits and MCP
 * session bindings in the `GATEWAY_STATE` Durable Object binding (the exported `GatewayState`
 * class) when there is one, in the isolate's memory otherwise (per isolate!), held approvals in memory, audit events as JSON
 * lines on console.log (Workers Logs). `listen`, `admin`, `audit` and `data_dir` do not apply.
 */
import type { Hono } from 'hono';
import { gatewayConfigSchema } from '../../config/gateway-schema.ts';
import { ApprovalMemory } from '../approvals.ts';
import { gatewayApp } from '../chain.ts';
import { GATEWAY_ERRORS } from '../filters/refuse.ts';
import { fetchForwarder } from '../filters/proxy.ts';
import { compileRoute, type CompiledRoute } from '../route.ts';
import { SessionBindings } from '../sessions.ts';
import type { GatewayAuditEvent, GatewayEnv } from '../types.ts';
import { durableRateLimits, DurableSessionBindings, isDurableNamespace } from './durable-state.ts';
import { isolateRateLimits } from './rate-limits.ts';
import { cacheApiKeySets, defaultCache } from './key-set-cache.ts';
import { isKvNamespace, kvVerifiedTokens, verifiedTokensMaxTtl } from './verified-tokens.ts';

export { isolateRateLimits } from './rate-limits.ts';
export { GatewayState, durableRateLimits, DurableSessionBindings } from './durable-state.ts';

/** The Worker's bindings: the config, the `GatewayState` Durable Object (optional), and the secrets its routes name. */
export type GatewayWorkerEnv = { MANDATE_GATEWAY_CONFIG?: string | object; GATEWAY_STATE?: unknown; VERIFIED_TOKENS?: unknown; VERIFIED_TOKENS_MAX_TTL_SECONDS?: string | number } & Record<string, unknown>;

/** The part of `ExecutionContext` used here (no dependency on @cloudflare/workers-types). */
export interface WorkerContext {
  waitUntil(promise: Promise<unknown>): void;
}

interface Built {
  source: string;
  app: Hono<GatewayEnv>;
  routes: CompiledRoute[];
}

/** Why the routes cannot be built; answered as 500 with a generic message, the reason logged. */
class EdgeConfigError extends Error {
  override name = 'EdgeConfigError';
}

function build(source: string, env: GatewayWorkerEnv): Built {
  let raw: unknown;
  try {
    raw = JSON.parse(source.slice(source.indexOf(':') + 1));
  } catch (error) {
    throw new EdgeConfigError(`MANDATE_GATEWAY_CONFIG is not JSON: ${(error as Error).message}`);
  }
  const parsed = gatewayConfigSchema.safeParse(raw);
  if (!parsed.success) {
    throw new EdgeConfigError(`invalid MANDATE_GATEWAY_CONFIG:\n${parsed.error.issues.map((issue) => `  ${issue.path.join('.') || '(root)'}: ${issue.message}`).join('\n')}`);
  }
  const config = parsed.data;
  const strings = Object.fromEntries(Object.entries(env).filter((entry): entry is [string, string] => typeof entry[1] === 'string'));
  // Shared by every isolate and kept across restarts with the Durable Object; per isolate without it.
  const state = isDurableNamespace(env.GATEWAY_STATE) ? env.GATEWAY_STATE : undefined;
  const rateLimits = state ? durableRateLimits(state) : isolateRateLimits();
  const idleMs = config.session_idle_seconds * 1000;
  // Verified tokens in KV and the AS keys in the Cache API, shared by the isolates (docs/edge.md).
  const sharedVerifications = isKvNamespace(env.VERIFIED_TOKENS) ? kvVerifiedTokens(env.VERIFIED_TOKENS, { maxTtlSeconds: verifiedTokensMaxTtl(env.VERIFIED_TOKENS_MAX_TTL_SECONDS) }) : undefined;
  const cache = defaultCache();
  const keySetCache = cache ? cacheApiKeySets(cache) : undefined;
  const routes: CompiledRoute[] = [];
  try {
    config.routes.forEach((route, index) => {
      if (route.kind !== 'mcp') throw new EdgeConfigError(`routes[${index}] (${route.path}): ${route.kind} routes do not run at the edge yet`);
      if (routes.some((other) => other.config.path === route.path)) throw new EdgeConfigError(`routes[${index}]: path ${route.path} is used twice`);
      routes.push(
        compileRoute(route, index, {
          env: strings,
          rateLimits,
          rateLimitPrefix: config.rate_limit_prefix,
          jwksSchedule: 'on-use',
          sharedVerifications,
          keySetCache,
          onError: (error) => console.warn(JSON.stringify({ level: 'warn', msg: 'cannot refresh the authorization server keys', reason: error.message })),
        }),
      );
    });
  } catch (error) {
    for (const route of routes) route.close();
    throw error;
  }
  const observer = {
    ready: () => undefined,
    // Workers Logs: one JSON line per MCP message, the Node gateway's audit event.
    record: (event: GatewayAuditEvent) => console.log(JSON.stringify({ audit: 'mandate-gateway', ...event })),
  };
  const app = gatewayApp(routes, {
    observer,
    forwarder: fetchForwarder(),
    sessions: state ? new DurableSessionBindings(state, { idleMs }) : new SessionBindings({ idleMs }),
    approvals: new ApprovalMemory(),
  });
  return { source, app, routes };
}

let built: Built | undefined;

/** The routes for this config, compiled on first use and again when the binding changes. */
function routesFor(env: GatewayWorkerEnv): Built {
  const binding = env.MANDATE_GATEWAY_CONFIG;
  if (binding === undefined) throw new EdgeConfigError('the MANDATE_GATEWAY_CONFIG binding is not set');
  // The routes are built again when the config changes or the Durable Object binding appears or goes.
  const source = `${isDurableNamespace(env.GATEWAY_STATE) ? 'do' : 'isolate'}:${typeof binding === 'string' ? binding : JSON.stringify(binding)}`;
  if (built?.source === source) return built;
  const next = build(source, env);
  for (const route of built?.routes ?? []) route.close();
  built = next;
  return built;
}

export default {
  fetch(request: Request, env: GatewayWorkerEnv, ctx: WorkerContext): Response | Promise<Response> {
    let current: Built;
    try {
      current = routesFor(env);
    } catch (error) {
      // Never the reason on the wire; the Worker's logs have it. Retried on the next request.
      console.error(JSON.stringify({ level: 'error', msg: 'cannot build the gateway routes', reason: (error as Error).message }));
      return Response.json({ jsonrpc: '2.0', id: null, error: { code: GATEWAY_ERRORS.unavailable, message: 'gateway not configured' } }, { status: 500 });
    }
    return current.app.fetch(request, env, ctx as never);
  },
};
