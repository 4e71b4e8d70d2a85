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
 * key sets fetch at first use and refresh on use. MCP routes, and `kind: web` routes (web.ts); rate
 * limits, MCP session bindings, held approvals, revocation feeds and web sessions in the
 * `GATEWAY_STATE` Durable Object binding (the exported `GatewayState` class) when there is one, in
 * the isolate's memory otherwise (per isolate!); DPoP proof `jti`s in it too (without it, a route
 * with `dpop.replay` does not build: no per-isolate fallback); audit events as JSON lines on console.log (Workers
 * Logs), and batched to `AUDIT_SINK_URL` through the Durable Object when both are set. `listen`,
 * `admin`, `audit` and `data_dir` do not apply.
 */
import { gatewayConfigSchema } from '../../config/gateway-schema.ts';
import { ApprovalMemory } from '../approvals.ts';
import { gatewayApp } from '../chain.ts';
import { GATEWAY_ERRORS } from '../filters/refuse.ts';
import { fetchForwarder } from '../filters/proxy.ts';
import { compileRoute, type CompiledRoute } from '../route.ts';
import { SessionBindings } from '../sessions.ts';
import type { GatewayAuditEvent } from '../types.ts';
import { durableRateLimits, DurableSessionBindings, isDurableNamespace } from './durable-state.ts';
import { DurableApprovals } from './durable-approvals.ts';
import { DurableDpopReplay } from './durable-dpop.ts';
import { auditSinkSettings, EdgeAudit } from './durable-audit.ts';
import { durableRevocations } from './durable-revocations.ts';
import { isolateRateLimits } from './rate-limits.ts';
import { edgeWebApp, type EdgeApp } from './web.ts';
import { cacheApiKeySets, defaultCache } from './key-set-cache.ts';
import { EdgeCacheMac, parseEdgeCacheKey } from './edge-cache-key.ts';
import { isKvNamespace, kvVerifiedTokens, verifiedTokensMaxTtl } from './verified-tokens.ts';

export { isolateRateLimits } from './rate-limits.ts';
export { GatewayState, durableRateLimits, DurableSessionBindings } from './durable-state.ts';

/** The Worker's bindings: the config, the `GatewayState` Durable Object (optional), and the secrets its routes name. */
export type GatewayWorkerEnv = { MANDATE_GATEWAY_CONFIG?: string | object; GATEWAY_STATE?: unknown; VERIFIED_TOKENS?: unknown; VERIFIED_TOKENS_MAX_TTL_SECONDS?: string | number; MANDATE_EDGE_CACHE_KEY?: string } & Record<string, unknown>;

/** The part of `ExecutionContext` used here (no dependency on @cloudflare/workers-types). */
export interface WorkerContext {
  waitUntil(promise: Promise<unknown>): void;
}

interface Built {
  source: string;
  audit: EdgeAudit;
  app: EdgeApp;
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
  // Both are writable by others (KV editors, the zone's other Workers): used only with the secret that authenticates their entries.
  const mac = edgeCacheMac(env, isKvNamespace(env.VERIFIED_TOKENS));
  const sharedVerifications = mac && isKvNamespace(env.VERIFIED_TOKENS) ? kvVerifiedTokens(env.VERIFIED_TOKENS, { maxTtlSeconds: verifiedTokensMaxTtl(env.VERIFIED_TOKENS_MAX_TTL_SECONDS), mac }) : undefined;
  const cache = mac ? defaultCache() : undefined;
  const keySetCache = cache && mac ? cacheApiKeySets(cache, mac) : undefined;
  // DPoP proof jtis (RFC 9449 §11.1), one object per proof, seen by every isolate (durable-dpop.ts).
  const dpopReplay = state ? new DurableDpopReplay(state) : undefined;
  const routes: CompiledRoute[] = [];
  try {
    config.routes.forEach((route, index) => {
      if (route.kind === 'web') return; // compiled by edgeWebApp below
      if (routes.some((other) => other.config.path === route.path)) throw new EdgeConfigError(`routes[${index}]: path ${route.path} is used twice`);
      if (!dpopReplay && route.dpop.mode !== 'off' && route.dpop.replay) {
        // Not the isolate's memory: Cloudflare runs a Worker in many isolates, so a proof replayed
        // to another one would pass while the route says proofs are single use (docs/edge.md).
        throw new EdgeConfigError(`routes[${index}] (${route.path}) dpop.replay needs the GATEWAY_STATE Durable Object binding (proof jtis shared by every isolate); bind it, or set dpop.replay: false to accept a replayed proof within its iat window`);
      }
      routes.push(
        compileRoute(route, index, {
          env: strings,
          rateLimits,
          rateLimitPrefix: config.rate_limit_prefix,
          jwksSchedule: 'on-use',
          dpopReplay,
          // With the Durable Object, one object per feed polls the AS; the isolates read its list.
          acquireRevocations: state ? durableRevocations(state, config.routes, env) : undefined,
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
  // Workers Logs: one JSON line per MCP message, the Node gateway's audit event; with AUDIT_SINK_URL
  // and the Durable Object, also batched to the sink by the `audit:<n>` objects.
  const audit = new EdgeAudit(state, auditSinkSettings(env));
  if (typeof env.AUDIT_SINK_URL === 'string' && env.AUDIT_SINK_URL !== '' && !state) {
    console.warn(JSON.stringify({ level: 'warn', msg: 'AUDIT_SINK_URL is set but GATEWAY_STATE is not bound: audit events go to the console only' }));
  }
  const observer = {
    ready: () => audit.ready(),
    record: (event: GatewayAuditEvent) => audit.record(event),
  };
  // X-Forwarded-For as the Node gateway sends it: the caller's address, here as Cloudflare saw it.
  const forwarder = fetchForwarder(fetch, { clientAddress: (request) => request.headers.get('cf-connecting-ip') ?? undefined });
  const mcpApp = gatewayApp(routes, {
    observer,
    forwarder,
    sessions: state ? new DurableSessionBindings(state, { idleMs }) : new SessionBindings({ idleMs }),
    approvals: state ? new DurableApprovals(state) : new ApprovalMemory(),
  });
  let app: EdgeApp = mcpApp;
  try {
    // `kind: web` routes (web.ts): served in front of the MCP routes when the config has any.
    app = edgeWebApp(config, mcpApp, routes.map((route) => route.config.path), { env: strings, state, observer, forwarder }) ?? mcpApp;
  } catch (error) {
    for (const route of routes) route.close();
    throw error;
  }
  return { source, app, routes, audit };
}

/** The MAC of the shared caches, from `MANDATE_EDGE_CACHE_KEY`; without it they are off (said once per build). A malformed key fails the build. */
function edgeCacheMac(env: GatewayWorkerEnv, kvBound: boolean): EdgeCacheMac | undefined {
  let secret: Uint8Array | undefined;
  try {
    secret = parseEdgeCacheKey(env.MANDATE_EDGE_CACHE_KEY);
  } catch (error) {
    throw new EdgeConfigError((error as Error).message);
  }
  if (secret) return new EdgeCacheMac(secret);
  console.warn(JSON.stringify({ level: 'warn', msg: `the shared caches are off: ${kvBound ? 'the verified-token cache (VERIFIED_TOKENS) and ' : ''}the key set cache (Cache API) need MANDATE_EDGE_CACHE_KEY`, reason: 'MANDATE_EDGE_CACHE_KEY is not set: their entries could not be authenticated, and KV editors or the zone\'s other Workers could plant them' }));
  return undefined;
}

let built: Built | undefined;

/** The routes for this config, compiled on first use and again when the binding changes. */
function routesFor(env: GatewayWorkerEnv): Built {
  const binding = env.MANDATE_GATEWAY_CONFIG;
  if (binding === undefined) throw new EdgeConfigError('the MANDATE_GATEWAY_CONFIG binding is not set');
  // The routes are built again when the config changes or the Durable Object binding appears or goes.
  // (No ':' before the config's: build() reads the config after the first one.)
  const sink = typeof env.AUDIT_SINK_URL === 'string' ? ` sink=${encodeURIComponent(env.AUDIT_SINK_URL)}` : '';
  const cacheKey = typeof env.MANDATE_EDGE_CACHE_KEY === 'string' && env.MANDATE_EDGE_CACHE_KEY !== '' ? ' cache-key' : '';
  const source = `${isDurableNamespace(env.GATEWAY_STATE) ? 'do' : 'isolate'}${sink}${cacheKey}:${typeof binding === 'string' ? binding : JSON.stringify(binding)}`;
  if (built?.source === source) return built;
  const next = build(source, env);
  for (const route of built?.routes ?? []) route.close();
  built = next;
  return built;
}

/**
 * A streamed answer (SSE: a call's progress, a GET stream) that is cancelled when the client goes
 * away, and audited so (`client_closed`, 499). workerd tells a Worker through `request.signal` (with
 * the compatibility flag `enable_request_signal`); the cancel, and the audit event written at the
 * stream's end, then run under `ctx.waitUntil`. Without it, workerd ends the request's work when the
 * client goes away, before any cancellation runs: the upstream streams end, but no event is written.
 * Pulled chunk by chunk, as the stream it wraps.
 */
function cancelledWithClient(body: ReadableStream<Uint8Array>, signal: AbortSignal | undefined, settled: () => Promise<void>, ctx: WorkerContext): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  const gone = () => {
    ctx.waitUntil(
      reader
        .cancel(new Error('the client went away'))
        .catch(() => undefined)
        .then(settled),
    );
  };
  signal?.addEventListener('abort', gone, { once: true });
  const ended = () => signal?.removeEventListener('abort', gone);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (error) {
        ended();
        controller.error(error);
        return;
      }
      if (!chunk.done) return controller.enqueue(chunk.value);
      ended();
      controller.close();
    },
    cancel(reason) {
      ended();
      return reader.cancel(reason);
    },
  });
}

/** The response as sent: a stream cancelled when its client goes away; the request held until its event is in the Durable Object. */
function sent(request: Request, response: Response, audit: EdgeAudit, ctx: WorkerContext): Response {
  const id = response.headers.get('x-request-id');
  if (!id) return response;
  // The request lasts until its audit event is in the Durable Object (after a stream, at its end).
  if (audit.shipping) ctx.waitUntil(audit.settled(id));
  if (!response.body || !(response.headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream')) return response;
  return new Response(cancelledWithClient(response.body, request.signal, () => audit.settled(id), ctx), response);
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
    const response = current.app.fetch(request, env, ctx as never);
    return response instanceof Promise ? response.then((answer) => sent(request, answer, current.audit, ctx)) : sent(request, response, current.audit, ctx);
  },
};
