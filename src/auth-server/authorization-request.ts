import { OAuthError } from '../core/errors.ts';
import { checkCodeChallenge } from '../core/pkce.ts';
import { matchRedirectUri } from '../core/redirect-uri.ts';
import type { ClientRecord } from '../store/types.ts';
import { resolveResourceAndScope, unusableReason, type ServerContext } from './context.ts';
import type { Interaction } from './interaction.ts';
import type { Params } from './params.ts';
import { JKT_PATTERN } from './dpop.ts';

/**
 * The checks of an authorization request (OAuth 2.1 §4.1.1), shared by /authorize and /par
 * (RFC 9126 §2.1: a pushed request is validated as the authorization endpoint would). Two phases:
 * until the client and its redirect URI are trusted, an error must not be redirected anywhere.
 */

/** Phase 1: who is asking, and where may the answer go? */
export async function trustedClientAndRedirect(ctx: ServerContext, params: Params): Promise<{ client: ClientRecord; redirectUri: string }> {
  const clientId = params.require('client_id');
  const client = await ctx.findClient(clientId);
  if (!client) throw new OAuthError('invalid_client', 'the client is unknown', { reason: `client_id=${clientId}` });
  const unusable = unusableReason(client, ctx.now());
  if (unusable) throw new OAuthError('invalid_client', 'the client is disabled or has expired', { reason: unusable });
  return { client, redirectUri: checkRedirectUri(client, params) };
}

export function checkRedirectUri(client: ClientRecord, params: Params): string {
  const requested = params.get('redirect_uri');
  const registered = client.metadata.redirect_uris;
  if (requested === undefined && registered.length !== 1) throw new OAuthError('invalid_request', 'redirect_uri is required');
  const redirectUri = requested ?? registered[0]!;
  if (!matchRedirectUri(redirectUri, registered)) {
    throw new OAuthError('invalid_request', 'redirect_uri is not registered for this client', { reason: `redirect_uri=${redirectUri}` });
  }
  return redirectUri;
}

/** What phase 2 makes of the request: an interaction, less its per-browser values. */
export type CheckedRequest = Omit<Interaction, 'id' | 'bind' | 'csrf'>;

/** Phase 2: is the request itself acceptable? Its errors may go back to the (trusted) redirect URI. */
export function checkAuthorizationRequest(ctx: ServerContext, client: ClientRecord, redirectUri: string, params: Params): CheckedRequest {
  if (params.get('response_type') !== 'code') {
    throw new OAuthError('unsupported_response_type', 'response_type must be code');
  }
  if (!client.metadata.grant_types.includes('authorization_code')) {
    throw new OAuthError('unauthorized_client', 'the client may not use the authorization code grant');
  }
  if (params.get('request')) throw new OAuthError('invalid_request', 'request objects are not supported');
  const codeChallenge = checkCodeChallenge(params.get('code_challenge'), params.get('code_challenge_method'));
  const { resource, scopes } = resolveResourceAndScope(ctx, client, { resource: params.all('resource'), scope: params.get('scope') });
  const prompt = (params.get('prompt') ?? '').split(' ').filter(Boolean);
  if (prompt.includes('none') && prompt.length > 1) throw new OAuthError('invalid_request', 'prompt=none cannot be combined');
  // RFC 9449 §10: dpop_jkt binds the code to a key (ignored, as before, when DPoP is off).
  const dpopJkt = ctx.config.dpop.enabled ? params.get('dpop_jkt') : undefined;
  if (dpopJkt !== undefined && !JKT_PATTERN.test(dpopJkt)) throw new OAuthError('invalid_request', 'dpop_jkt must be a base64url SHA-256 JWK thumbprint');
  const maxAgeParam = params.get('max_age');
  if (maxAgeParam !== undefined && !/^\d{1,9}$/.test(maxAgeParam)) throw new OAuthError('invalid_request', 'max_age must be a non-negative integer');
  return {
    clientId: client.clientId,
    redirectUri,
    state: params.get('state'),
    nonce: params.get('nonce'),
    scopes,
    resource: resource.id,
    codeChallenge,
    prompt,
    acr: ctx.authenticationPolicy(client.metadata.authentication_policy as string | undefined)?.name,
    maxAge: maxAgeParam === undefined ? undefined : Number(maxAgeParam),
    ...(dpopJkt !== undefined ? { dpopJkt } : {}),
  };
}

/** RFC 9126 §4 / §5 / §6: whether this client may only come to /authorize with a pushed request. */
export function mustPush(ctx: ServerContext, client: ClientRecord): boolean {
  return ctx.config.par.required || client.metadata.require_pushed_authorization_requests === true;
}
