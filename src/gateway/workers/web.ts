/**
 * `kind: web` routes in the Worker (issue 16): the gateway as an OpenID Connect relying party for a
 * web app, as on Node (src/gateway/web/), with what the edge needs instead of a data dir and Redis:
 *
 * - the keys come from secrets, never made per isolate (each isolate would sign with its own key
 *   and read no other's cookie): `MANDATE_WEB_COOKIE_KEY` (at least 32 bytes, base64/base64url or
 *   raw) seals the cookies of routes without `session.secret_env`; `MANDATE_WEB_IDENTITY_KEY` (a
 *   private EC P-256 JWK, as JSON) signs the identity assertions, its public half served at
 *   `/.well-known/mandate-gateway-jwks.json`. Missing or malformed → the routes do not build;
 * - sessions, started sign-ins and used logout tokens in the `GATEWAY_STATE` Durable Object
 *   (web-sessions.ts), or in the isolate's memory without it (per isolate!).
 */
import type { Hono } from 'hono';
import type { JWK } from 'jose';
import type { GatewayConfig, WebRouteConfig } from '../../config/gateway-schema.ts';
import type { GatewayObserver } from '../filters/audit.ts';
import type { Forwarder } from '../filters/proxy.ts';
import type { GatewayEnv } from '../types.ts';
import { webApp, webPathMatcher } from '../web/app.ts';
import { IdentitySigner } from '../web/assertion.ts';
import { compileWebRoute, type CompiledWebRoute } from '../web/route.ts';
import { secretBytes } from '../web/seal.ts';
import { MemoryWebSessions, type WebSessionStore } from '../web/store.ts';
import type { DurableNamespace } from './durable-state.ts';
import { DurableWebSessions } from './web-sessions.ts';

export const WEB_COOKIE_KEY = 'MANDATE_WEB_COOKIE_KEY';
export const WEB_IDENTITY_KEY = 'MANDATE_WEB_IDENTITY_KEY';

/** What the Worker's fetch calls: the MCP app, or the web routes in front of it. */
export type EdgeApp = Pick<Hono<GatewayEnv>, 'fetch'>;

export interface EdgeWebOptions {
  /** The Worker's string bindings (secrets included). */
  env: Record<string, string>;
  /** `GATEWAY_STATE`, when bound. */
  state?: DurableNamespace;
  observer: GatewayObserver;
  forwarder: Forwarder;
}

/** Without `GATEWAY_STATE`: this isolate's sessions, kept across a rebuild of the routes. */
let isolateSessions: MemoryWebSessions | undefined;

/** The private JWK of `MANDATE_WEB_IDENTITY_KEY`, checked for shape (the key itself is imported at first use). */
function identityJwk(value: string | undefined): JWK {
  if (!value) throw new Error(`${WEB_IDENTITY_KEY} is not set: web routes need the identity assertion key (a private EC P-256 JWK, as JSON), one for every isolate`);
  let jwk: JWK;
  try {
    jwk = JSON.parse(value) as JWK;
  } catch {
    throw new Error(`${WEB_IDENTITY_KEY} is not JSON (a private EC P-256 JWK)`);
  }
  const member = (name: string) => typeof (jwk as Record<string, unknown>)[name] === 'string' && /^[A-Za-z0-9_-]{43}$/.test((jwk as Record<string, string>)[name]!);
  if (typeof jwk !== 'object' || jwk === null || jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !member('x') || !member('y') || !member('d')) {
    throw new Error(`${WEB_IDENTITY_KEY} is not a private EC P-256 JWK (kty EC, crv P-256, x, y and d)`);
  }
  return jwk;
}

/** The identity signer, imported on first use (WebCrypto is asynchronous; the routes build synchronously). */
function lazySigner(jwk: JWK) {
  let ready: Promise<IdentitySigner> | undefined;
  const signer = () =>
    (ready ??= IdentitySigner.fromKey(jwk).catch((error: unknown) => {
      ready = undefined;
      throw new Error(`${WEB_IDENTITY_KEY} cannot be used: ${(error as Error).message}`);
    }));
  return {
    jwks: async () => (await signer()).jwks(),
    assert: async (...args: Parameters<IdentitySigner['assert']>) => (await signer()).assert(...args),
  };
}

/**
 * Compiles the config's web routes, if any, and returns the app that serves them in front of the
 * MCP app (undefined when there are none: the MCP app alone). Throws (the routes do not build)
 * when a key is missing or malformed, or a route is invalid.
 */
export function edgeWebApp(config: GatewayConfig, mcpApp: EdgeApp, mcpPaths: string[], options: EdgeWebOptions): EdgeApp | undefined {
  const configured = config.routes.map((route, index) => ({ route, index })).filter((entry): entry is { route: WebRouteConfig; index: number } => entry.route.kind === 'web');
  if (configured.length === 0) return undefined;
  const seen = new Set(mcpPaths);
  let defaultSecret: Uint8Array | undefined;
  if (configured.some(({ route }) => !route.session.secret_env)) {
    const value = options.env[WEB_COOKIE_KEY];
    if (!value) throw new Error(`${WEB_COOKIE_KEY} is not set: web routes without session.secret_env seal their cookies with it, one key for every isolate`);
    try {
      defaultSecret = secretBytes(value);
    } catch (error) {
      throw new Error(`${WEB_COOKIE_KEY}: ${(error as Error).message}`);
    }
  }
  const signer = lazySigner(identityJwk(options.env[WEB_IDENTITY_KEY]));
  const routes: CompiledWebRoute[] = configured.map(({ route, index }) => {
    if (seen.has(route.path)) throw new Error(`routes[${index}]: path ${route.path} is used twice`);
    seen.add(route.path);
    // A route with its own secret_env never reads defaultSecret.
    return compileWebRoute(route, index, { env: options.env, defaultSecret: defaultSecret ?? new Uint8Array(0), prefetch: false });
  });
  const store: WebSessionStore = options.state ? new DurableWebSessions(options.state) : (isolateSessions ??= new MemoryWebSessions());
  const web = webApp(routes, { observer: options.observer, forwarder: options.forwarder, store, signer });
  const isWeb = webPathMatcher(routes, mcpPaths);
  return {
    fetch: (request, env, ctx) => {
      // The raw path, as the routers see it (as the Node server does it).
      const start = request.url.indexOf('/', request.url.indexOf('//') + 2);
      const end = request.url.indexOf('?', start);
      const path = start < 0 ? '/' : request.url.slice(start, end < 0 ? undefined : end);
      return (isWeb(path) ? web : mcpApp).fetch(request, env, ctx);
    },
  };
}
