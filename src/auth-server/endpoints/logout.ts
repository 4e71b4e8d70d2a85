import type { Context, Hono } from 'hono';
import { compactVerify, type JWTPayload } from 'jose';
import { OAuthError } from '../../core/errors.ts';
import { constantTimeEqual, randomToken } from '../../core/encoding.ts';
import { SIGNING_ALG } from '../../core/jwt.ts';
import type { Client } from '../../core/client-metadata.ts';
import { unusableReason, type AppEnv, type ServerContext } from '../context.ts';
import { hashSecret } from '../hash.ts';
import { clearSessionCookie, currentSession, type Session } from '../interaction.ts';
import { formParams, Params } from '../params.ts';
import { errorPage, pageLook } from '../pages/layout.ts';
import { loggedOutPage, logoutConfirmPage } from '../pages/logout.ts';
import { endSessionsAndNotify } from '../sign-out.ts';
import { forgetThisBrowser } from '../remember/index.ts';
import { userSessions } from '../session-index.ts';

/** A checked RP-initiated logout request (OpenID Connect RP-Initiated Logout 1.0 §2). */
interface LogoutRequest {
  client?: Client;
  /** Registered for `client`: exact match. */
  postLogoutRedirectUri?: string;
  state?: string;
  /** The verified `id_token_hint`'s claims. */
  hint?: JWTPayload & { sid?: string };
}

/** A request waiting for the user's "Sign out" on the confirmation page. */
interface PendingLogout {
  csrf: string;
  /** Hash of the session cookie it was shown to: another session cannot answer it. */
  session: string;
  clientId?: string;
  postLogoutRedirectUri?: string;
  state?: string;
}

const pendingKey = (id: string) => `logout-request:${id}`;
const invalid = (description: string, reason?: string) => new OAuthError('invalid_request', description, { reason: reason ?? description });

/**
 * The ID token hint (RP-Initiated Logout 1.0 §2): an ID token this server issued — its signature
 * by one of our keys, our `iss`, the `typ` our ID tokens carry (so an access token, `at+jwt`, is
 * no hint). An expired one is fine: the spec expects RPs to send the last one they got.
 */
async function verifyIdTokenHint(ctx: ServerContext, token: string): Promise<JWTPayload & { sid?: string }> {
  let verified;
  try {
    verified = await compactVerify(
      token,
      async (header) => {
        const key = header.kid ? await ctx.keys.byKid(header.kid) : undefined;
        if (!key) throw invalid('id_token_hint is not an ID token issued here', `id_token_hint: unknown signing key kid=${header.kid}`);
        return key.publicKey;
      },
      { algorithms: [SIGNING_ALG] },
    );
  } catch (error) {
    if (error instanceof OAuthError) throw error;
    throw invalid('id_token_hint is not an ID token issued here', `id_token_hint: ${(error as { code?: string }).code ?? 'ERR_JWS_INVALID'}`);
  }
  if (verified.protectedHeader.typ !== 'JWT') throw invalid('id_token_hint is not an ID token', `id_token_hint: typ ${verified.protectedHeader.typ}`);
  let claims: JWTPayload & { sid?: string };
  try {
    claims = JSON.parse(new TextDecoder().decode(verified.payload)) as JWTPayload;
  } catch {
    throw invalid('id_token_hint is not an ID token', 'id_token_hint: payload is not JSON');
  }
  if (claims.iss !== ctx.issuer) throw invalid('id_token_hint is not an ID token issued here', `id_token_hint: iss ${claims.iss}`);
  if (typeof claims.sub !== 'string' || claims.aud === undefined) throw invalid('id_token_hint is not an ID token', 'id_token_hint: no sub or aud');
  return claims;
}

async function checkRequest(ctx: ServerContext, params: Params): Promise<LogoutRequest> {
  const hintToken = params.get('id_token_hint');
  const clientIdParam = params.get('client_id');
  const redirect = params.get('post_logout_redirect_uri');
  const state = params.get('state');
  const hint = hintToken ? await verifyIdTokenHint(ctx, hintToken) : undefined;
  const audiences = hint ? (Array.isArray(hint.aud) ? hint.aud : [hint.aud!]) : [];
  if (clientIdParam && hint && !audiences.includes(clientIdParam)) {
    throw invalid('client_id does not match the id_token_hint', `client_id=${clientIdParam}; id_token_hint aud=${audiences.join(' ')}`);
  }
  const clientId = clientIdParam ?? (typeof hint?.azp === 'string' ? hint.azp : audiences.length === 1 ? audiences[0] : undefined);
  let client: Client | undefined;
  if (clientId !== undefined) {
    client = await ctx.findClient(clientId).catch((error: unknown) => {
      // A metadata document that could not be used: the audit says why.
      if (error instanceof OAuthError) throw new OAuthError('invalid_client', 'the client is unknown', { reason: `client_id=${clientId}: ${error.reason ?? error.message}` });
      throw error;
    });
    if (!client) throw new OAuthError('invalid_client', 'the client is unknown', { reason: `client_id=${clientId}` });
    const unusable = unusableReason(client, ctx.now());
    if (unusable) throw new OAuthError('invalid_client', 'the client is disabled or has expired', { reason: unusable });
  }
  if (redirect !== undefined) {
    // Never an open redirect: only a URI the client registered, compared exactly (§3.1).
    if (!client) throw invalid('post_logout_redirect_uri needs client_id or id_token_hint', 'post_logout_redirect_uri without client_id or id_token_hint');
    if (!(client.metadata.post_logout_redirect_uris ?? []).includes(redirect)) {
      throw invalid('post_logout_redirect_uri is not registered for this client', `post_logout_redirect_uri not registered: ${redirect}`);
    }
  }
  return { client, postLogoutRedirectUri: redirect, state, hint };
}

/**
 * `<issuer>/logout`, the `end_session_endpoint` (OpenID Connect RP-Initiated Logout 1.0): GET or
 * form POST with `id_token_hint`, `client_id`, `post_logout_redirect_uri`, `state` (`ui_locales`
 * and `logout_hint` are ignored). With a hint for the browser's own session the session ends at
 * once; otherwise the user confirms on a page (a CSRF-protected POST), so a cross-site link or
 * form cannot sign anyone out. Ending the session sends back-channel logout tokens
 * (`endSessionsAndNotify`). Afterwards the browser goes to the registered post-logout URI with
 * `state`, or sees a "signed out" page. A refusal is a page (never a redirect) and an audit event
 * `logout.refused` with the reason.
 */
export function logoutEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  const look = pageLook(ctx.config.branding);

  const refuse = (c: Context, error: OAuthError, clientId?: string, status: 400 | 403 = 400) => {
    ctx.audit.record({ at: ctx.now(), type: 'logout.refused', outcome: 'failure', clientId, error: error.code, reason: error.reason ?? error.message });
    return errorPage(c, look, error.code, error.message, status);
  };

  /** Where the browser goes after signing out (or when there was no session to end). */
  const finish = (c: Context, target: { postLogoutRedirectUri?: string; state?: string }) => {
    c.header('Cache-Control', 'no-store');
    if (!target.postLogoutRedirectUri) return loggedOutPage(c, look);
    const url = new URL(target.postLogoutRedirectUri);
    if (target.state !== undefined) url.searchParams.set('state', target.state);
    return c.redirect(url.href, 303);
  };

  const signOut = async (c: Context, session: Session, clientId: string | undefined, confirmed: boolean) => {
    await endSessionsAndNotify(ctx, session.sub, session.sid, { via: 'rp_logout', clientId, audit: { confirmed }, device: session.device });
    clearSessionCookie(ctx, c);
    // Signed out means not kept signed in either: this browser's remembered sign-in goes too.
    await forgetThisBrowser(ctx, c);
  };

  const handle = async (c: Context, read: () => Promise<Params>) => {
    let request: LogoutRequest;
    try {
      request = await checkRequest(ctx, await read());
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      return refuse(c, error);
    }
    const clientId = request.client?.clientId;
    const session = await currentSession(ctx, c);
    if (!session) {
      // Nothing to end here: the client's own session is its business. Back to it, or the page.
      ctx.audit.record({ at: ctx.now(), type: 'logout.completed', outcome: 'success', clientId, data: { via: 'rp_logout', sessions: 0 } });
      return finish(c, request);
    }
    // The hint names this browser's session, or another session this same browser opened (its
    // cookie was lost, then a remembered or new sign-in): no cross-site request can know either.
    const hintSid = request.hint?.sub === session.sub ? request.hint.sid : undefined;
    const own =
      hintSid !== undefined &&
      (hintSid === session.sid || (session.device !== undefined && (await userSessions(ctx.cache, session.sub)).some((e) => e.sid === hintSid && e.device === session.device)));
    if (own) {
      await signOut(c, session, clientId, false);
      return finish(c, request);
    }
    const id = randomToken(16);
    const pending: PendingLogout = { csrf: randomToken(16), session: hashSecret(session.id), clientId, postLogoutRedirectUri: request.postLogoutRedirectUri, state: request.state };
    await ctx.cache.set(pendingKey(id), pending, ctx.config.tokens.interaction_ttl);
    return logoutConfirmPage(c, look, { username: session.username, clientName: request.client ? (request.client.metadata.client_name ?? request.client.clientId) : undefined, action: '/logout/confirm', csrf: pending.csrf, request: id });
  };

  app.get('/logout', (c) => handle(c, async () => Params.fromSearch(new URL(c.req.url).searchParams)));
  app.post('/logout', (c) => handle(c, () => formParams(c)));

  /** The confirmation page's answer: the same browser, the same session, the page's CSRF token; single use. */
  app.post('/logout/confirm', async (c) => {
    const form = await c.req.parseBody();
    const field = (name: string) => (typeof form[name] === 'string' ? (form[name] as string) : '');
    const id = field('logout_request');
    const pending = id ? await ctx.cache.get<PendingLogout>(pendingKey(id)) : undefined;
    if (!pending) return refuse(c, invalid(look.text.error.expired, 'logout request unknown or expired'));
    const session = await currentSession(ctx, c);
    if (!session) return refuse(c, invalid(look.text.error.expired, 'no signed-in session'), pending.clientId, 403);
    if (!constantTimeEqual(pending.session, hashSecret(session.id)) || !constantTimeEqual(field('csrf'), pending.csrf)) {
      return refuse(c, invalid(look.text.error.csrf, 'CSRF token mismatch'), pending.clientId, 403);
    }
    await ctx.cache.delete(pendingKey(id));
    if (field('decision') !== 'logout') {
      ctx.audit.record({ at: ctx.now(), type: 'logout.cancelled', outcome: 'success', sub: session.sub, clientId: pending.clientId, data: { sid: session.sid } });
      return loggedOutPage(c, look, true);
    }
    await signOut(c, session, pending.clientId, true);
    return finish(c, pending);
  });
}
