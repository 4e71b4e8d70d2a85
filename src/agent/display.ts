// How the agent names things to a person: the scopes of a resource, and who signed in.
import { OIDC_SCOPES } from '../core/scopes.ts';
import type { SignedInUser } from './store.ts';
import { forTerminal } from './terminal.ts';

const OIDC = new Set<string>(OIDC_SCOPES);
/** Scopes of a resource, without OpenID Connect's own (which are about the sign-in, not the resource). */
export const resourceScopes = (scopes: string[]): string[] => scopes.filter((scope) => !OIDC.has(scope));

/** The person as the ID token names them: `Demo User (demo)`, else the username, else the subject. */
export function displayUser(user: SignedInUser | undefined, sub: unknown): string {
  if (!user) return forTerminal(String(sub));
  const handle = user.preferred_username ?? user.sub;
  return forTerminal(user.name && user.name !== handle ? `${user.name} (${handle})` : handle);
}
