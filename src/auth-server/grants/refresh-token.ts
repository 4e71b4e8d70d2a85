import { OAuthError } from '../../core/errors.ts';
import { hashSecret } from '../hash.ts';

import { isSubset, parseScope } from '../../core/scopes.ts';
import { issueGrantTokens } from '../tokens.ts';
import { checkBoundArtifact } from '../dpop.ts';
import type { GrantHandler } from './types.ts';
import type { IssuedTokens } from '../../store/types.ts';
import { auditDetailsIssued, grantDetails, requestedDetails } from '../authorization-details.ts';

/**
 * OAuth 2.1 §4.3: refresh, with rotation. Presenting a rotated token again revokes the whole grant
 * (OAuth 2.1 §4.3.1, replay detection), except within a short grace window, where concurrent
 * refreshes from the same client each get a fresh pair.
 *
 * With `authorization_details` (RFC 9396, type `mcp_tool_call`), the access token also carries the
 * named approved transactions, made for this grant's user, client (no `act` chain) and resource;
 * it then ends with the first of them. The refresh token never carries them: the next refresh
 * gives a plain token unless it asks again (a refresh never widens).
 */
export const refreshTokenGrant: GrantHandler = {
  grantType: 'refresh_token',
  parameters: ['refresh_token', 'scope', 'resource', 'authorization_details'],
  async handler(ctx, { client, params, dpop }) {
    const now = ctx.now();
    // Parsed first: a malformed or unknown type is refused before the refresh token is spent (RFC 9396 §5).
    const requestedApprovals = requestedDetails(params);
    const record = await ctx.store.grants.findRefreshToken(hashSecret(params.require('refresh_token')));
    if (!record || record.clientId !== client.clientId) {
      throw new OAuthError('invalid_grant', 'the refresh token is invalid', { reason: record ? `token of ${record.clientId}` : 'unknown refresh token' });
    }
    if (record.revokedAt) throw new OAuthError('invalid_grant', 'the refresh token has been revoked');
    if (record.expiresAt <= now) throw new OAuthError('invalid_grant', 'the refresh token has expired');
    // RFC 9449 §5: a public client's bound refresh token is used only with a proof of its key.
    checkBoundArtifact('refresh token', record.dpopJkt, dpop);
    const grant = await ctx.store.grants.findGrant(record.grantId);
    if (!grant || grant.revokedAt) throw new OAuthError('invalid_grant', 'the grant has been revoked');

    const reuseSince = now - ctx.config.tokens.refresh_reuse_grace;
    const replay = async () => {
      await ctx.store.grants.revokeGrant(grant.id, now);
      return new OAuthError('invalid_grant', 'the refresh token was already used', { reason: `refresh token replay; grant ${grant.id} revoked` });
    };
    // Rejected early so that no token is signed for it; the transaction below decides for races.
    if (record.rotatedAt !== undefined && record.rotatedAt < reuseSince) throw await replay();

    const granted = parseScope(record.scope);
    const asked = parseScope(params.get('scope'));
    if (!isSubset(asked, granted)) throw new OAuthError('invalid_scope', 'a refresh may only narrow the scope');
    const scopes = asked.length > 0 ? asked : granted;
    const resources = params.all('resource');
    if (resources.length > 0 && (resources.length > 1 || resources[0] !== grant.resource)) {
      throw new OAuthError('invalid_target', 'the refresh token is bound to another resource');
    }
    const resource = ctx.resource(grant.resource);
    if (!resource) throw new OAuthError('invalid_target', 'the resource no longer exists');
    // Checked before the rotation: a refused approval leaves the refresh token as it was.
    const trace: Record<string, unknown> = {};
    const approvals = requestedApprovals && (await grantDetails(ctx, requestedApprovals, { sub: grant.sub, clientId: client.clientId, act: [], resource: resource.id }, trace));

    // The new refresh token keeps the originally granted scope, so a narrowed refresh can widen back.
    let reused = false as boolean;
    // Spending the old token and storing the new one are one transaction (issue 11, item 9).
    const commit = async (issued: IssuedTokens) => {
      const outcome = await ctx.store.grants.rotateRefreshToken(record.tokenHash, now, { grantId: grant.id, reuseSince, issued });
      reused = outcome === 'reused';
      if (outcome === 'replayed') throw await replay();
      if (outcome === 'revoked') throw new OAuthError('invalid_grant', 'the grant has been revoked', { reason: 'revoked during the refresh' });
    };
    const { response, audit, exp } = await issueGrantTokens(ctx, { client, grant, resource, scopes, refreshScope: record.scope, grantType: 'refresh_token', commit, ...(dpop ? { jkt: dpop.jkt } : {}), ...(approvals ? { authorizationDetails: approvals } : {}) });
    if (approvals) auditDetailsIssued(ctx, approvals, { jti: audit.jti, grantType: 'refresh_token', clientId: client.clientId, exp });
    return { response, audit: { ...audit, ...trace, reused_within_grace: reused } };
  },
};
