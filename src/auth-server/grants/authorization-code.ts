import { OAuthError } from '../../core/errors.ts';
import { hashSecret } from '../hash.ts';

import { verifyCodeVerifier } from '../../core/pkce.ts';
import { parseScope } from '../../core/scopes.ts';
import { matchRedirectUri } from '../../core/redirect-uri.ts';
import { issueGrantTokens } from '../tokens.ts';
import type { GrantHandler } from './types.ts';

/** OAuth 2.1 §4.1.3: redeem an authorization code, with PKCE. */
export const authorizationCodeGrant: GrantHandler = {
  grantType: 'authorization_code',
  parameters: ['code', 'code_verifier', 'redirect_uri', 'resource'],
  async handler(ctx, { client, params }) {
    const code = params.require('code');
    const consumed = await ctx.store.grants.consumeCode(hashSecret(code), ctx.now());
    if (!consumed) throw new OAuthError('invalid_grant', 'the authorization code is invalid', { reason: 'unknown code' });
    const record = consumed.code;
    if (!consumed.firstUse) {
      // A second redemption means the code leaked: revoke everything issued from it (OAuth 2.1 §4.1.3).
      await ctx.store.grants.revokeGrant(record.grantId, ctx.now());
      throw new OAuthError('invalid_grant', 'the authorization code was already used', { reason: `code replay; grant ${record.grantId} revoked` });
    }
    if (record.clientId !== client.clientId) {
      throw new OAuthError('invalid_grant', 'the authorization code was issued to another client', { reason: `code of ${record.clientId}` });
    }
    if (record.expiresAt <= ctx.now()) throw new OAuthError('invalid_grant', 'the authorization code has expired');
    const redirectUri = params.get('redirect_uri');
    // OAuth 2.1 §4.1.3: if redirect_uri was in the authorization request it must be identical here.
    if (redirectUri !== undefined && redirectUri !== record.redirectUri) {
      throw new OAuthError('invalid_grant', 'redirect_uri does not match the authorization request');
    }
    if (redirectUri === undefined && !matchRedirectUri(record.redirectUri, client.metadata.redirect_uris)) {
      throw new OAuthError('invalid_grant', 'redirect_uri is required');
    }
    await verifyCodeVerifier(params.get('code_verifier'), record.codeChallenge);
    const resources = params.all('resource');
    if (resources.length > 0 && (resources.length > 1 || resources[0] !== record.resource)) {
      throw new OAuthError('invalid_target', 'resource differs from the authorization request');
    }
    const grant = await ctx.store.grants.findGrant(record.grantId);
    if (!grant || grant.revokedAt) throw new OAuthError('invalid_grant', 'the grant has been revoked');
    const resource = ctx.resource(record.resource);
    if (!resource) throw new OAuthError('invalid_target', 'the resource no longer exists');
    return issueGrantTokens(ctx, { client, grant, resource, scopes: parseScope(record.scope), refreshScope: record.scope, grantType: 'authorization_code' });
  },
};
