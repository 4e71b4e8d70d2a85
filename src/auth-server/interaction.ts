import type { Context } from 'hono';
import { hashSecret } from './hash.ts';
import { getCookie, setCookie, deleteCookie } from 'hono/cookie';
import { randomToken } from '../core/encoding.ts';
import { formatScope } from '../core/scopes.ts';
import type { OAuthErrorCode } from '../core/errors.ts';
import type { ServerContext } from './context.ts';
import { settleDevice } from './device.ts';
import { narrowAdminAuthorization } from './admin-roles.ts';
import { indexSession } from './session-index.ts';
import { deviceHash } from './remember/cookies.ts';

/** A pending authorization request, between /authorize and the redirect back to the client. */
export interface Interaction {
  id: string;
  clientId: string;
  redirectUri: string;
  state?: string;
  nonce?: string;
  scopes: string[];
  resource: string;
  codeChallenge: string;
  prompt: string[];
  /** The client's authentication policy: its steps run, and its name becomes `acr`. */
  acr?: string;
  /** OIDC `max_age`: seconds since the last sign-in beyond which the user must sign in again. */
  maxAge?: number;
  /** Random value also set as a cookie: the interaction can only be completed in the browser that began it. */
  bind: string;
  csrf: string;
  /** Set when the user signed in during this interaction (so `prompt=login` is satisfied). */
  loggedIn?: boolean;
  /** A device authorization (RFC 8628): approving it completes the device's request, not a redirect. */
  deviceCodeHash?: string;
  /**
   * A sign-in for one of this server's own pages (the account page): once signed in, the browser
   * returns to this local path; no client, consent or code. `clientId` is then empty.
   */
  returnTo?: string;
  /** RFC 9449 §10: the code is bound to this JWK thumbprint (`dpop_jkt` at /authorize, or the /par proof). */
  dpopJkt?: string;
}

/** A signed-in browser. */
export interface Session {
  /** The cookie value: secret. */
  id: string;
  /** Public session identifier, put in tokens as `sid`. */
  sid: string;
  sub: string;
  username: string;
  authTime: number;
  /** How the user signed in (RFC 8176 values, or Mandate's `session_transfer`): `['pwd']` for the password page. */
  amr?: string[];
  /** The hash of the browser's device cookie, when it has one ("Keep me signed in" on): signing out of this browser ends all its sessions. */
  device?: string;
}

/** How a session began: `amr` (RFC 8176), and `authTime` when the sign-in happened earlier than now (a transfer). */
export interface SessionOptions {
  amr?: string[];
  authTime?: number;
  /** The browser's device id hash, when the caller just gave it one (else read from its cookie). */
  device?: string;
}

const SESSION_COOKIE = 'mandate_session';
const bindCookie = (id: string) => `mandate_ia_${id}`;

function secure(ctx: ServerContext) {
  return ctx.issuer.startsWith('https://');
}

export async function saveInteraction(ctx: ServerContext, c: Context, interaction: Interaction): Promise<void> {
  await ctx.cache.set(`interaction:${interaction.id}`, interaction, ctx.config.tokens.interaction_ttl);
  setCookie(c, bindCookie(interaction.id), interaction.bind, {
    path: `/interaction/${interaction.id}`,
    httpOnly: true,
    sameSite: 'Lax',
    secure: secure(ctx),
    maxAge: ctx.config.tokens.interaction_ttl,
  });
}

export async function updateInteraction(ctx: ServerContext, interaction: Interaction): Promise<void> {
  await ctx.cache.set(`interaction:${interaction.id}`, interaction, ctx.config.tokens.interaction_ttl);
}

/** Loads an interaction only for the browser that started it. */
export async function loadInteraction(ctx: ServerContext, c: Context, id: string): Promise<Interaction | undefined> {
  const interaction = await ctx.cache.get<Interaction>(`interaction:${id}`);
  if (!interaction || getCookie(c, bindCookie(id)) !== interaction.bind) return undefined;
  return interaction;
}

export async function currentSession(ctx: ServerContext, c: Context): Promise<Session | undefined> {
  const id = getCookie(c, SESSION_COOKIE);
  return id ? ctx.cache.get<Session>(`session:${id}`) : undefined;
}

/**
 * Sends a browser that is not signed in to the sign-in page, to come back to `returnTo` (a path of
 * this server) afterwards, as the device page does for a device's request.
 */
export async function signInThenReturn(ctx: ServerContext, c: Context, returnTo: string): Promise<Response> {
  const interaction: Interaction = { id: randomToken(16), clientId: '', redirectUri: ctx.url(returnTo), scopes: [], resource: ctx.issuer, codeChallenge: '', prompt: [], bind: randomToken(16), csrf: randomToken(16), returnTo };
  await saveInteraction(ctx, c, interaction);
  return c.redirect(`/interaction/${interaction.id}`, 303);
}

export async function startSession(ctx: ServerContext, c: Context, user: { sub: string; username: string }, options: SessionOptions = {}): Promise<Session> {
  // Signing in again in a browser already signed in as this user (prompt=login, max_age) continues
  // its session: the same sid, so the clients that got grants in it are still told when it ends.
  // The cookie value is new (no fixation) and the old one stops working.
  const previous = await currentSession(ctx, c);
  const continued = previous?.sub === user.sub ? previous : undefined;
  if (continued) await ctx.cache.delete(`session:${continued.id}`);
  const device = options.device ?? deviceHash(ctx, c);
  const session: Session = {
    id: randomToken(24),
    sid: continued?.sid ?? randomToken(12),
    sub: user.sub,
    username: user.username,
    authTime: options.authTime ?? ctx.now(),
    ...(options.amr ? { amr: options.amr } : {}),
    ...(device ? { device } : {}),
  };
  await ctx.cache.set(`session:${session.id}`, session, ctx.config.tokens.session_ttl);
  // Indexed by when it began: a session whose sign-in is older (remembered, transferred) lives its full session_ttl.
  const startedAt = ctx.now();
  const entry = { id: session.id, sid: session.sid, authTime: session.authTime, ...(startedAt !== session.authTime ? { startedAt } : {}), ...(device ? { device } : {}) };
  await indexSession(ctx.cache, user.sub, entry, ctx.config.tokens.session_ttl, startedAt);
  setCookie(c, SESSION_COOKIE, session.id, { path: '/', httpOnly: true, sameSite: 'Lax', secure: secure(ctx), maxAge: ctx.config.tokens.session_ttl });
  return session;
}

/** Removes the session cookie (signing out: the session itself ends in `endSessionsAndNotify`). */
export function clearSessionCookie(ctx: ServerContext, c: Context): void {
  deleteCookie(c, SESSION_COOKIE, { path: '/', httpOnly: true, sameSite: 'Lax', secure: secure(ctx) });
}

/** The redirect back to the client: `code` or `error`, always with `iss` (RFC 9207) and `state`. */
export function clientRedirect(ctx: ServerContext, interaction: Pick<Interaction, 'redirectUri' | 'state'>, params: Record<string, string>): string {
  const url = new URL(interaction.redirectUri);
  for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
  if (interaction.state !== undefined) url.searchParams.set('state', interaction.state);
  url.searchParams.set('iss', ctx.issuer);
  return url.href;
}

export function errorRedirect(
  ctx: ServerContext,
  interaction: Pick<Interaction, 'redirectUri' | 'state'>,
  code: OAuthErrorCode,
  description: string,
): string {
  return clientRedirect(ctx, interaction, { error: code, error_description: description });
}

/** Creates the grant and a single-use code, ends the interaction, and returns the redirect URL. */
export async function completeAuthorization(ctx: ServerContext, c: Context, interaction: Interaction, session: Session): Promise<string> {
  const now = ctx.now();
  const grantId = randomToken(16);
  // Checked again here (roles may have changed since the consent page): every grant path ends here.
  const narrowed = await narrowAdminAuthorization(ctx, { sub: session.sub, clientId: interaction.clientId, resource: interaction.resource, scopes: interaction.scopes });
  if (narrowed.refused) {
    await ctx.cache.delete(`interaction:${interaction.id}`);
    if (interaction.deviceCodeHash) {
      await settleDevice(ctx, interaction.deviceCodeHash, { status: 'denied' });
      return `${ctx.issuer.replace(/\/$/, '')}/device/done?denied=1`;
    }
    return errorRedirect(ctx, interaction, 'invalid_scope', 'your account holds no administrative role');
  }
  const scope = formatScope(narrowed.scopes);
  await ctx.store.grants.createGrant({
    id: grantId,
    sub: session.sub,
    clientId: interaction.clientId,
    resource: interaction.resource,
    scope,
    authTime: session.authTime,
    sid: session.sid,
    acr: interaction.acr,
    nonce: interaction.nonce,
    createdAt: now,
    expiresAt: now + ctx.config.tokens.refresh_token_ttl,
  });
  await ctx.cache.delete(`interaction:${interaction.id}`);
  deleteCookie(c, bindCookie(interaction.id), { path: `/interaction/${interaction.id}` });
  if (interaction.deviceCodeHash) {
    await settleDevice(ctx, interaction.deviceCodeHash, { status: 'approved', grantId, sub: session.sub });
    ctx.audit.record({ at: now, type: 'device.approved', outcome: 'success', clientId: interaction.clientId, sub: session.sub, data: { resource: interaction.resource, scope, grant_id: grantId } });
    return `${ctx.issuer.replace(/\/$/, '')}/device/done`;
  }
  const code = randomToken(32);
  await ctx.store.grants.createCode({
    codeHash: hashSecret(code),
    grantId,
    clientId: interaction.clientId,
    redirectUri: interaction.redirectUri,
    codeChallenge: interaction.codeChallenge,
    scope,
    resource: interaction.resource,
    expiresAt: now + ctx.config.tokens.code_ttl,
    ...(interaction.dpopJkt !== undefined ? { dpopJkt: interaction.dpopJkt } : {}),
  });
  ctx.audit.record({
    at: now,
    type: 'authorize.code_issued',
    outcome: 'success',
    clientId: interaction.clientId,
    sub: session.sub,
    data: { resource: interaction.resource, scope, grant_id: grantId },
  });
  return clientRedirect(ctx, interaction, { code });
}
