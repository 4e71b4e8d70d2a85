import { compileExpression, type CompiledExpression } from '../../core/cel.ts';
import type { WebRouteConfig } from '../../config/gateway-schema.ts';
import { webRoutePaths } from '../../config/gateway-web-schema.ts';
import { RouteConfigError } from '../route.ts';
import { RelyingParty } from './oidc.ts';
import { CookieSealer, secretBytes } from './seal.ts';

/** A web route with everything prepared once: its relying party, rules, cookie names and sealer. */
export interface CompiledWebRoute {
  config: WebRouteConfig;
  paths: ReturnType<typeof webRoutePaths> & { signIn: string };
  rp: RelyingParty;
  rules: { allow: CompiledExpression; reason?: string }[];
  sealer: CookieSealer;
  cookie: {
    session: string;
    signIn: string;
    /** Attributes of both cookies. */
    options: { path: string; httpOnly: true; sameSite: 'Lax'; secure: boolean };
  };
  /** `aud` of the identity assertions. */
  audience: string;
  close(): void;
}

export interface CompileWebOptions {
  env: Record<string, string | undefined>;
  /** Key material for routes without `session.secret_env` (the data dir's key, or one made at start). */
  defaultSecret: Uint8Array;
  fetch?: typeof fetch;
  /**
   * Read the AS metadata at compile time (default true). Off in a Worker: a fetch begun for no
   * request outlives none (the first request that needs the metadata reads it).
   */
  prefetch?: boolean;
}

/**
 * The cookie name with the strongest prefix the route allows (RFC 6265bis §4.1.3): `__Host-` needs
 * Secure, Path=/ and no Domain; `__Secure-` needs Secure. Over plain http (loopback only), none.
 */
export function cookieName(name: string, route: Pick<WebRouteConfig, 'path' | 'public_url'>): string {
  if (!route.public_url.startsWith('https:')) return name;
  return route.path === '/' ? `__Host-${name}` : `__Secure-${name}`;
}

export function compileWebRoute(route: WebRouteConfig, index: number, options: CompileWebOptions): CompiledWebRoute {
  const where = `routes[${index}] (${route.path})`;
  const rules = route.rules.map((rule, i) => {
    try {
      return { allow: compileExpression(rule.allow), reason: rule.reason };
    } catch (error) {
      throw new RouteConfigError(`${where} rules[${i}]: ${(error as Error).message}`);
    }
  });
  const secretOf = (name: string, what: string) => {
    const value = options.env[name];
    if (!value) throw new RouteConfigError(`${where} ${what}: environment variable ${name} is not set`);
    return value;
  };
  const clientSecret = route.oidc.client_secret_env ? secretOf(route.oidc.client_secret_env, 'oidc.client_secret_env') : undefined;
  let secret = options.defaultSecret;
  if (route.session.secret_env) {
    try {
      secret = secretBytes(secretOf(route.session.secret_env, 'session.secret_env'));
    } catch (error) {
      if (error instanceof RouteConfigError) throw error;
      throw new RouteConfigError(`${where} session.secret_env: ${(error as Error).message}`);
    }
  }
  const paths = webRoutePaths(route);
  const rp = new RelyingParty({
    issuer: route.oidc.issuer,
    clientId: route.oidc.client_id,
    clientSecret,
    redirectUri: `${route.public_url}${paths.callback}`,
    scopes: route.oidc.scopes,
    par: route.oidc.par,
    userinfo: route.oidc.userinfo,
    fetch: options.fetch,
  });
  // Read the AS metadata now, so the first visitor does not wait for it (a failure is retried then).
  if (options.prefetch ?? true) void rp.metadata().catch(() => undefined);
  const name = cookieName(route.session.cookie_name, route);
  return {
    config: route,
    paths: { ...paths, signIn: route.path },
    rp,
    rules,
    // The route and client are bound into the key: a cookie of one route is nothing at another.
    sealer: new CookieSealer(secret, `${route.path}\n${route.oidc.issuer}\n${route.oidc.client_id}`),
    cookie: {
      session: name,
      signIn: `${name}_signin`,
      options: { path: route.path, httpOnly: true, sameSite: 'Lax', secure: route.public_url.startsWith('https:') },
    },
    audience: route.identity.audience ?? route.upstream,
    close: () => undefined,
  };
}
