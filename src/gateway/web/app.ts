import { Hono, type Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import type { JWK } from 'jose';
import { IDENTITY_JWKS_PATH } from '../../config/gateway-web-schema.ts';
import { auditRequests, type GatewayObserver } from '../filters/audit.ts';
import type { Forwarder } from '../filters/proxy.ts';
import type { GatewayAuditEvent, GatewayEnv } from '../types.ts';
import type { IdentitySigner } from './assertion.ts';
import { forwardToApp } from './forward.ts';
import { RelyingPartyError } from './oidc.ts';
import { forbiddenPage, signedOutPage, signInFailedPage, type GatewayPage } from './pages.ts';
import type { CompiledWebRoute } from './route.ts';
import { randomId } from './seal.ts';
import { WebSessionStoreUnavailable, type WebSession, type WebSessionStore } from './store.ts';

export interface WebDependencies {
  observer: GatewayObserver;
  forwarder: Forwarder;
  store: WebSessionStore;
  /** The identity assertion key: an `IdentitySigner`, or one made on first use (the edge). */
  signer: Pick<IdentitySigner, 'assert'> & { jwks(): { keys: JWK[] } | Promise<{ keys: JWK[] }> };
}

/** How long a started sign-in may take (the person types a password, maybe a TOTP code). */
const SIGN_IN_TTL_SECONDS = 600;
/** A session's last use is written at most this often (one store write per minute, not per request). */
const TOUCH_EVERY_SECONDS = 60;
/** Logout token `jti`s are remembered this long (longer than the tokens are accepted). */
const LOGOUT_JTI_TTL_SECONDS = 900;

const now = () => Math.floor(Date.now() / 1000);

/**
 * The web routes (issue 15) as a Hono app: the gateway's identity JWKS, and for each route its own
 * paths (callback, logout, back-channel logout, signed-out page) and everything else proxied to
 * the app once a session allows it. One audit event per request, through the gateway's sink.
 */
export function webApp(routes: CompiledWebRoute[], deps: WebDependencies): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  app.get(IDENTITY_JWKS_PATH, async (c) => c.json(await deps.signer.jwks(), 200, { 'cache-control': 'public, max-age=300', 'access-control-allow-origin': '*' }));
  for (const route of routes) {
    const handler = webRouteHandler(route, deps);
    const prefix = route.config.path.replace(/\/$/, '');
    if (prefix) app.all(prefix, (c) => c.redirect(`${route.config.path}${new URL(c.req.url).search}`, 308));
    // One audit event per request through the gateway's sink, as on MCP routes (same filter).
    app.all(`${prefix}/*`, auditRequests(route, deps.observer), handler);
  }
  app.onError((error, c) => {
    console.error(error);
    return c.text('internal error', 500);
  });
  return app;
}

/**
 * Which requests the web app serves (the server sends the rest to the MCP routes): its JWKS, and
 * paths under a web route — unless an MCP route's longer prefix matches (a web route at `/` beside
 * an MCP route at `/mcp`), or it is the MCP routes' protected resource metadata.
 */
export function webPathMatcher(routes: CompiledWebRoute[], mcpPaths: string[] = []): (path: string) => boolean {
  const under = (path: string, prefix: string) => {
    const bare = prefix.replace(/\/$/, '');
    return path === bare || path.startsWith(`${bare}/`);
  };
  const longest = (path: string, prefixes: string[]) => Math.max(-1, ...prefixes.filter((prefix) => under(path, prefix)).map((prefix) => prefix.replace(/\/$/, '').length));
  const webPaths = routes.map((route) => route.config.path);
  return (path) => {
    if (path === IDENTITY_JWKS_PATH) return true;
    if (path.startsWith('/.well-known/oauth-protected-resource')) return false;
    const web = longest(path, webPaths);
    return web >= 0 && web >= longest(path, mcpPaths);
  };
}

function send(c: Context, page: GatewayPage): Response {
  return c.body(page.body, page.status as 200, page.headers);
}

function webRouteHandler(route: CompiledWebRoute, deps: WebDependencies) {
  const config = route.config;
  const { paths, cookie } = route;
  const publicUrl = config.public_url;

  const readSession = async (c: Context): Promise<{ id: string; session: WebSession } | undefined> => {
    const id = await route.sealer.unseal(getCookie(c, cookie.session), 'session');
    if (!id) return undefined;
    const session = await deps.store.get(id);
    return session && session.route === config.path ? { id, session } : undefined;
  };

  const sessionTtl = (session: WebSession) => Math.max(1, Math.min(config.session.idle_seconds, session.expiresAt - now()));

  /** No session: a page load goes to the AS; anything else (a form post, a fetch) gets 401. */
  const startSignIn = async (c: Context<GatewayEnv>, event: GatewayAuditEvent, reason: string): Promise<Response> => {
    event.decision = 'deny';
    event.rejection = 'no_session';
    event.reason = reason;
    if (c.req.method !== 'GET' && c.req.method !== 'HEAD') {
      return send(c, await signInFailedPage({ status: 401, message: 'You are not signed in, or your session has ended. Sign in and try again.', retry: config.path }));
    }
    const url = new URL(c.req.url);
    let started;
    try {
      started = await route.rp.startSignIn();
    } catch (error) {
      const refused = error instanceof RelyingPartyError && error.rejection === 'par_failed';
      event.decision = 'error';
      event.rejection = refused ? 'par_failed' : 'as_unavailable';
      event.reason = (error as Error).message;
      const message = refused ? 'The sign-in service refused to start the sign-in.' : 'The sign-in service cannot be reached right now.';
      return send(c, await signInFailedPage({ status: refused ? 502 : 503, message, retry: `${url.pathname}${url.search}` }));
    }
    await deps.store.putPending(started.state, { route: config.path, codeVerifier: started.codeVerifier, nonce: started.nonce, returnTo: safeReturn(`${url.pathname}${url.search}`, config.path), createdAt: now() }, SIGN_IN_TTL_SECONDS);
    // The state is also sealed into a cookie: the callback completes only in the browser that began it (login CSRF).
    setCookie(c, cookie.signIn, await route.sealer.seal(started.state, 'signin'), { ...cookie.options, maxAge: SIGN_IN_TTL_SECONDS });
    event.web = 'signin_started';
    return c.redirect(started.url, 302);
  };

  const callback = async (c: Context<GatewayEnv>, event: GatewayAuditEvent): Promise<Response> => {
    const state = c.req.query('state');
    const bound = await route.sealer.unseal(getCookie(c, cookie.signIn), 'signin');
    deleteCookie(c, cookie.signIn, cookie.options);
    const fail = async (status: number, rejection: string, reason: string, message: string) => {
      event.decision = 'deny';
      event.rejection = rejection;
      event.reason = reason;
      return send(c, await signInFailedPage({ status, message, retry: config.path }));
    };
    if (!state || !bound || !constantTimeEqual(state, bound)) {
      return fail(400, 'signin_failed', 'the state does not match the sign-in this browser started', 'This sign-in was not started in this browser, or it took too long.');
    }
    const pending = await deps.store.takePending(state);
    if (!pending || pending.route !== config.path) return fail(400, 'signin_failed', 'unknown, expired or already used state', 'This sign-in has expired or was already used.');
    let signedIn;
    try {
      signedIn = await route.rp.finishSignIn(new URL(c.req.url), { ...pending, state });
    } catch (error) {
      const failure = error instanceof RelyingPartyError ? error : new RelyingPartyError('signin_failed', (error as Error).message);
      const denied = failure.rejection === 'signin_denied';
      return fail(denied ? 403 : 502, failure.rejection, failure.message, denied ? 'The sign-in was cancelled or refused.' : 'The sign-in could not be completed.');
    }
    // A new id at each sign-in (no session fixation); an older session of this browser ends.
    const previous = await readSession(c);
    if (previous) await deps.store.delete(previous.id);
    const id = randomId();
    const at = now();
    const session: WebSession = { route: config.path, ...signedIn, createdAt: at, lastSeenAt: at, expiresAt: at + config.session.absolute_seconds };
    await deps.store.save(id, session, sessionTtl(session));
    setCookie(c, cookie.session, await route.sealer.seal(id, 'session'), cookie.options);
    event.sub = session.sub;
    event.web = 'signed_in';
    return c.redirect(safeReturn(pending.returnTo, config.path), 302);
  };

  const logout = async (c: Context<GatewayEnv>, event: GatewayAuditEvent): Promise<Response> => {
    const found = await readSession(c);
    if (found) await deps.store.delete(found.id);
    deleteCookie(c, cookie.session, cookie.options);
    event.web = 'signed_out';
    if (found) event.sub = found.session.sub;
    const signedOut = `${publicUrl}${paths.signedOut}`;
    // RP-Initiated Logout 1.0: the AS ends its own session too, then sends the browser back here.
    const endSession = await route.rp.endSessionUrl(found?.session.idToken, signedOut);
    return c.redirect(endSession ?? paths.signedOut, 302);
  };

  const backchannel = async (c: Context<GatewayEnv>, event: GatewayAuditEvent): Promise<Response> => {
    const refuse = (rejection: string, reason: string, status = 400) => {
      event.decision = 'deny';
      event.rejection = rejection;
      event.reason = reason;
      // Back-Channel Logout 1.0 §2.8: 400 with an OAuth error body; never cached.
      return c.json({ error: 'invalid_request', error_description: 'the logout token was refused' }, status as 400, { 'cache-control': 'no-store' });
    };
    if (c.req.method !== 'POST') return refuse('method_not_allowed', `${c.req.method} is not POST`, 405);
    if (!(c.req.header('content-type') ?? '').toLowerCase().startsWith('application/x-www-form-urlencoded')) return refuse('malformed', 'not application/x-www-form-urlencoded');
    const text = await c.req.text();
    if (text.length > 16_384) return refuse('malformed', 'body too large');
    const token = new URLSearchParams(text).get('logout_token');
    if (!token) return refuse('malformed', 'no logout_token');
    let verified;
    try {
      verified = await route.rp.verifyLogoutToken(token);
    } catch (error) {
      const failure = error as RelyingPartyError;
      if (failure.rejection === 'as_unavailable') return refuse('as_unavailable', failure.message, 503);
      return refuse('logout_token_invalid', failure.message);
    }
    if (!(await deps.store.firstUse(`${config.path}\n${config.oidc.issuer}\n${verified.jti}`, LOGOUT_JTI_TTL_SECONDS))) {
      return refuse('logout_token_replayed', `logout token jti ${verified.jti} was already used`);
    }
    const ended = await deps.store.endMatching(config.path, { sid: verified.sid, sub: verified.sub });
    event.web = 'backchannel_logout';
    if (verified.sub) event.sub = verified.sub;
    event.reason = `ended ${ended} session(s) for ${verified.sid ? `sid ${verified.sid}` : `sub ${verified.sub}`}`;
    return c.body(null, 200, { 'cache-control': 'no-store' });
  };

  /** Refreshes at most once at a time per session in this process: a rotated refresh token is used once. */
  const refreshing = new Map<string, Promise<WebSession>>();
  const refreshed = (id: string, session: WebSession): Promise<WebSession> => {
    let running = refreshing.get(id);
    if (!running) {
      running = (async () => {
        const fresh = await route.rp.refresh(session.refreshToken!, session.sub);
        const next: WebSession = {
          ...session,
          accessToken: fresh.accessToken,
          refreshToken: fresh.refreshToken,
          accessExpiresAt: fresh.accessExpiresAt,
          ...(fresh.idToken ? { idToken: fresh.idToken, claims: { ...session.claims, ...fresh.idClaims } } : {}),
        };
        return next;
      })().finally(() => refreshing.delete(id));
      refreshing.set(id, running);
    }
    return running;
  };

  const protectedRequest = async (c: Context<GatewayEnv>, event: GatewayAuditEvent): Promise<Response> => {
    const found = await readSession(c);
    if (!found) return startSignIn(c, event, getCookie(c, cookie.session) ? 'unknown or ended session' : 'no session cookie');
    let { session } = found;
    const at = now();
    if (at >= session.expiresAt || at - session.lastSeenAt >= config.session.idle_seconds) {
      await deps.store.delete(found.id);
      return startSignIn(c, event, at >= session.expiresAt ? 'session reached its absolute lifetime' : 'session idle too long');
    }
    event.sub = session.sub;
    let dirty = at - session.lastSeenAt >= TOUCH_EVERY_SECONDS;
    if (session.refreshToken && session.accessExpiresAt !== undefined && session.accessExpiresAt - at <= config.session.refresh_before_seconds) {
      try {
        session = await refreshed(found.id, session);
        event.web = 'refreshed';
        dirty = true;
      } catch (error) {
        // The AS no longer renews this sign-in (revoked, expired, signed out): sign in again.
        await deps.store.delete(found.id);
        return startSignIn(c, event, (error as Error).message);
      }
    }
    if (dirty) {
      session.lastSeenAt = at;
      // Renewed only if still there: a sign-out or back-channel logout (through another instance)
      // since this request read it must not be undone by this write.
      if (!(await deps.store.renew(found.id, session, sessionTtl(session)))) return startSignIn(c, event, 'session ended while in use');
    }
    const path = c.req.path;
    for (const rule of route.rules) {
      let allowed: unknown;
      try {
        allowed = rule.allow.evaluate({ claims: session.claims, sub: session.sub, path, http_method: c.req.method, route: config.path });
      } catch {
        allowed = false;
      }
      if (allowed !== true) {
        event.decision = 'deny';
        event.rejection = 'rule_denied';
        event.reason = rule.reason ?? `rule ${rule.allow.source} refused`;
        const who = String(session.claims.preferred_username ?? session.claims.email ?? session.sub);
        return send(c, await forbiddenPage({ who, path, reason: rule.reason, home: config.path, logout: paths.logout }));
      }
    }
    return forwardToApp(c, route, session, deps);
  };

  return async function webRouteMiddleware(c: Context<GatewayEnv>): Promise<Response> {
    // The audit filter (first, as on MCP routes) has stamped the request and writes its event.
    const event = c.get('audit');
    event.path = c.req.path;
    c.set('upstreamAuthorization', undefined);
    const path = c.req.path;
    try {
      if (path === paths.callback) return await callback(c, event);
      if (path === paths.logout) return await logout(c, event);
      if (path === paths.backchannel) return await backchannel(c, event);
      if (path === paths.signedOut) return send(c, await signedOutPage({ signIn: paths.signIn }));
      return await protectedRequest(c, event);
    } catch (error) {
      if (!(error instanceof WebSessionStoreUnavailable)) throw error;
      // Fail closed: no session is assumed, none is granted; the reason is in the audit event.
      event.decision = 'error';
      event.rejection = 'session_store_unavailable';
      event.reason = error.message;
      const page = await signInFailedPage({ status: 503, title: 'Temporarily unavailable', message: 'Sessions cannot be checked right now. Try again in a moment.', retry: path });
      return c.body(page.body, 503, { ...page.headers, 'retry-after': '1' });
    }
  };
}

/**
 * Where to go after sign-in: a path of this route on the gateway's own origin only (no open
 * redirect: never `//host`, `/\host`, or a scheme), else the route's start page.
 */
export function safeReturn(target: string, routePath: string): string {
  if (!target.startsWith(routePath) || target.startsWith('//') || target.startsWith('/\\') || /[\r\n\t]/.test(target)) return routePath;
  try {
    const base = 'http://gateway.invalid';
    const url = new URL(target, base);
    return url.origin === base && url.pathname.startsWith(routePath) ? `${url.pathname}${url.search}` : routePath;
  } catch {
    return routePath;
  }
}

function constantTimeEqual(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}
