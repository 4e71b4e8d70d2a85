import { adminResourceId, hasAnyAdminScope, narrowToRoles } from '../admin/scopes.ts';
import { formatScope } from '../core/scopes.ts';
import type { ServerContext } from './context.ts';

/**
 * Narrows the scopes of an authorization for the admin resource to the user's roles (docs/admin.md).
 * Other resources pass through. A user left with no admin scope is refused (`invalid_scope`):
 * the refusal and any withheld scope are audited with the reason.
 */
export async function narrowAdminAuthorization(
  ctx: ServerContext,
  request: { sub: string; clientId: string; resource: string; scopes: string[] },
): Promise<{ scopes: string[]; refused?: string }> {
  if (request.resource !== adminResourceId(ctx.issuer)) return { scopes: request.scopes };
  const user = await ctx.store.users.findBySub(request.sub);
  const { scopes, withheld } = narrowToRoles(request.scopes, user?.roles);
  const who = user ? `user ${user.username}` : `subject ${request.sub}`;
  if (!hasAnyAdminScope(scopes)) {
    const reason = `${who} holds no admin role allowing ${formatScope(withheld) || 'an admin scope'}`;
    ctx.audit.record({ at: ctx.now(), type: 'authorize.refused', outcome: 'failure', clientId: request.clientId, sub: request.sub, error: 'invalid_scope', reason, data: { resource: request.resource } });
    return { scopes, refused: reason };
  }
  if (withheld.length > 0) {
    ctx.audit.record({
      at: ctx.now(),
      type: 'scope.withheld',
      outcome: 'success',
      clientId: request.clientId,
      sub: request.sub,
      reason: `${who} holds no admin role allowing these`,
      data: { resource: request.resource, scope_withheld: formatScope(withheld) },
    });
  }
  return { scopes };
}
