import type { MiddlewareHandler } from 'hono';
import { isOAuthError } from '../../core/errors.ts';
import type { CompiledRoute } from '../route.ts';
import type { GatewayEnv } from '../types.ts';
import { GATEWAY_ERRORS, refuse } from './refuse.ts';
import { upstreamPath } from './proxy.ts';

/**
 * The token mediation filter: decides what the upstream gets as Authorization. By default
 * nothing — the caller's token was issued for the gateway and passing it on would let the
 * upstream replay it (MCP security best practices, "token passthrough"). With `mediation`, a token
 * exchanged at the AS for the upstream's audience, with the gateway as actor.
 */
export function mediate(route: CompiledRoute): MiddlewareHandler<GatewayEnv> {
  // With `upstreams` there is no mediation (the schema refuses it); the URL is then unused.
  const upstream = new URL(route.config.upstream ?? route.config.upstreams![0]!.url);
  const pathFor = upstreamPath(route.config, upstream);
  return async function mediateMiddleware(c, next) {
    c.set('upstreamAuthorization', undefined);
    c.set('upstreamDpop', undefined);
    c.set('upstreamDpopNonce', undefined);
    c.set('upstreamDpopRetry', undefined);
    if (route.mediator) {
      const principal = c.get('principal');
      // Several issuers: the exchange happens at mediation.issuer only. Another issuer's token is
      // refused, never sent to an authorization server that did not issue it (docs/gateway.md).
      const issuer = route.validator.issuerOf(principal.claims)?.issuer;
      if (issuer !== route.mediationIssuer) {
        return refuse(c, {
          status: 403,
          code: GATEWAY_ERRORS.forbidden,
          message: 'the gateway could not obtain a token for the upstream',
          rejection: 'mediation_issuer',
          reason: `the token's issuer ${String(issuer)} is not the mediation issuer ${String(route.mediationIssuer)}`,
        });
      }
      try {
        const token = await route.mediator.upstreamToken(principal.token, principal.scopes.join(' ') || undefined);
        if (route.mediator.bound) {
          // RFC 9449 §7.1: the token bound to the gateway's key, with a proof for the upstream URL
          // (what the proxy will call: after rewrite, without the query) over the body it will send.
          c.set('upstreamAuthorization', `DPoP ${token}`);
          const mediator = route.mediator;
          const url = `${upstream.origin}${pathFor(c.req.path, '')}`;
          const proof = (nonce?: string) => mediator.upstreamProof({ token, method: c.req.method, url, body: c.get('mcp').body, nonce });
          c.set('upstreamDpop', await proof());
          c.set('upstreamDpopNonce', (nonce) => mediator.noteUpstreamNonce(url, nonce));
          // RFC 9449 §9: the upstream's 401 use_dpop_nonce is retried once by the forwarder, with this.
          c.set('upstreamDpopRetry', (nonce) => {
            mediator.noteUpstreamNonce(url, nonce);
            return proof(nonce);
          });
        } else {
          c.set('upstreamAuthorization', `Bearer ${token}`);
        }
      } catch (error) {
        if (!isOAuthError(error)) throw error;
        const unavailable = error.code === 'temporarily_unavailable';
        return refuse(c, {
          status: unavailable ? 503 : 403,
          code: unavailable ? GATEWAY_ERRORS.unavailable : GATEWAY_ERRORS.forbidden,
          message: error.message,
          rejection: 'mediation_failed',
          reason: error.reason,
          decision: unavailable ? 'error' : 'deny',
        });
      }
    }
    return next();
  };
}
