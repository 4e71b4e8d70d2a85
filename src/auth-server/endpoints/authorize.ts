import type { Context, Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { OAuthError } from '../../core/errors.ts';
import { randomToken } from '../../core/encoding.ts';
import { checkCodeChallenge } from '../../core/pkce.ts';
import { matchRedirectUri } from '../../core/redirect-uri.ts';
import { resolveResourceAndScope, unusableReason, type ServerContext } from '../context.ts';
import { errorRedirect, saveInteraction, type Interaction } from '../interaction.ts';
import { Params } from '../params.ts';
import { errorPage, pageLook } from '../pages/layout.ts';

/**
 * The authorization endpoint (OAuth 2.1 §4.1.1). Checks run in two phases. Until the client and
 * its redirect URI are trusted, errors are shown to the user and never redirected (an open
 * redirector otherwise). After that, errors go back to the client with `state` and `iss`.
 */
export function authorizeEndpoint(app: Hono<AppEnv>, ctx: ServerContext) {
  const look = pageLook(ctx.config.branding);
  const handle = async (c: Context, params: Params) => {
    // Phase 1: who is asking, and where may we send the answer?
    let client;
    let redirectUri: string;
    try {
      const clientId = params.require('client_id');
      client = await ctx.findClient(clientId);
      if (!client) throw new OAuthError('invalid_client', 'the client is unknown', { reason: `client_id=${clientId}` });
      const unusable = unusableReason(client, ctx.now());
      if (unusable) throw new OAuthError('invalid_client', 'the client is disabled or has expired', { reason: unusable });
      const requested = params.get('redirect_uri');
      const registered = client.metadata.redirect_uris;
      if (requested === undefined && registered.length !== 1) throw new OAuthError('invalid_request', 'redirect_uri is required');
      redirectUri = requested ?? registered[0]!;
      if (!matchRedirectUri(redirectUri, registered)) {
        throw new OAuthError('invalid_request', 'redirect_uri is not registered for this client', { reason: `redirect_uri=${redirectUri}` });
      }
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      refused(ctx, error, params.get('client_id'));
      if (c.req.header('accept')?.includes('application/json')) return c.json(error.toResponseObject(), 400);
      return errorPage(c, look, error.code, error.message);
    }

    // Phase 2: is the request itself acceptable?
    const state = params.get('state');
    try {
      if (params.get('response_type') !== 'code') {
        throw new OAuthError('unsupported_response_type', 'response_type must be code');
      }
      if (!client.metadata.grant_types.includes('authorization_code')) {
        throw new OAuthError('unauthorized_client', 'the client may not use the authorization code grant');
      }
      if (params.get('request') || params.get('request_uri')) {
        throw new OAuthError('invalid_request', 'request objects are not supported');
      }
      const codeChallenge = checkCodeChallenge(params.get('code_challenge'), params.get('code_challenge_method'));
      const { resource, scopes } = resolveResourceAndScope(ctx, client, { resource: params.all('resource'), scope: params.get('scope') });
      const prompt = (params.get('prompt') ?? '').split(' ').filter(Boolean);
      if (prompt.includes('none') && prompt.length > 1) throw new OAuthError('invalid_request', 'prompt=none cannot be combined');
      const maxAgeParam = params.get('max_age');
      if (maxAgeParam !== undefined && !/^\d{1,9}$/.test(maxAgeParam)) throw new OAuthError('invalid_request', 'max_age must be a non-negative integer');
      const interaction: Interaction = {
        id: randomToken(16),
        clientId: client.clientId,
        redirectUri,
        state,
        nonce: params.get('nonce'),
        scopes,
        resource: resource.id,
        codeChallenge,
        prompt,
        acr: ctx.authenticationPolicy(client.metadata.authentication_policy as string | undefined)?.name,
        maxAge: maxAgeParam === undefined ? undefined : Number(maxAgeParam),
        bind: randomToken(16),
        csrf: randomToken(16),
      };
      await saveInteraction(ctx, c, interaction);
      return c.redirect(`/interaction/${interaction.id}`, 303);
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      refused(ctx, error, client.clientId);
      return c.redirect(errorRedirect(ctx, { redirectUri, state }, error.code, error.message), 303);
    }
  };

  app.get('/authorize', (c) => handle(c, Params.fromSearch(new URL(c.req.url).searchParams)));
  app.post('/authorize', async (c) => {
    const type = c.req.header('content-type') ?? '';
    const body = type.startsWith('application/x-www-form-urlencoded') ? await c.req.text() : '';
    return handle(c, Params.fromSearch(new URLSearchParams(body)));
  });
}

function refused(ctx: ServerContext, error: OAuthError, clientId: string | undefined) {
  ctx.audit.record({
    at: ctx.now(),
    type: 'authorize.refused',
    outcome: 'failure',
    clientId,
    error: error.code,
    reason: error.reason ?? error.message,
  });
}
