import type { Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { OAuthError } from '../../core/errors.ts';
import { authenticateClient, carriesClientAuthentication } from '../client-auth/index.ts';
import { endpointUrls, type ServerContext } from '../context.ts';
import { grants } from '../grants/index.ts';
import { formParams } from '../params.ts';
import { sessionTransferClient } from '../client-flags.ts';
import { deferredTokenRequestProof, requireClientProof } from '../dpop.ts';

/** The token endpoint (OAuth 2.1 §3.2): authenticate the client, then hand over to the grant plug-in. */
export function tokenEndpoint(app: Hono<AppEnv>, ctx: ServerContext) {
  const url = endpointUrls(ctx.issuer).token;
  app.post('/token', async (c) => {
    const params = await formParams(c);
    const grantType = params.require('grant_type');
    const grant = grants.get(grantType);
    if (!grant || grant.enabled?.(ctx) === false) throw new OAuthError('unsupported_grant_type', `grant_type ${grantType} is not supported`);
    // A grant that names its own client (a workload JWT, SEP-1933) does so only for a request that
    // carries no client authentication; anything else is authenticated as always.
    const named = grant.authenticate && !carriesClientAuthentication(c, params) ? await grant.authenticate(ctx, c, params) : undefined;
    const client = named ?? (await authenticateClient(ctx, c, params, url));
    c.set('clientId', client.clientId);
    // A session transfer client never gets a token, whatever grant it tries (docs/browser-sessions.md).
    if (sessionTransferClient(ctx, client.clientId)) throw new OAuthError('unauthorized_client', 'this client gets no tokens', { reason: 'session transfer client at the token endpoint' });
    if (!client.metadata.grant_types.includes(grantType)) {
      throw new OAuthError('unauthorized_client', `the client is not registered for ${grantType}`);
    }
    // RFC 9396 at this endpoint: only the grants that read it; elsewhere it would be silently dropped.
    if (params.all('authorization_details').length > 0 && !grant.parameters.includes('authorization_details')) {
      throw new OAuthError('invalid_authorization_details', `authorization_details are accepted with token exchange and refresh, not with ${grantType}`);
    }
    // RFC 9449 §4.3, §5: the proof is checked once, after client authentication (the audit names the
    // client), and every grant binds what it issues to its key. Its jti is spent only once the grant
    // succeeded (§11.1): a request that gets no token (a public client's made-up refresh token)
    // leaves no entry, so nobody fills the replay store without credentials that work.
    const proof = await deferredTokenRequestProof(ctx, c, url);
    const dpop = proof?.dpop;
    requireClientProof(client, dpop);
    const { response, audit } = await grant.handler(ctx, { client, params, c, ...(dpop ? { dpop } : {}) });
    await proof?.spend();
    ctx.audit.record({ at: ctx.now(), type: 'token.issued', outcome: 'success', clientId: client.clientId, sub: audit.sub, data: { grant_type: grantType, ...audit, ...(dpop ? { dpop_jkt: dpop.jkt } : {}) } });
    return c.json(response, 200, { 'Cache-Control': 'no-store', Pragma: 'no-cache' });
  });
}
