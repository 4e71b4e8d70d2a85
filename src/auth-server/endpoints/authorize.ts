import type { Context, Hono } from 'hono';
import type { AppEnv } from '../context.ts';
import { OAuthError } from '../../core/errors.ts';
import { randomToken } from '../../core/encoding.ts';
import type { ServerContext } from '../context.ts';
import { checkAuthorizationRequest, mustPush, trustedClientAndRedirect } from '../authorization-request.ts';
import { sessionTransferClient } from '../client-flags.ts';
import { errorRedirect, saveInteraction, type Interaction } from '../interaction.ts';
import { takePushedRequest } from '../par.ts';
import { Params } from '../params.ts';
import { errorPage, pageLook } from '../pages/layout.ts';
import { completeTransfer } from '../session-transfer.ts';

/** RFC 9126 §4: besides the request_uri, the front channel carries only client_id. */
const FRONT_CHANNEL_WITH_REQUEST_URI = new Set(['client_id', 'request_uri']);

/**
 * The authorization endpoint (OAuth 2.1 §4.1.1). Checks run in two phases. Until the client and
 * its redirect URI are trusted, errors are shown to the user and never redirected (an open
 * redirector otherwise). After that, errors go back to the client with `state` and `iss`.
 * A `request_uri` from /par (RFC 9126 §4) stands for the whole request: its pushed parameters are
 * checked again here, and a session transfer's push ends in a browser session, not a code.
 */
export function authorizeEndpoint(app: Hono<AppEnv>, ctx: ServerContext) {
  const look = pageLook(ctx.config.branding);
  /** An error shown to the user (JSON to a client that asks for it), never redirected. */
  const shown = (c: Context, error: OAuthError, clientId: string | undefined) => {
    if (!error.audited) refused(ctx, error, clientId);
    const status = error.status === 403 ? 403 : 400;
    if (c.req.header('accept')?.includes('application/json')) return c.json(error.toResponseObject(), status);
    return errorPage(c, look, error.code, error.message, status);
  };

  const handle = async (c: Context, front: Params) => {
    let params = front;
    let pushed = false;
    if (front.all('request_uri').length > 0) {
      let clientId: string | undefined;
      try {
        clientId = front.require('client_id');
        const extra = front.entries().find(([name]) => !FRONT_CHANNEL_WITH_REQUEST_URI.has(name));
        if (extra) throw new OAuthError('invalid_request', 'a pushed request takes no other parameters at the authorization endpoint', { reason: `front-channel parameter ${extra[0]} beside request_uri` });
        const request = await takePushedRequest(ctx, front.require('request_uri'), clientId);
        if (request.transfer) {
          const outcome = await completeTransfer(ctx, c, clientId, request.transfer);
          return 'redirect' in outcome ? c.redirect(outcome.redirect, 303) : shown(c, outcome.error, clientId);
        }
        params = Params.fromSearch(new URLSearchParams(request.params));
        pushed = true;
      } catch (error) {
        if (!(error instanceof OAuthError)) throw error;
        return shown(c, error, clientId);
      }
    } else if (sessionTransferClient(ctx, front.get('client_id') ?? '')) {
      // Checked before the redirect URI: a transfer client has none, and comes only through /par.
      return shown(c, new OAuthError('invalid_request', 'this client must push its request to /par', { reason: 'session transfer client without request_uri' }), front.get('client_id'));
    }

    // Phase 1: who is asking, and where may we send the answer?
    let trusted;
    try {
      trusted = await trustedClientAndRedirect(ctx, params);
    } catch (error) {
      if (!(error instanceof OAuthError)) throw error;
      return shown(c, error, params.get('client_id'));
    }
    const { client, redirectUri } = trusted;

    // Phase 2: is the request itself acceptable?
    const state = params.get('state');
    try {
      // RFC 9126 §4: under a PAR-only policy (global or the client's), a request not pushed is refused.
      if (!pushed && mustPush(ctx, client)) throw new OAuthError('invalid_request', 'this client must push its authorization requests to /par', { reason: 'pushed authorization request required' });
      const interaction: Interaction = { ...checkAuthorizationRequest(ctx, client, redirectUri, params), id: randomToken(16), bind: randomToken(16), csrf: randomToken(16) };
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
