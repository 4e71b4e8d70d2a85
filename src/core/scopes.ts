/** Scope strings are space-delimited, case-sensitive tokens (RFC 6749 §3.3). */
export function parseScope(scope: string | undefined | null): string[] {
  if (!scope) return [];
  return [...new Set(scope.split(' ').filter(Boolean))];
}

export function formatScope(scopes: Iterable<string>): string {
  return [...new Set(scopes)].join(' ');
}

export function isSubset(subset: readonly string[], superset: readonly string[]): boolean {
  const all = new Set(superset);
  return subset.every((s) => all.has(s));
}

/** Scopes of OpenID Connect itself; they are served by the authorization server, not by a resource. */
export const OIDC_SCOPES = ['openid', 'profile', 'email', 'offline_access'] as const;
