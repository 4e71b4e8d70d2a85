import { randomToken } from '../core/encoding.ts';
import { hashSecret } from './hash.ts';
import { ACCESS_TOKEN_TYP, signJwt, type AccessTokenClaims } from '../core/jwt.ts';
import { formatScope } from '../core/scopes.ts';
import { actorChain } from '../core/delegation.ts';
import { OAuthError } from '../core/errors.ts';
import { isPublicClient, type Client } from '../core/client-metadata.ts';
import type { AccessTokenRecord, GrantRecord, IssuedTokens, RefreshTokenRecord } from '../store/types.ts';
import type { Resource, ServerContext } from './context.ts';
import type { McpToolCallDetail } from './authorization-details.ts';
import { subjectProfile } from './actor-profile.ts';

export interface TokenResponse {
  access_token: string;
  /** `DPoP` for a DPoP-bound token (RFC 9449 §5); `N_A` for an ID-JAG, which is no access token (its draft's §4.3.4). */
  token_type: 'Bearer' | 'DPoP' | 'N_A';
  expires_in: number;
  scope?: string;
  refresh_token?: string;
  id_token?: string;
  issued_token_type?: string;
  /** RFC 9396 §7: the authorization details the access token carries. */
  authorization_details?: McpToolCallDetail[];
}

export interface AccessTokenRequest {
  sub: string;
  client: Client;
  resource: Resource;
  scopes: string[];
  grantType: string;
  grant?: GrantRecord;
  /** Token exchange: the subject and actor tokens' claims, for claim mappings. */
  subject?: Record<string, unknown>;
  actor?: Record<string, unknown>;
  /** Claims set by the grant (delegation: `act`, and `auth_time`/`acr` carried over). */
  extra?: Record<string, unknown>;
  /** The token may not outlive this (an exchanged token ends with its subject token). */
  notAfter?: number;
  /** The user grant this token descends from (through exchanges): revoking it revokes this token. */
  rootGrantId?: string;
  /**
   * RFC 9449 §6.1: the JWK thumbprint of the DPoP proof of the token request, to bind the token to
   * (`cnf.jkt`, response `token_type: DPoP`). A resource with `require_dpop` refuses a request
   * without one (`invalid_request`).
   */
  jkt?: string;
}

/** The response's `token_type` for an issued access token: `DPoP` when it is bound (RFC 9449 §5). */
export function tokenTypeOf(claims: Record<string, unknown>): 'Bearer' | 'DPoP' {
  return typeof (claims.cnf as { jkt?: unknown } | undefined)?.jkt === 'string' ? 'DPoP' : 'Bearer';
}

/**
 * Issues an access token bound to one resource: an RFC 9068 JWT, or an opaque reference token
 * when the resource asks for one (then only introspection can read it). The resource's `may_act`
 * rule and claim mappings apply here, whatever the grant.
 */
export async function issueAccessToken(ctx: ServerContext, request: AccessTokenRequest): Promise<{ token: string; claims: AccessTokenClaims; expiresIn: number }> {
  const { record, ...issued } = await prepareAccessToken(ctx, request);
  if (record) await ctx.store.grants.recordAccessToken(record);
  return issued;
}

/**
 * Builds and signs the access token, and returns the record to store with it rather than writing
 * it, so that a grant can write it in the same transaction as the code or refresh token it spends.
 */
async function prepareAccessToken(ctx: ServerContext, request: AccessTokenRequest): Promise<{ token: string; claims: AccessTokenClaims; expiresIn: number; record?: AccessTokenRecord }> {
  const now = ctx.now();
  const { resource, client } = request;
  if (resource.requireDpop && request.jkt === undefined) {
    throw new OAuthError('invalid_request', `DPoP proof required: tokens for ${resource.id} are DPoP-bound only`, { reason: `resource ${resource.id} has require_dpop; no DPoP proof` });
  }
  const exp = Math.min(now + resource.accessTokenTtl, request.notAfter ?? Number.MAX_SAFE_INTEGER);
  const claims: AccessTokenClaims = {
    iss: ctx.issuer,
    sub: request.sub,
    aud: resource.id,
    exp,
    iat: now,
    jti: crypto.randomUUID(),
    client_id: client.clientId,
    ...(request.scopes.length > 0 ? { scope: formatScope(request.scopes) } : {}),
    ...(request.grant?.authTime !== undefined ? { auth_time: request.grant.authTime } : {}),
    ...(request.grant?.acr ? { acr: request.grant.acr } : {}),
    ...(request.grant?.sid ? { sid: request.grant.sid } : {}),
    ...request.extra,
    // draft-mcguinness-oauth-actor-profile §3.3: what kind of entity the subject is.
    sub_profile: await subjectProfile(ctx, request),
    // RFC 9449 §6.1: bound to the key of the token request's proof.
    ...(request.jkt !== undefined ? { cnf: { jkt: request.jkt } } : {}),
  };
  const grantId = request.grant?.id ?? request.rootGrantId;
  // The grant travels in the token: a grant revocation reaches it on every instance and gateway at
  // once, whether or not the (batched) record of an exchanged token has been written yet.
  if (grantId) claims.grant_id = grantId;
  const mayAct = mayActFor(resource, client, request.grantType);
  if (mayAct) claims.may_act = mayAct;
  if (resource.claims.length > 0) await applyClaimMappings(ctx, claims, request);

  const expiresIn = exp - now;
  if (resource.tokenFormat === 'opaque') {
    const token = randomToken(32);
    return { token, claims, expiresIn, record: { jti: claims.jti, grantId, clientId: client.clientId, expiresAt: exp, tokenHash: hashSecret(token), claims } };
  }
  const token = await signJwt(ctx.keys, claims, ACCESS_TOKEN_TYP);
  if (request.grant) return { token, claims, expiresIn, record: { jti: claims.jti, grantId: request.grant.id, clientId: client.clientId, expiresAt: exp } };
  // Exchanged tokens are the high-rate path: their records are batched.
  if (grantId) ctx.trackedTokens.add({ jti: claims.jti, grantId, clientId: client.clientId, expiresAt: exp });
  return { token, claims, expiresIn };
}

/** RFC 8693 §4.4 from the resource's rule. A client acting for itself has nobody to name. */
function mayActFor(resource: Resource, client: Client, grantType: string): { sub: string } | undefined {
  if (!resource.mayAct || grantType === 'client_credentials') return undefined;
  return { sub: resource.mayAct === 'requesting_client' ? client.clientId : resource.mayAct.client_id };
}

/**
 * Evaluates the resource's CEL claim mappings; a null result removes the claim. A mapping may
 * restate `sub`, `sub_profile` and `act` (seed 001 builds them this way) but never change them: the
 * subject, its kind and the checked delegation chain are what the token is about.
 */
async function applyClaimMappings(ctx: ServerContext, claims: AccessTokenClaims, request: AccessTokenRequest): Promise<void> {
  const { sub, sub_profile: profile } = claims;
  const chain = JSON.stringify(actorChain(claims.act).map((a) => a.sub));
  const user = await ctx.store.users.findBySub(request.sub);
  const { secretHash: _secret, ...client } = request.client as Client & { secretHash?: string; registrationTokenHash?: string };
  const variables = {
    subject: request.subject ?? { sub: request.sub },
    actor: request.actor ?? {},
    client: { client_id: client.clientId, ...client.metadata, agent: (client as { agent?: unknown }).agent ?? null },
    user: user ? { sub: user.sub, username: user.username, ...user.profile } : {},
    request: { grant_type: request.grantType, scope: claims.scope ?? '', resource: request.resource.id },
    token: { ...claims },
  };
  for (const { name, expression } of request.resource.claims) {
    const value = expression.evaluate(variables);
    if (value === null || value === undefined) delete claims[name];
    else claims[name] = value;
  }
  const changed = claims.sub !== sub ? 'sub' : claims.sub_profile !== profile ? 'sub_profile' : JSON.stringify(actorChain(claims.act).map((a) => a.sub)) !== chain ? 'act' : undefined;
  if (changed) {
    throw new OAuthError('server_error', 'the resource is misconfigured', { status: 500, reason: `claim mappings of ${request.resource.id} would change ${changed}` });
  }
}

/** A new refresh token for the grant and the record to store: only its hash. */
function newRefreshToken(ctx: ServerContext, grant: GrantRecord, scope: string, dpopJkt: string | undefined): { token: string; record: RefreshTokenRecord } {
  const token = randomToken(32);
  const now = ctx.now();
  return {
    token,
    record: {
      tokenHash: hashSecret(token),
      grantId: grant.id,
      clientId: grant.clientId,
      scope,
      createdAt: now,
      expiresAt: Math.min(now + ctx.config.tokens.refresh_token_ttl, grant.expiresAt),
      ...(dpopJkt !== undefined ? { dpopJkt } : {}),
    },
  };
}

/** OpenID Connect ID token (OIDC Core §2), with profile claims for the granted scopes. */
export async function issueIdToken(ctx: ServerContext, grant: GrantRecord, scopes: string[]): Promise<string> {
  const user = await ctx.store.users.findBySub(grant.sub);
  const now = ctx.now();
  const claims: Record<string, unknown> = {
    iss: ctx.issuer,
    sub: grant.sub,
    aud: grant.clientId,
    exp: now + ctx.config.tokens.id_token_ttl,
    iat: now,
    auth_time: grant.authTime,
    ...(grant.nonce ? { nonce: grant.nonce } : {}),
    ...(grant.acr ? { acr: grant.acr } : {}),
    ...(grant.sid ? { sid: grant.sid } : {}),
    ...profileClaims(user?.username, user?.profile, scopes),
  };
  return signJwt(ctx.keys, claims, 'JWT');
}

export function profileClaims(username: string | undefined, profile: { name?: string; email?: string } | undefined, scopes: string[]): Record<string, unknown> {
  const claims: Record<string, unknown> = {};
  if (scopes.includes('profile')) {
    if (username) claims.preferred_username = username;
    if (profile?.name) claims.name = profile.name;
  }
  if (scopes.includes('email') && profile?.email) claims.email = profile.email;
  return claims;
}

/**
 * The token response of a user grant (code redemption or refresh): an access token for the grant's
 * resource, a refresh token carrying `refreshScope` when the client uses refresh tokens, and an ID
 * token when `openid` is among the scopes. Nothing is written before `commit`, which stores the
 * token records together with what the grant spends (a code, the previous refresh token) in one
 * transaction; without it they are written as they are.
 */
export async function issueGrantTokens(
  ctx: ServerContext,
  request: {
    client: Client;
    grant: GrantRecord;
    resource: Resource;
    scopes: string[];
    refreshScope: string;
    grantType: string;
    commit?: (issued: IssuedTokens) => Promise<void>;
    /** Approved actions (RFC 9396) for the access token only, which then ends no later than `notAfter`; never the refresh token. */
    authorizationDetails?: { details: McpToolCallDetail[]; notAfter: number };
    /** The token request's DPoP proof key: binds the access token, and a public client's refresh token (RFC 9449 §5). */
    jkt?: string;
  },
): Promise<{ response: TokenResponse; audit: { sub: string; resource: string; scope: string; grantId: string; jti: string }; exp: number }> {
  const { client, grant, resource, scopes, authorizationDetails } = request;
  const { token, claims, expiresIn, record } = await prepareAccessToken(ctx, {
    sub: grant.sub,
    client,
    resource,
    scopes,
    grant,
    grantType: request.grantType,
    ...(request.jkt !== undefined ? { jkt: request.jkt } : {}),
    ...(authorizationDetails ? { notAfter: authorizationDetails.notAfter, extra: { authorization_details: authorizationDetails.details } } : {}),
  });
  // RFC 9449 §5: a public client's refresh token is bound to its proof key; a confidential client's is not.
  const refresh = wantsRefreshToken(client) ? newRefreshToken(ctx, grant, request.refreshScope, request.jkt !== undefined && isPublicClient(client) ? request.jkt : undefined) : undefined;
  const idToken = scopes.includes('openid') ? await issueIdToken(ctx, grant, scopes) : undefined;
  const issued = { accessToken: record, refreshToken: refresh?.record };
  if (request.commit) await request.commit(issued);
  else {
    if (issued.accessToken) await ctx.store.grants.recordAccessToken(issued.accessToken);
    if (issued.refreshToken) await ctx.store.grants.createRefreshToken(issued.refreshToken);
  }
  const refreshToken = refresh?.token;
  const scope = formatScope(scopes);
  return {
    response: {
      access_token: token,
      token_type: tokenTypeOf(claims),
      expires_in: expiresIn,
      scope,
      ...(refreshToken ? { refresh_token: refreshToken } : {}),
      ...(idToken ? { id_token: idToken } : {}),
      ...(authorizationDetails ? { authorization_details: authorizationDetails.details } : {}),
    },
    audit: { sub: grant.sub, resource: resource.id, scope, grantId: grant.id, jti: claims.jti },
    exp: claims.exp,
  };
}

/** Whether a grant for this client gets refresh tokens: the client registered the refresh_token grant. */
export function wantsRefreshToken(client: Client): boolean {
  return client.metadata.grant_types.includes('refresh_token');
}

