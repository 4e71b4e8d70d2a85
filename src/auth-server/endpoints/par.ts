import type { Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { OAuthError } from '../../core/errors.ts';
import { authenticateClient } from '../client-auth/index.ts';
import { endpointUrls, type ServerContext } from '../context.ts';
import { checkAuthorizationRequest, checkRedirectUri } from '../authorization-request.ts';
import { sessionTransferClient } from '../client-flags.ts';
import { formParams } from '../params.ts';
import { storePushedRequest } from '../par.ts';
import { checkTransferPush } from '../session-transfer.ts';
import { checkTokenRequestProof } from '../dpop.ts';

/** Client authentication parameters: checked here, never stored with the pushed request. */
const CLIENT_AUTH_PARAMS = new Set(['client_secret', 'client_assertion', 'client_assertion_type']);

/**
 * The pushed authorization request endpoint (RFC 9126 §2), for every client, public ones too. The
 * client authenticates as at /token; the request is validated as /authorize would validate it, and
 * errors are JSON (§2.3: 400 with the authorization endpoint's codes, 401 invalid_client), never a
 * redirect. A session transfer client's push is checked by its own rules (session-transfer.ts).
 */
export function parEndpoint(app: Hono<AppEnv>, ctx: ServerContext) {
  const url = endpointUrls(ctx.issuer).pushedAuthorization;
  app.post('/par', async (c) => {
    const params = await formParams(c);
    const client = await authenticateClient(ctx, c, params, url);
    c.set('clientId', client.clientId);
    // RFC 9449 §10.1: a DPoP proof at /par binds the code like dpop_jkt; both and different → refused.
    const dpop = await checkTokenRequestProof(ctx, c, url);
    const dpopJkt = params.get('dpop_jkt');
    if (dpop && dpopJkt !== undefined && dpopJkt !== dpop.jkt) {
      throw new OAuthError('invalid_request', 'dpop_jkt does not match the key of the DPoP proof', { reason: `dpop_jkt ${dpopJkt}; proof of ${dpop.jkt}` });
    }
    // §2.1: a request_uri inside a push is refused (no request of a request).
    if (params.all('request_uri').length > 0) throw new OAuthError('invalid_request', 'request_uri is not allowed in a pushed request');
    const transfer = sessionTransferClient(ctx, client.clientId);
    // The request is the authenticated client's: client_id is added when Basic carried it alone.
    const own = params.entries().filter(([name]) => !CLIENT_AUTH_PARAMS.has(name));
    if (dpop && dpopJkt === undefined) own.push(['dpop_jkt', dpop.jkt]);
    const pushed = { clientId: client.clientId, params: params.get('client_id') === undefined ? [...own.filter(([name]) => name !== 'client_id'), ['client_id', client.clientId] as [string, string]] : own };
    let stored;
    if (transfer) {
      const request = await checkTransferPush(ctx, c, client, transfer, params);
      // The bearer token itself is not kept: what the browser's visit re-checks is in `request`.
      stored = await storePushedRequest(ctx, { clientId: client.clientId, params: [], transfer: request });
    } else {
      if (params.all('subject_token').length > 0) throw new OAuthError('invalid_request', 'subject_token is taken from session transfer clients only');
      const checked = checkAuthorizationRequest(ctx, client, checkRedirectUri(client, params), params);
      if (dpop && !checked.dpopJkt) checked.dpopJkt = dpop.jkt;
      stored = await storePushedRequest(ctx, pushed);
      ctx.audit.record({ at: ctx.now(), type: 'par.pushed', outcome: 'success', clientId: client.clientId, data: { resource: checked.resource, scope: checked.scopes.join(' '), ...(checked.dpopJkt ? { dpop_jkt: checked.dpopJkt } : {}) } });
    }
    // §2.2: 201 Created, request_uri and expires_in; no caching.
    return c.json({ request_uri: stored.requestUri, expires_in: stored.expiresIn }, 201, { 'Cache-Control': 'no-store' });
  });
}
