/**
 * Admin permissions. An admin is a user with roles; a role is an admin scope. The built-in admin
 * resource (`<issuer>/admin`) offers these scopes, and a token for it carries only those the
 * user's roles allow (see `narrowToRoles`).
 *
 * `admin:read` / `admin:write` cover every area; `admin:<area>:read|write` one area. A write scope
 * includes reading the same area: whoever may change a thing may see it.
 */
export const ADMIN_AREAS = [
  'clients',
  'agents',
  'users',
  'resources',
  'agreements',
  'policies',
  'grants',
  'sessions',
  'keys',
  'audit',
  'registration',
  'reports',
] as const;

export type AdminArea = (typeof ADMIN_AREAS)[number];
export type AdminAccess = 'read' | 'write';

/** Every admin scope, broadest first. */
export const ADMIN_SCOPES: readonly string[] = ['admin:read', 'admin:write', ...ADMIN_AREAS.flatMap((a) => [`admin:${a}:read`, `admin:${a}:write`])];

const ADMIN_SCOPE_SET = new Set(ADMIN_SCOPES);

export const isAdminScope = (scope: string) => ADMIN_SCOPE_SET.has(scope);

/** The admin resource identifier: the `aud` of admin tokens. */
export const adminResourceId = (issuer: string) => `${issuer.replace(/\/$/, '')}/admin`;

/** The scopes that grant `access` to `area`, broadest first (what a 403 names). */
export function scopesFor(area: AdminArea, access: AdminAccess): string[] {
  return access === 'read' ? ['admin:read', 'admin:write', `admin:${area}:read`, `admin:${area}:write`] : ['admin:write', `admin:${area}:write`];
}

/** Whether a set of granted scopes allows `access` to `area`. */
export function allows(scopes: Iterable<string>, area: AdminArea, access: AdminAccess): boolean {
  const granted = new Set(scopes);
  return scopesFor(area, access).some((s) => granted.has(s));
}

/**
 * The admin scopes a user with these roles may hold: the roles themselves and, for each write
 * role, the matching read scope. Anything that is not an admin scope is ignored.
 */
export function scopesOfRoles(roles: readonly string[] | undefined): Set<string> {
  const out = new Set<string>();
  for (const role of roles ?? []) {
    if (!isAdminScope(role)) continue;
    out.add(role);
    if (role.endsWith(':write')) out.add(role.replace(/:write$/, ':read'));
  }
  return out;
}

/** Every admin scope that a set of granted scopes includes (`admin:write` includes all of them). */
export function coveredScopes(scopes: Iterable<string>): Set<string> {
  const out = new Set<string>();
  for (const scope of scopes) {
    if (scope === 'admin:write') return new Set(ADMIN_SCOPES);
    if (scope === 'admin:read') for (const s of ADMIN_SCOPES) if (s.endsWith(':read')) out.add(s);
    for (const s of scopesOfRoles([scope])) out.add(s);
  }
  return out;
}

/** The roles (and what they include) that `scopes` do not cover: granting them would be an escalation. */
export function uncoveredRoles(scopes: Iterable<string>, roles: readonly string[]): string[] {
  const covered = coveredScopes(scopes);
  return roles.filter((role) => [...scopesOfRoles([role])].some((s) => !covered.has(s)));
}

/** Keeps the non-admin scopes and the admin scopes the roles allow; says which were dropped. */
export function narrowToRoles(scopes: readonly string[], roles: readonly string[] | undefined): { scopes: string[]; withheld: string[] } {
  // A broad role allows asking for less: `admin:write` covers `admin:keys:write` (least privilege).
  const allowed = coveredScopes(roles ?? []);
  const admitted = scopes.filter((s) => !isAdminScope(s) || allowed.has(s));
  // …and a token names each area once: an area scope that a granted broad one covers is left out
  // (`admin:read` and `admin:keys:read` → `admin:read`).
  const isArea = (scope: string) => scope.split(':').length === 3;
  const kept = admitted.filter((s) => !isAdminScope(s) || !isArea(s) || !admitted.some((t) => t !== s && isAdminScope(t) && coveredScopes([t]).has(s)));
  return { scopes: kept, withheld: scopes.filter((s) => !admitted.includes(s)) };
}

/** Whether the granted scopes hold any admin permission at all. */
export const hasAnyAdminScope = (scopes: readonly string[]) => scopes.some(isAdminScope);

/** Descriptions shown on the consent page. */
export function adminScopeDescription(scope: string): string {
  if (scope === 'admin:read') return 'Read every administrative setting and the audit log';
  if (scope === 'admin:write') return 'Change every administrative setting: clients, agents, users, resources, keys';
  const [, area, access] = scope.split(':');
  return `${access === 'write' ? 'Change' : 'Read'} ${area} (administration)`;
}
