import { OAuthError } from '../../core/errors.ts';
import { verifyJwt, signJwt, type AccessTokenClaims } from '../../core/jwt.ts';
import { ID_JAG_TYP, TOKEN_TYPES } from '../../core/delegation.ts';
import { formatScope, parseScope } from '../../core/scopes.ts';
import { isPublicClient, type Client } from '../../core/client-metadata.ts';
import type { IdJagConfig } from '../../config/schema.ts';
import type { ServerContext } from '../context.ts';
import type { Params } from '../params.ts';
import { lookupToken } from '../token-lookup.ts';
import type { TokenResponse } from '../tokens.ts';
import type { DpopProof, GrantAudit } from '../grants/types.ts';

const ACCESS_TOKEN_TYPES: readonly string[] = [TOKEN_TYPES.accessToken, TOKEN_TYPES.jwt];

type Audience = IdJagConfig['audiences'][number];

/**
 * Mandate as the enterprise IdP (draft-ietf-oauth-identity-assertion-authz-grant §4.3, MCP EMA §§5,
 * 7.6–7.7): token exchange (RFC 8693) of the user's ID token, or of an access token of ours issued
 * to the same client, for an Identity Assertion JWT Authorization Grant (`requested_token_type`
 * `urn:ietf:params:oauth:token-type:id-jag`) that a resource authorization server (`audience`)
 * will take with the jwt-bearer grant. Policy (`id_jag.audiences`) decides client × audience ×
 * resource × scopes; the granted values go into the ID-JAG. Called by the token exchange grant
 * before any access-token logic; refusals are audited there (`token.exchange_refused`).
 *
 * Errors (RFC 8693 §2.2.2, RFC 6749 §5.2): a public client `unauthorized_client` (EMA §7.7: client
 * authentication MUST); a subject token that is not ours, valid and this client's, or an
 * `actor_token` (§8.5: undefined) `invalid_request`; an audience not configured or a resource it
 * does not pair with `invalid_target` (EMA §7.6.1); a client the audience does not list
 * `unauthorized_client`; nothing left of the requested scopes `invalid_scope`.
 */
export async function issueIdJag(
  ctx: ServerContext,
  request: { client: Client; params: Params; dpop?: DpopProof },
  trace: Record<string, unknown>,
): Promise<{ response: TokenResponse; audit: GrantAudit }> {
  const { client, params, dpop } = request;
  trace.requested_token_type = TOKEN_TYPES.idJag;
  if (isPublicClient(client)) throw new OAuthError('unauthorized_client', 'an ID-JAG is issued to an authenticated client only', { reason: 'public client asked for an ID-JAG' });
  if (params.get('actor_token') !== undefined || params.get('actor_token_type') !== undefined) {
    throw new OAuthError('invalid_request', 'actor_token is not accepted with id-jag', { reason: 'actor_token with requested_token_type id-jag' });
  }
  // Not carried into ID-JAGs yet (docs/enterprise.md, limits): refused rather than dropped.
  if (params.all('authorization_details').length > 0) {
    throw new OAuthError('invalid_authorization_details', 'authorization_details are not supported with id-jag', { reason: 'authorization_details with requested_token_type id-jag' });
  }

  const subject = await subjectOf(ctx, client, params.require('subject_token'), params.require('subject_token_type'));
  trace.subject = subject.claims.sub;
  // RFC 9449: a DPoP-bound subject token is exchanged only with a proof of its key (this client holds it).
  const subjectJkt = (subject.claims.cnf as { jkt?: unknown } | undefined)?.jkt;
  if (typeof subjectJkt === 'string' && dpop?.jkt !== subjectJkt) {
    throw new OAuthError('invalid_request', 'the subject token is DPoP-bound; prove its key', { reason: dpop ? `subject token bound to jkt ${subjectJkt}; proof of ${dpop.jkt}` : `subject token bound to jkt ${subjectJkt}; no proof` });
  }
  const user = await ctx.store.users.findBySub(subject.claims.sub);
  if (!user) throw new OAuthError('invalid_request', 'the subject token does not name a user', { reason: `sub ${subject.claims.sub} is not a user` });

  const entry = audienceOf(ctx, client, params);
  trace.audience = entry.audience;
  const resource = resourceOf(entry, params);
  trace.resource = resource;
  const scopes = scopesOf(entry, subject, params);
  trace.scope_granted = formatScope(scopes);

  const now = ctx.now();
  const lifetime = ctx.config.id_jag.lifetime_seconds;
  const jti = crypto.randomUUID();
  const claims: Record<string, unknown> = {
    iss: ctx.issuer,
    sub: user.sub,
    aud: entry.audience,
    // §3.1: the client's identifier at the resource authorization server.
    client_id: entry.client_id[client.clientId] ?? client.clientId,
    jti,
    iat: now,
    exp: now + lifetime,
    ...(resource ? { resource } : {}),
    ...(scopes.length > 0 ? { scope: formatScope(scopes) } : {}),
    ...(typeof subject.claims.auth_time === 'number' ? { auth_time: subject.claims.auth_time } : {}),
    ...(typeof subject.claims.acr === 'string' ? { acr: subject.claims.acr } : {}),
    // Our emails are set by an administrator (configuration file, admin API): verified. A federated
    // user's came from another IdP's assertion, which we do not vouch for.
    ...(entry.include_email && user.profile.email ? { email: user.profile.email, email_verified: user.source !== 'federated' } : {}),
    // §8.6.1.1: the ID-JAG is bound to the key the client proved at this request.
    ...(dpop ? { cnf: { jkt: dpop.jkt } } : {}),
  };
  const assertion = await signJwt(ctx.keys, claims, ID_JAG_TYP);
  return {
    response: {
      issued_token_type: TOKEN_TYPES.idJag,
      access_token: assertion,
      token_type: 'N_A',
      expires_in: lifetime,
      // §4.3.4: REQUIRED when it differs from the request; always sent when there is one.
      ...(scopes.length > 0 ? { scope: formatScope(scopes) } : {}),
    },
    audit: {
      sub: user.sub,
      resource: resource ?? '',
      scope: formatScope(scopes),
      jti,
      issued_token_type: TOKEN_TYPES.idJag,
      audience: entry.audience,
      id_jag_client_id: claims.client_id,
      subject_token_type: subject.type,
      ...(dpop ? { jkt: dpop.jkt } : {}),
    },
  };
}

/** The subject: our ID token issued to this client, or our active access token issued to it, acting for nobody. */
async function subjectOf(ctx: ServerContext, client: Client, token: string, type: string): Promise<{ claims: AccessTokenClaims; type: 'id_token' | 'access_token' }> {
  if (type === TOKEN_TYPES.idToken) {
    const claims = await verifyJwt<AccessTokenClaims>(ctx.keys, token, { issuer: ctx.issuer, typ: 'JWT', audience: client.clientId }).catch((error: Error) => {
      throw new OAuthError('invalid_request', 'the subject ID token is invalid, expired, or not issued to this client', { reason: `subject ID token: ${error.message}` });
    });
    if (await ctx.isCutOff(client.clientId, claims.iat)) throw new OAuthError('invalid_request', 'the subject ID token was issued before its client was disabled');
    await signInStands(ctx, client, claims);
    return { claims, type: 'id_token' };
  }
  if (ACCESS_TOKEN_TYPES.includes(type)) {
    const found = await lookupToken(ctx, token, 'access_token');
    if (found?.kind !== 'access_token') throw new OAuthError('invalid_request', 'the subject token is invalid, expired or revoked');
    if (found.claims.client_id !== client.clientId) {
      throw new OAuthError('invalid_request', 'the subject token was issued to another client', { reason: `subject token client_id=${found.claims.client_id}` });
    }
    if (found.claims.act !== undefined) throw new OAuthError('invalid_request', 'a delegated token cannot become an ID-JAG', { reason: 'subject token carries act' });
    return { claims: found.claims, type: 'access_token' };
  }
  throw new OAuthError('invalid_request', `subject_token_type ${type} is not supported with id-jag; send an ID token or an access token`);
}

/** §4.3: `audience` names exactly one configured resource authorization server (by issuer), which lists this client. */
function audienceOf(ctx: ServerContext, client: Client, params: Params): Audience {
  const audiences = params.all('audience');
  if (audiences.length !== 1) throw new OAuthError('invalid_target', 'name one audience: the issuer of the resource authorization server', { reason: `${audiences.length} audience values` });
  const entry = ctx.config.id_jag.audiences.find((a) => a.audience === audiences[0]);
  if (!entry) throw new OAuthError('invalid_target', 'the audience is not a known authorization server', { reason: `audience=${audiences[0]}` });
  if (!entry.clients.includes(client.clientId)) {
    throw new OAuthError('unauthorized_client', 'the client may not ask for ID-JAGs for this audience', { reason: `${client.clientId} is not in id_jag.audiences[${entry.audience}].clients` });
  }
  return entry;
}

/** EMA §7.6.1: only a resource paired with the audience; none asked → the audience's only resource. */
function resourceOf(entry: Audience, params: Params): string | undefined {
  const resources = params.all('resource');
  if (resources.length > 1) throw new OAuthError('invalid_target', 'ask for one resource per ID-JAG');
  if (resources.length === 1) {
    if (!entry.resources.includes(resources[0]!)) throw new OAuthError('invalid_target', 'the resource is not one of this audience', { reason: `resource=${resources[0]} not paired with ${entry.audience}` });
    return resources[0];
  }
  if (entry.resources.length === 1) return entry.resources[0];
  throw new OAuthError('invalid_request', 'this audience has several resources; name one with resource', { reason: `no resource; ${entry.audience} has ${entry.resources.length}` });
}

/**
 * Scopes only narrow: requested ∩ the audience's `scopes` (∩ the subject access token's scopes).
 * Nothing requested → everything the policy (and the subject token) allows.
 */
function scopesOf(entry: Audience, subject: { claims: AccessTokenClaims; type: string }, params: Params): string[] {
  const allowed = new Set(entry.scopes);
  const held = subject.type === 'access_token' ? new Set(parseScope(subject.claims.scope)) : undefined;
  const usable = (s: string) => allowed.has(s) && (!held || held.has(s));
  const requested = parseScope(params.get('scope'));
  if (requested.length === 0) return entry.scopes.filter(usable);
  const granted = requested.filter(usable);
  if (granted.length === 0) throw new OAuthError('invalid_scope', 'none of the requested scopes may be granted for this audience', { reason: `requested ${requested.join(' ')}, allowed ${entry.scopes.join(' ')}` });
  return granted;
}

/**
 * An ID token outlives the sign-in it came from (up to `id_token_ttl`): it becomes an ID-JAG only
 * while that sign-in stands — a grant of this user to this client, not revoked (a password change,
 * a sign-out everywhere, a revocation) nor expired, made no later than the ID token and, when the
 * ID token names a browser session (`sid`), of that session. A new sign-in after the revocation
 * does not revive an older ID token.
 */
export async function signInStands(ctx: ServerContext, client: Client, claims: AccessTokenClaims): Promise<void> {
  const now = ctx.now();
  const sid = typeof claims.sid === 'string' ? claims.sid : undefined;
  const grants = await ctx.store.grants.listGrantsBySub(claims.sub);
  const standing = grants.some((g) => g.clientId === client.clientId && g.revokedAt === undefined && g.expiresAt > now && g.createdAt <= claims.iat && (sid === undefined || g.sid === sid));
  if (!standing) {
    throw new OAuthError('invalid_request', 'the subject ID token is invalid, expired, or not issued to this client', {
      reason: `subject ID token: no standing grant of ${claims.sub} to ${client.clientId} issued by iat ${claims.iat}${sid ? ` (sid ${sid})` : ''}: revoked, expired or signed out`,
    });
  }
}
