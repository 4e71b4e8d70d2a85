import type { ServerContext } from './context.ts';
import type { TokenLookup } from './token-lookup.ts';

/**
 * Who may see what a token is (RFC 7662 §4: the AS decides who may introspect which token).
 * A client has a reason to see an access token when it is the client the token was issued to,
 * the client the token names in `may_act` (it may exchange it), a resource server of the token's
 * audience (`resources[].resource_servers`), or a configured client with `introspection: allowed`.
 * A refresh token is shown to its own client only. Everyone else is told `{"active": false}`
 * (RFC 7662 §2.2), as if the token did not exist, so introspection cannot be used to probe tokens.
 */
export function introspectionRefusal(ctx: ServerContext, clientId: string, found: TokenLookup): string | undefined {
  if (found.kind === 'refresh_token') {
    return found.record.clientId === clientId ? undefined : `refresh token of client ${found.record.clientId}`;
  }
  const { claims } = found;
  if (claims.client_id === clientId || mayIntrospectAll(ctx, clientId)) return undefined;
  if ((claims.may_act as { sub?: unknown } | undefined)?.sub === clientId) return undefined;
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (audiences.some((aud) => typeof aud === 'string' && ctx.resource(aud)?.resourceServers.includes(clientId))) return undefined;
  return `not issued to ${clientId}, nor for a resource it serves (aud ${audiences.join(' ')})`;
}

/** The explicit permission of a configured client (`introspection: allowed`). */
export function mayIntrospectAll(ctx: ServerContext, clientId: string): boolean {
  return [...ctx.config.clients, ...ctx.config.agents].some((client) => client.client_id === clientId && client.introspection === 'allowed');
}

/** The revocation list is for resource servers and gateways, and clients explicitly allowed. */
export function mayReadRevocations(ctx: ServerContext, clientId: string): boolean {
  return mayIntrospectAll(ctx, clientId) || ctx.resources().some((resource) => resource.resourceServers.includes(clientId));
}
