import { Hono, type Context, type ErrorHandler, type Handler, type MiddlewareHandler, type NotFoundHandler } from 'hono';
import { ApprovalMemory, type ApprovalStore } from './approvals.ts';
import { approveCalls } from './filters/approve.ts';
import { auditRequests, type GatewayObserver } from './filters/audit.ts';
import { authorizeTools } from './filters/authorize.ts';
import { corsForOrigins } from './filters/cors.ts';
import { mediate } from './filters/mediate.ts';
import { protect } from './filters/protect.ts';
import { pinTools } from './filters/pins.ts';
import { proxy, type Forwarder } from './filters/proxy.ts';
import { pinningForwarder } from './pins/forwarder.ts';
import { multiplex } from './mux/index.ts';
import { GATEWAY_ERRORS } from './filters/refuse.ts';
import { throttle } from './filters/throttle.ts';
import { validateMcp } from './filters/validate.ts';
import type { CompiledRoute } from './route.ts';
import type { GatewayAuditEvent, GatewayEnv, GatewayFilter } from './types.ts';
import { SessionBindings, type SessionStore } from './sessions.ts';

export interface ChainDependencies {
  observer: GatewayObserver;
  forwarder: Forwarder;
  /** Who opened which MCP session; kept across route reloads (shared through Redis on Node when REDIS_URL is set). */
  sessions?: SessionStore;
  /** Calls held for approval, by retry key; kept across route reloads (shared through Redis on Node when REDIS_URL is set). */
  approvals?: ApprovalStore;
}

/**
 * The gateway's filter chain for one route, in order. The order is the design: each filter may
 * rely on everything above it, and the costly steps come after the cheap refusals.
 */
export function routeChain(route: CompiledRoute, deps: ChainDependencies): GatewayFilter[] {
  const config = route.config;
  const forwarder = route.pins ? pinningForwarder(route.pins, deps.forwarder) : deps.forwarder;
  return [
    // 1. Audit: first, so that the one event per MCP message also covers every refusal below;
    //    it is written when the response has been sent, with the outcome and the latency.
    auditRequests(route, deps.observer),
    // 2. CORS: a browser's preflight carries no token and no MCP message, so it is answered before
    //    validation would refuse it; allowed origins get their headers on every response.
    corsForOrigins(config.allowed_origins),
    // 3. Validation: Origin, Accept, size, JSON-RPC and MCP shape, protocol revision, standard
    //    headers. Cheapest refusals first; nothing below reads an unchecked request.
    validateMcp({ allowedOrigins: config.allowed_origins, maxBodyBytes: config.max_body_bytes, maxJsonDepth: config.max_json_depth, protocolVersions: config.protocol_versions }) as unknown as GatewayFilter,
    // 4. Protection: the token (signature, iss, aud = this resource, exp/nbf, typ), the route's
    //    scopes and rules. Every decision below depends on who is calling.
    protect(route, deps.sessions),
    // 5. Tool authorization: per-tool scopes and CEL over claims, act chain and arguments; needs
    //    the caller (4) and the parsed call (3). Filters tools/list answers.
    authorizeTools(route),
    // 5b. Tool pinning: a call of a tool whose definition changed since it was approved is refused
    //     (or audited); after authorization, so a call refused anyway costs no AS round trip, and
    //     before throttling and approval, so such a call spends no budget and asks nobody.
    //     tools/list answers are judged on their way back by the pinning forwarder (9).
    ...(route.pins ? [pinTools(route)] : []),
    // 6. Throttling: after authorization, so refused calls spend no budget and buckets can be keyed
    //    by the verified caller, actor and tool rather than by anything a client claims. Before
    //    approval: a held call spends budget too, so an agent cannot fill the person's pending
    //    approvals beyond the route's limits, and an approved retry refused here keeps its approval.
    throttle(route),
    // 7. Approval of high-risk calls: only a call the caller may make at all, and may make now, is
    //    worth the user's approval (a refused one must not create a transaction), and the AS round
    //    trips it costs are paid only by calls of tools marked `approval`. Nothing it holds reaches
    //    the upstream. Left out of a route without `approvals` (it would only pass every request on).
    ...(route.approvals ? [approveCalls(route, { store: deps.approvals })] : []),
    // 8. Token mediation: a token exchange costs an AS round trip; only calls that will really be
    //    forwarded pay it. Decides the upstream Authorization (none by default: the filter is then
    //    left out, and the upstream gets no Authorization, as it would from the filter).
    ...(route.mediator ? [mediate(route)] : []),
    // 9. Proxy: path rewrite and forwarding, streaming, upstream failures as 502/504.
    //    A route with several upstreams: the multiplexer answers initialize and the lists itself
    //    and dispatches calls (docs/gateway.md "Several MCP servers behind one route").
    config.upstreams ? multiplex(route, forwarder, deps.sessions ?? new SessionBindings()) : proxy(config, forwarder, deps.sessions),
  ];
}

/**
 * A route's chain as one handler, run in order with the semantics of Hono's `compose` (a filter
 * that answers ends the chain and its Response becomes `c.res`, seen by the filters around it; an
 * error a filter throws becomes `onError`'s answer at that level), without the per-request work
 * Hono does for a list of matched handlers: the app matches one handler per route.
 */
export function runChain(filters: GatewayFilter[], onError: ErrorHandler<GatewayEnv>): MiddlewareHandler<GatewayEnv> {
  const count = filters.length;
  return function chainHandler(c, next) {
    let index = -1;
    // Not `instanceof Response`: on Node the adapter replaces the global Response class, and the
    // forwarder's RESPONSE_ALREADY_SENT is an instance of the original one.
    const settle = (res: unknown): void => {
      if (res && !c.finalized) c.res = res as Response;
    };
    // An error becomes onError's answer at this level, even over an answer already set.
    const fail = (error: unknown): void | Promise<void> => {
      if (!(error instanceof Error)) throw error;
      c.error = error;
      const res = onError(error, c as Context<GatewayEnv>);
      if (isPromise(res)) return res.then((answer) => void (answer && (c.res = answer)));
      if (res) c.res = res;
    };
    // Each level settles when its filter has: no async frame of its own, one promise per filter.
    const dispatch = (i: number): Promise<void> => {
      if (i <= index) return Promise.reject(new Error('next() called multiple times'));
      index = i;
      let res: unknown;
      try {
        res = i < count ? filters[i]!(c, () => dispatch(i + 1)) : next();
      } catch (error) {
        try {
          return Promise.resolve(fail(error));
        } catch (rethrown) {
          return Promise.reject(rethrown);
        }
      }
      if (res instanceof Promise) return res.then(settle, fail);
      if (isPromise(res)) return Promise.resolve(res).then(settle, fail);
      settle(res);
      return RESOLVED;
    };
    // Not finalized (no filter answered): undefined, and Hono answers with the not-found handler.
    return dispatch(0).then(() => (c.finalized ? c.res : undefined));
  };
}

const RESOLVED = Promise.resolve();
const isPromise = <T>(value: unknown): value is PromiseLike<T> => typeof (value as PromiseLike<T> | undefined)?.then === 'function';

/** Never a stack trace on the wire; the request's audit event says it failed (not `allow`). */
const internalError: ErrorHandler<GatewayEnv> = (error, c) => {
  console.error(error);
  const audit = c.get('audit') as GatewayAuditEvent | undefined;
  if (audit) {
    audit.decision = 'error';
    audit.rejection ??= 'internal_error';
    audit.reason ??= error.message;
  }
  return c.json({ jsonrpc: '2.0', id: null, error: { code: GATEWAY_ERRORS.unavailable, message: 'internal error' } }, 500);
};

/** A route's chain as one handler, by the path prefix it serves (`<prefix>`, `<prefix>/`, `<prefix>/…`). */
export interface RouteHandler {
  prefix: string;
  handler: MiddlewareHandler<GatewayEnv>;
  /** Whether the route has several upstreams (the multiplexer reads the web request's headers). */
  multiplexed: boolean;
}

/** The gateway's handlers: the Hono app, and each route's chain for a runtime entry that runs them itself (src/gateway/node/listener.ts). */
export interface GatewayHandlers {
  app: Hono<GatewayEnv>;
  routes: RouteHandler[];
  /** The paths the app answers with protected resource metadata (GET). */
  metadataPaths: Set<string>;
  notFound: NotFoundHandler<GatewayEnv>;
  onError: ErrorHandler<GatewayEnv>;
}

/** Answers a path no route serves. */
const notFound: NotFoundHandler<GatewayEnv> = (c) => c.json({ jsonrpc: '2.0', id: null, error: { code: -32601, message: 'no MCP route at this path' } }, 404);

/** The gateway as a Hono app: protected resource metadata and each route's chain. */
export function gatewayApp(routes: CompiledRoute[], dependencies: ChainDependencies): Hono<GatewayEnv> {
  return gatewayHandlers(routes, dependencies).app;
}

/** {@link gatewayApp}, with each route's chain handler as well. */
export function gatewayHandlers(routes: CompiledRoute[], dependencies: ChainDependencies): GatewayHandlers {
  const deps = { ...dependencies, sessions: dependencies.sessions ?? new SessionBindings(), approvals: dependencies.approvals ?? new ApprovalMemory() };
  const app = new Hono<GatewayEnv>();
  const metadataPaths = new Set<string>();
  const metadata = (route: CompiledRoute): Handler<GatewayEnv> => (c) =>
    // RFC 9728 §3.2; public, so any page may read it.
    c.json(route.metadata, 200, { 'access-control-allow-origin': '*', 'cache-control': 'public, max-age=300' });
  for (const route of routes) {
    app.get(route.metadataPath, metadata(route));
    metadataPaths.add(route.metadataPath);
  }
  // With one route, clients that look at the root (no path insertion) find it too.
  if (routes.length === 1 && routes[0]!.metadataPath !== '/.well-known/oauth-protected-resource') {
    app.get('/.well-known/oauth-protected-resource', metadata(routes[0]!));
    metadataPaths.add('/.well-known/oauth-protected-resource');
  }
  const handlers: RouteHandler[] = [];
  for (const route of routes) {
    const prefix = route.config.path.replace(/\/$/, '');
    const handler = runChain(routeChain(route, deps), internalError);
    handlers.push({ prefix, handler, multiplexed: route.config.upstreams !== undefined });
    // `<prefix>/*` matches the prefix itself too (`/mcp`, `/mcp/`, `/mcp/x`; `/*` everything).
    app.use(`${prefix}/*`, handler);
  }
  app.notFound(notFound);
  app.onError(internalError);
  return { app, routes: handlers, metadataPaths, notFound, onError: internalError };
}
