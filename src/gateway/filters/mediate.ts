import type { MiddlewareHandler } from 'hono';
import { isOAuthError } from '../../core/errors.ts';
import type { CompiledRoute } from '../route.ts';
import type { GatewayEnv } from '../types.ts';
import { GATEWAY_ERRORS, refuse } from './refuse.ts';

/**
 * The token mediation filter: decides what the upstream gets as Authorization. By default
 * nothing — the caller's token was issued for the gateway and passing it on would let the
 * upstream replay it (MCP security best practices, "token passthrough"). With `mediation`, a token
 * exchanged at the AS for the upstream's audience, with the gateway as actor.
 */
export function mediate(route: CompiledRoute): MiddlewareHandler<GatewayEnv> {
  return async function mediateMiddleware(c, next) {
    c.set('upstreamAuthorization', undefined);
    if (route.mediator) {
      const principal = c.get('principal');
      try {
        c.set('upstreamAuthorization', `Bearer ${await route.mediator.upstreamToken(principal.token, principal.scopes.join(' ') || undefined)}`);
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
