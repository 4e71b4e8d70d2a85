import { OAuthError } from '../../core/errors.ts';
import { formatScope } from '../../core/scopes.ts';
import { isPublicClient } from '../../core/client-metadata.ts';
import { resolveResourceAndScope } from '../context.ts';
import { isOidcScope, isSelfRegistered } from '../registration-policy.ts';
import { issueAccessToken, tokenTypeOf } from '../tokens.ts';
import { adminResourceId } from '../../admin/scopes.ts';
import type { GrantHandler } from './types.ts';

/** OAuth 2.1 §4.2: a confidential client gets a token for itself; `sub` is its client_id. */
export const clientCredentialsGrant: GrantHandler = {
  grantType: 'client_credentials',
  parameters: ['scope', 'resource'],
  async handler(ctx, { client, params, dpop }) {
    if (isPublicClient(client)) throw new OAuthError('unauthorized_client', 'public clients cannot use client_credentials');
    const { resource, scopes } = resolveResourceAndScope(ctx, client, { resource: params.all('resource'), scope: params.get('scope') });
    // Admin tokens act for an admin (a user with roles): a client has no roles of its own.
    if (resource.id === adminResourceId(ctx.issuer)) throw new OAuthError('invalid_target', 'admin tokens are issued for a signed-in admin only', { reason: 'client_credentials for the admin resource' });
    if (scopes.includes('openid')) throw new OAuthError('invalid_scope', 'openid needs a user; client_credentials has none');
    // Default deny: without a user to consent, a client nobody vouched for gets a resource's
    // token only with a scope the registration allowlist grants (never for a resource without scopes).
    if (isSelfRegistered(client) && resource.id !== ctx.issuer && !scopes.some((s) => !isOidcScope(s))) {
      throw new OAuthError('invalid_scope', `the client may not request a token for ${resource.id}`, { reason: 'registration policy: a self-registered client gets client_credentials tokens only with a scope of registration.allowed_scopes' });
    }
    const { token, claims, expiresIn } = await issueAccessToken(ctx, { sub: client.clientId, client, resource, scopes, grantType: 'client_credentials', ...(dpop ? { jkt: dpop.jkt } : {}) });
    return {
      response: { access_token: token, token_type: tokenTypeOf(claims), expires_in: expiresIn, ...(scopes.length ? { scope: formatScope(scopes) } : {}) },
      audit: { sub: client.clientId, resource: resource.id, scope: formatScope(scopes), jti: claims.jti },
    };
  },
};
