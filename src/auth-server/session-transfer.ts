import type { Context } from 'hono';
import { OAuthError } from '../core/errors.ts';
import { checkCodeChallenge } from '../core/pkce.ts';
import type { ClientRecord } from '../store/types.ts';
import type { SessionTransferClient } from './client-flags.ts';
import { unusableReason, type ServerContext } from './context.ts';
import { adminResourceId } from '../admin/scopes.ts';
import { currentSession, startSession, type Session } from './interaction.ts';
import type { Params } from './params.ts';
import { rememberedSubject } from './remember/index.ts';
import { lookupToken } from './token-lookup.ts';

/**
 * App-to-web session transfer (seed 002, "Hardening the handoff"; docs/browser-sessions.md). A
 * native app that holds a user's access token pushes it to /par through a dedicated transfer
 * client; the browser it then opens with the request_uri alone gets a session for that user and
 * is sent to `return_to`. The flow stops there: no code, no token, ever, for the transfer client.
 */

/** RFC 8693 §3: the only subject token type taken. */
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
export const SESSION_TRANSFER_SCOPE = 'session_transfer';

/** What the push established, kept with the pushed request until the browser comes. */
export interface TransferRequest {
  sub: string;
  /** The subject token's `jti` (single use for transfer) and its expiry, grant and client. */
  jti: string;
  exp: number;
  iat: number;
  grantId: string;
  subjectClient: string;
  /** When the user signed in to the app: the session's auth_time (max_age counts from it). */
  authTime?: number;
  returnTo: string;
  /** The address the push came from (IPv6: its /64), and whether the browser must share it. */
  address: string;
  bindAddress: boolean;
}

/** The parameters a transfer push may carry; anything else is refused, not ignored. */
const TRANSFER_PARAMS = new Set([
  'client_id',
  'response_type',
  'scope',
  'code_challenge',
  'code_challenge_method',
  'state',
  'subject_token',
  'subject_token_type',
  'return_to',
  // client authentication, already checked
  'client_secret',
  'client_assertion',
  'client_assertion_type',
]);

const usedKey = (jti: string) => `transfer-jti:${jti}`;

/** IPv4 127.0.0.0/8 and IPv6 ::1 (RFC 5735, RFC 4291): one machine, whichever family `localhost` took. */
const isLoopback = (address: string) => address.startsWith('127.') || address === '::1' || address === '0:0:0:0::/64';

/**
 * Whether the browser comes from where the push came from: the same address (IPv6: the same /64,
 * as `ctx.clientAddress` buckets it), or loopback both times. An unknown address never matches.
 */
export function sameAddress(browser: string, pushed: string): boolean {
  if (browser === 'unknown' || pushed === 'unknown') return false;
  return browser === pushed || (isLoopback(browser) && isLoopback(pushed));
}

/** Audits a refusal with its reason (STYLE 5) and returns the error, marked audited. */
function refused(ctx: ServerContext, clientId: string, error: OAuthError, sub?: string): OAuthError {
  ctx.audit.record({ at: ctx.now(), type: 'session_transfer.refused', outcome: 'failure', clientId, sub, error: error.code, reason: error.reason ?? error.message });
  error.audited = true;
  return error;
}

/**
 * The push (at /par): checks the request and the subject token, and records who may be signed in
 * where, and from which address the push came. Throws an audited `OAuthError` (400 invalid_request,
 * invalid_scope…) when anything is off.
 */
export async function checkTransferPush(ctx: ServerContext, c: Context, client: ClientRecord, settings: SessionTransferClient, params: Params): Promise<TransferRequest> {
  const bad = (code: 'invalid_request' | 'invalid_scope' | 'unsupported_response_type', description: string, reason = description) => refused(ctx, client.clientId, new OAuthError(code, description, { reason }));
  try {
    for (const [name] of params.entries()) if (!TRANSFER_PARAMS.has(name)) throw bad('invalid_request', `parameter ${name} is not taken in a session transfer`);
    if (params.get('response_type') !== 'code') throw bad('unsupported_response_type', 'response_type must be code');
    if (params.get('scope') !== SESSION_TRANSFER_SCOPE) throw bad('invalid_scope', `scope must be ${SESSION_TRANSFER_SCOPE}`, `scope=${params.get('scope') ?? '(missing)'}`);
    checkCodeChallenge(params.get('code_challenge'), params.get('code_challenge_method'));
    const returnTo = params.get('return_to');
    if (!returnTo) throw bad('invalid_request', 'return_to is required');
    if (!settings.allowedReturnUrls.includes(returnTo)) throw bad('invalid_request', 'return_to is not allowed for this client', `return_to not allowed: ${returnTo}`);
    if (params.get('subject_token_type') !== ACCESS_TOKEN_TYPE) throw bad('invalid_request', `subject_token_type must be ${ACCESS_TOKEN_TYPE}`);
    const token = params.get('subject_token');
    if (!token) throw bad('invalid_request', 'subject_token is required');
    const found = await lookupToken(ctx, token, 'access_token');
    if (found?.kind !== 'access_token') throw bad('invalid_request', 'the subject token is not active', 'subject token inactive (unknown, expired or revoked)');
    const { claims } = found;
    if (!settings.subjectClients.includes(claims.client_id)) throw bad('invalid_request', 'the subject token was not issued to an accepted client', `subject token client ${claims.client_id} is not accepted`);
    // A token for a resource server that is not named: that server could replay what it receives.
    const audiences = [claims.aud].flat();
    const foreign = audiences.find((aud) => !settings.audiences.includes(aud));
    if (foreign !== undefined || audiences.length === 0) throw bad('invalid_request', 'the subject token is not for an accepted audience', `subject token audience ${foreign ?? '(none)'} is not accepted`);
    // A delegated token (act) is an agent's, not the user's own sign-in: it opens no browser session.
    if (claims.act !== undefined) throw bad('invalid_request', 'a delegated token cannot be transferred', 'subject token carries act');
    const request: TransferRequest = {
      sub: claims.sub,
      jti: claims.jti,
      exp: claims.exp,
      iat: claims.iat,
      grantId: found.grantId ?? '',
      subjectClient: claims.client_id,
      ...(typeof claims.auth_time === 'number' ? { authTime: claims.auth_time } : {}),
      returnTo,
      address: ctx.clientAddress(c),
      bindAddress: settings.bindAddress,
    };
    const problem = await inactiveReason(ctx, request);
    if (problem) throw bad('invalid_request', 'the subject token is not active', problem);
    ctx.audit.record({
      at: ctx.now(),
      type: 'session_transfer.started',
      outcome: 'success',
      clientId: client.clientId,
      sub: request.sub,
      data: { subject_client: request.subjectClient, return_to: returnTo, address: request.address, bind_address: request.bindAddress },
    });
    return request;
  } catch (error) {
    if (error instanceof OAuthError && !error.audited) throw refused(ctx, client.clientId, error);
    throw error;
  }
}

/**
 * Why the token behind a transfer is no longer good for one, if it is not: checked at the push and
 * again when the browser comes (it may be revoked in between). A user's token only: it must belong
 * to a live grant of that user (client credentials tokens have none), and never have served a
 * transfer before.
 */
async function inactiveReason(ctx: ServerContext, request: TransferRequest): Promise<string | undefined> {
  if (request.exp <= ctx.now()) return 'subject token expired';
  if (!request.grantId) return 'subject token has no user grant (client credentials?)';
  const grant = await ctx.store.grants.findGrant(request.grantId);
  if (!grant || grant.revokedAt !== undefined || grant.expiresAt <= ctx.now()) return 'subject token grant is revoked or expired';
  if (grant.sub !== request.sub || grant.clientId !== request.subjectClient) return 'subject token does not match its grant';
  if (grant.sub === request.subjectClient) return 'subject token has no user (client credentials)';
  const tracked = await ctx.store.grants.findAccessToken(request.jti);
  if (tracked?.revokedAt !== undefined) return 'subject token revoked';
  if (await ctx.isCutOff(request.subjectClient, request.iat)) return 'subject client is disabled';
  if (!(await ctx.store.users.findBySub(request.sub))) return 'subject user no longer exists';
  if (await ctx.cache.get(usedKey(request.jti))) return 'subject token already used for a session transfer';
  return undefined;
}

/**
 * The browser's visit (at /authorize, with the request_uri already taken): same address when
 * bound, token still active and never used for a transfer before; then a session for the user
 * (`amr: ["session_transfer"]`) and a 303 to `return_to`. A refusal is an error page: the
 * transfer client has no redirect URI to send an error to.
 */
export async function completeTransfer(ctx: ServerContext, c: Context, clientId: string, request: TransferRequest): Promise<{ redirect: string } | { error: OAuthError }> {
  const descriptions = { access_denied: 'the session could not be transferred to this browser', invalid_request: 'the session transfer is no longer valid', invalid_client: 'the client is disabled or has expired' };
  const refuse = (code: 'access_denied' | 'invalid_request' | 'invalid_client', reason: string) => ({ error: refused(ctx, clientId, new OAuthError(code, descriptions[code], { reason }), request.sub) });
  // The transfer client may have been disabled since the push (an administrator stopping transfers).
  const transferClient = await ctx.findClient(clientId);
  const unusable = transferClient ? unusableReason(transferClient, ctx.now()) : 'client unknown';
  if (unusable) return refuse('invalid_client', `transfer client: ${unusable}`);
  if (request.bindAddress) {
    const address = ctx.clientAddress(c);
    if (!sameAddress(address, request.address)) return refuse('access_denied', `address mismatch: pushed from ${request.address}, browser at ${address}`);
  }
  const problem = await inactiveReason(ctx, request);
  if (problem) return refuse('invalid_request', problem);
  // Never a swap of users: a request_uri pushed with someone else's token (an attacker behind the
  // same NAT as the victim) must not replace the session this browser already has (login CSRF).
  const existing = await currentSession(ctx, c);
  if (existing && existing.sub !== request.sub) return refuse('access_denied', `browser signed in as another user (sub=${existing.sub})`);
  // Nor one whose "Keep me signed in" would sign another user in at the next visit.
  const remembered = existing ? undefined : await rememberedSubject(ctx, c);
  if (remembered !== undefined && remembered !== request.sub) return refuse('access_denied', `browser remembers another user (sub=${remembered})`);
  // Single use of the token for transfers: of two visits racing with two request_uris, one wins.
  const first = await ctx.cache.add(usedKey(request.jti), 1, Math.max(request.exp - ctx.now(), 1) + 60);
  if (!first) return refuse('invalid_request', 'subject token already used for a session transfer');
  const user = await ctx.store.users.findBySub(request.sub);
  if (!user) return refuse('invalid_request', 'subject user no longer exists');
  const session = await startSession(ctx, c, user, { amr: ['session_transfer'], ...(request.authTime !== undefined ? { authTime: request.authTime } : {}) });
  ctx.audit.record({
    at: ctx.now(),
    type: 'session_transfer.completed',
    outcome: 'success',
    clientId,
    sub: request.sub,
    data: { subject_client: request.subjectClient, return_to: request.returnTo, sid: session.sid },
  });
  return { redirect: request.returnTo };
}

/**
 * Why a transferred session must not serve this authorization request without the password typed
 * in this browser, if it must not: it stands for a bearer token of the app (whatever that token's
 * scope), so it never opens the admin resource by itself — a stolen app token is no admin console.
 */
export function transferredSessionLimit(ctx: Pick<ServerContext, 'issuer'>, session: Pick<Session, 'amr'>, resource: string): string | undefined {
  if (!session.amr?.includes('session_transfer')) return undefined;
  return resource === adminResourceId(ctx.issuer) ? 'the admin resource needs a password sign-in; the session came from a session transfer' : undefined;
}
