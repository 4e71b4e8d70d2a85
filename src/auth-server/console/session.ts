import type { Context } from 'hono';
import { deleteCookie, getCookie, setCookie } from 'hono/cookie';
import { createHash } from 'node:crypto';
import { ADMIN_SCOPES, adminResourceId, type Caller } from '../../admin/index.ts';
import { base64url, constantTimeEqual, randomToken } from '../../core/encoding.ts';
import { formatScope } from '../../core/scopes.ts';
import { adminCaller } from '../admin-api/caller.ts';
import type { ServerContext } from '../context.ts';

/** The console is a client like any other (docs/console.md): public, PKCE, this redirect only. */
export const CONSOLE_CLIENT_ID = 'mandate-console';

/** How the console reaches the authorization server's own endpoints: in process, through the app. */
export type InnerFetch = (path: string, form: Record<string, string>, c: Context) => Promise<Response>;

/** A signed-in console: the admin's tokens stay here, on the server; the browser holds a random key. */
export interface ConsoleSession {
  /** Public identifier, named in audit events as the session id (the cookie value never is). */
  sid: string;
  username: string;
  accessToken: string;
  refreshToken?: string;
  /** When the access token expires, epoch seconds. */
  expiresAt: number;
  csrf: string;
}

/** A sign-in on its way: the PKCE verifier, bound to the browser that began it. */
interface PendingSignIn {
  verifier: string;
  bind: string;
}

const https = (ctx: ServerContext) => ctx.issuer.startsWith('https://');
/** `__Host-` over https: only this host, path /, Secure (RFC 6265bis §4.1.3.2). */
const sessionCookie = (ctx: ServerContext) => (https(ctx) ? '__Host-mandate_console' : 'mandate_console');
const sessionCookiePath = (ctx: ServerContext) => (https(ctx) ? '/' : '/console');
const LOGIN_COOKIE = 'mandate_console_login';
const cacheKey = (id: string) => `console:${id}`;

export const redirectUri = (ctx: ServerContext) => ctx.url('/console/callback');

/**
 * Makes sure the console's client exists with this issuer's redirect URI: created by the
 * authorization server itself (source `config`, so the admin plane does not let it be changed
 * or deleted), once per process.
 */
export function consoleClientKeeper(ctx: ServerContext) {
  let ready: Promise<void> | undefined;
  const ensure = async () => {
    const existing = await ctx.store.clients.find(CONSOLE_CLIENT_ID);
    const want = redirectUri(ctx);
    if (existing?.metadata.redirect_uris.length === 1 && existing.metadata.redirect_uris[0] === want && existing.metadata.token_endpoint_auth_method === 'none') return;
    await ctx.store.clients.upsert({
      clientId: CONSOLE_CLIENT_ID,
      source: 'config',
      metadata: {
        client_name: `${ctx.config.branding.product_name} console`,
        redirect_uris: [want],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
        token_endpoint_auth_method: 'none',
        default_resource: adminResourceId(ctx.issuer),
      },
      disabledAt: existing?.disabledAt,
      tokensValidAfter: existing?.tokensValidAfter,
      createdAt: existing?.createdAt ?? ctx.now(),
      lastUsedAt: existing?.lastUsedAt,
    });
    ctx.log.info({ client_id: CONSOLE_CLIENT_ID }, 'console client created');
  };
  return () => {
    ready ??= ensure().catch((error: unknown) => {
      ready = undefined;
      throw error;
    });
    return ready;
  };
}

/** Starts a sign-in: authorization code + PKCE (S256) for every admin scope; roles narrow them. */
export async function beginSignIn(ctx: ServerContext, c: Context): Promise<string> {
  const state = randomToken(24);
  const verifier = randomToken(32);
  const bind = randomToken(24);
  await ctx.cache.set(`console-login:${state}`, { verifier, bind } satisfies PendingSignIn, ctx.config.tokens.interaction_ttl);
  setCookie(c, LOGIN_COOKIE, bind, { path: '/console/callback', httpOnly: true, sameSite: 'Lax', secure: https(ctx), maxAge: ctx.config.tokens.interaction_ttl });
  const challenge = base64url(createHash('sha256').update(verifier).digest());
  const url = new URL(ctx.url('/authorize'));
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: CONSOLE_CLIENT_ID,
    redirect_uri: redirectUri(ctx),
    scope: formatScope([...ADMIN_SCOPES]),
    resource: adminResourceId(ctx.issuer),
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  return url.href;
}

export type CallbackResult = { session: ConsoleSession } | { refused: 'not_admin' | 'denied' | 'invalid'; description: string };

/** The redirect back: checks state, browser binding and issuer (RFC 9207), then redeems the code here. */
export async function finishSignIn(ctx: ServerContext, c: Context, innerFetch: InnerFetch): Promise<CallbackResult> {
  const q = (name: string) => c.req.query(name);
  const state = q('state');
  const pending = state ? await ctx.cache.get<PendingSignIn>(`console-login:${state}`) : undefined;
  const bind = getCookie(c, LOGIN_COOKIE);
  if (!pending || !bind || !constantTimeEqual(bind, pending.bind)) return { refused: 'invalid', description: 'this sign-in was not started in this browser, or it took too long; sign in again' };
  await ctx.cache.delete(`console-login:${state!}`);
  deleteCookie(c, LOGIN_COOKIE, { path: '/console/callback' });
  if (q('iss') !== ctx.issuer) return { refused: 'invalid', description: 'the answer did not come from this authorization server' };
  const error = q('error');
  if (error === 'invalid_scope') return { refused: 'not_admin', description: q('error_description') ?? 'your account holds no administrative role' };
  if (error) return { refused: 'denied', description: q('error_description') ?? error };
  const code = q('code');
  if (!code) return { refused: 'invalid', description: 'the answer carried no code' };
  const res = await innerFetch('/token', { grant_type: 'authorization_code', code, redirect_uri: redirectUri(ctx), client_id: CONSOLE_CLIENT_ID, code_verifier: pending.verifier }, c);
  const body = (await res.json()) as Record<string, unknown>;
  if (res.status !== 200 || typeof body.access_token !== 'string') return { refused: 'invalid', description: `the code was not redeemed: ${String(body.error_description ?? body.error ?? res.status)}` };
  const session = await startSession(ctx, c, body, '');
  return { session };
}

async function startSession(ctx: ServerContext, c: Context, tokens: Record<string, unknown>, username: string): Promise<ConsoleSession> {
  const id = randomToken(32);
  const session: ConsoleSession = {
    sid: randomToken(12),
    username,
    accessToken: tokens.access_token as string,
    refreshToken: typeof tokens.refresh_token === 'string' ? tokens.refresh_token : undefined,
    expiresAt: ctx.now() + (typeof tokens.expires_in === 'number' ? tokens.expires_in : 300),
    csrf: randomToken(24),
  };
  await ctx.cache.set(cacheKey(id), session, ctx.config.tokens.session_ttl);
  setCookie(c, sessionCookie(ctx), id, { path: sessionCookiePath(ctx), httpOnly: true, sameSite: 'Lax', secure: https(ctx), maxAge: ctx.config.tokens.session_ttl });
  return session;
}

export async function saveSession(ctx: ServerContext, c: Context, session: ConsoleSession): Promise<void> {
  const id = getCookie(c, sessionCookie(ctx));
  if (id) await ctx.cache.set(cacheKey(id), session, ctx.config.tokens.session_ttl);
}

export async function loadSession(ctx: ServerContext, c: Context): Promise<ConsoleSession | undefined> {
  const id = getCookie(c, sessionCookie(ctx));
  return id ? ctx.cache.get<ConsoleSession>(cacheKey(id)) : undefined;
}

/** Sign-out: the tokens are revoked (the refresh token ends the grant), the session forgotten. */
export async function endSession(ctx: ServerContext, c: Context, session: ConsoleSession | undefined, innerFetch: InnerFetch): Promise<void> {
  const id = getCookie(c, sessionCookie(ctx));
  if (session) {
    if (session.refreshToken) await innerFetch('/revoke', { token: session.refreshToken, token_type_hint: 'refresh_token', client_id: CONSOLE_CLIENT_ID }, c);
    await innerFetch('/revoke', { token: session.accessToken, token_type_hint: 'access_token', client_id: CONSOLE_CLIENT_ID }, c);
  }
  if (id) await ctx.cache.delete(cacheKey(id));
  deleteCookie(c, sessionCookie(ctx), { path: sessionCookiePath(ctx), secure: https(ctx) });
}

/**
 * The admin behind a console session, built like every admin front end's (adminCaller): a fresh
 * access token (refreshed when it is about to expire), roles read now. Undefined: sign in again.
 */
export async function sessionCaller(
  ctx: ServerContext,
  c: Context,
  session: ConsoleSession,
  innerFetch: InnerFetch,
  requestId: string,
): Promise<{ caller: Caller } | { refused: string }> {
  if (session.expiresAt - 30 <= ctx.now() && session.refreshToken) {
    const res = await innerFetch('/token', { grant_type: 'refresh_token', refresh_token: session.refreshToken, client_id: CONSOLE_CLIENT_ID }, c);
    const body = (await res.json()) as Record<string, unknown>;
    if (res.status === 200 && typeof body.access_token === 'string') {
      session.accessToken = body.access_token;
      if (typeof body.refresh_token === 'string') session.refreshToken = body.refresh_token;
      session.expiresAt = ctx.now() + (typeof body.expires_in === 'number' ? body.expires_in : 300);
      await saveSession(ctx, c, session);
    }
  }
  const result = await adminCaller(ctx, session.accessToken, { frontEnd: 'console', requestId, sessionId: session.sid });
  if ('refused' in result) return { refused: result.refused };
  if (session.username !== result.caller.username) {
    session.username = result.caller.username;
    await saveSession(ctx, c, session);
  }
  return result;
}

/** Whether a POST carries the session's CSRF token. */
export const csrfHolds = (session: ConsoleSession, sent: unknown) => typeof sent === 'string' && sent.length > 0 && constantTimeEqual(sent, session.csrf);
