import { OAuthError } from '../../core/errors.ts';
import { hashSecret } from '../hash.ts';

import { verifyCodeVerifier } from '../../core/pkce.ts';
import { parseScope } from '../../core/scopes.ts';
import { matchRedirectUri } from '../../core/redirect-uri.ts';
import { issueGrantTokens } from '../tokens.ts';
import { checkBoundArtifact } from '../dpop.ts';
import type { GrantHandler } from './types.ts';
import type { Client } from '../../core/client-metadata.ts';
import type { AuthorizationCodeRecord, IssuedTokens } from '../../store/types.ts';
import type { ServerContext } from '../context.ts';
import type { Params } from '../params.ts';

/** OAuth 2.1 §4.1.3: redeem an authorization code, with PKCE. */
export const authorizationCodeGrant: GrantHandler = {
  grantType: 'authorization_code',
  parameters: ['code', 'code_verifier', 'redirect_uri', 'resource'],
  async handler(ctx, { client, params, dpop }) {
    const codeHash = hashSecret(params.require('code'));
    const record = await ctx.store.grants.findCode(codeHash);
    if (!record) throw new OAuthError('invalid_grant', 'the authorization code is invalid', { reason: 'unknown code' });
    const replay = async () => {
      // A second redemption means the code leaked: revoke everything issued from it (OAuth 2.1 §4.1.3).
      await ctx.store.grants.revokeGrant(record.grantId, ctx.now());
      return new OAuthError('invalid_grant', 'the authorization code was already used', { reason: `code replay; grant ${record.grantId} revoked` });
    };
    if (record.consumedAt !== undefined) throw await replay();
    try {
      await checkRedemption(ctx, client, params, record);
      // RFC 9449 §10: a code bound with dpop_jkt is redeemed only with a proof of that key.
      checkBoundArtifact('authorization code', record.dpopJkt, dpop);
    } catch (error) {
      // A failed attempt spends the code all the same: it may have been presented by a thief.
      if (error instanceof OAuthError) await ctx.store.grants.consumeCode(codeHash, ctx.now());
      throw error;
    }
    const grant = await ctx.store.grants.findGrant(record.grantId);
    if (!grant || grant.revokedAt) throw new OAuthError('invalid_grant', 'the grant has been revoked');
    const resource = ctx.resource(record.resource);
    if (!resource) throw new OAuthError('invalid_target', 'the resource no longer exists');
    // Spending the code and storing its tokens are one transaction (issue 11, item 9).
    const commit = async (issued: IssuedTokens) => {
      const outcome = await ctx.store.grants.redeemCode(codeHash, ctx.now(), { grantId: grant.id, issued });
      if (outcome === 'replayed') throw await replay();
      if (outcome === 'revoked') throw new OAuthError('invalid_grant', 'the grant has been revoked', { reason: 'revoked during the redemption' });
    };
    return issueGrantTokens(ctx, { client, grant, resource, scopes: parseScope(record.scope), refreshScope: record.scope, grantType: 'authorization_code', commit, ...(dpop ? { jkt: dpop.jkt } : {}) });
  },
};

async function checkRedemption(ctx: ServerContext, client: Client, params: Params, record: AuthorizationCodeRecord): Promise<void> {
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
}
