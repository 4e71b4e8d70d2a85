import { actorChain, type Actor } from '../core/delegation.ts';
import { parseScope } from '../core/scopes.ts';
import { deepFreeze } from '../core/cel.ts';
import type { TokenClaims } from './token-validator.ts';
import type { Principal } from './types.ts';

const text = (value: unknown): string => (typeof value === 'string' ? value : '');

/** An `act` entry as the audit log records it: `sub`, and `client_id`, `sub_profile`, `iss` when the token has them. */
export function auditedActor(actor: Actor): { sub: string; client_id?: string; sub_profile?: string; iss?: string } {
  return {
    sub: actor.sub,
    ...(typeof actor.client_id === 'string' ? { client_id: actor.client_id } : {}),
    ...(typeof actor.sub_profile === 'string' ? { sub_profile: actor.sub_profile } : {}),
    ...(typeof actor.iss === 'string' ? { iss: actor.iss } : {}),
  };
}

/** Principals by their (cached, frozen) claims: a token seen again costs no work here either. */
const principals = new WeakMap<TokenClaims, Principal>();

/**
 * Who is calling, from a validated token's claims: subject, client, scopes, the `act` chain, and
 * the caller's part of the CEL variables (deep-frozen, built once per token). Undefined when the
 * token names no subject.
 */
export function principalOf(token: string, claims: TokenClaims): Principal | undefined {
  const known = principals.get(claims);
  if (known?.token === token) return known;
  if (typeof claims.sub !== 'string' || claims.sub === '') return undefined;
  const scopes = Array.isArray(claims.scp) ? (claims.scp as unknown[]).filter((s): s is string => typeof s === 'string') : parseScope(claims.scope);
  const clientId = typeof claims.client_id === 'string' ? claims.client_id : typeof claims.azp === 'string' ? claims.azp : undefined;
  const actors = actorChain(claims.act);
  const cel = deepFreeze({
    claims,
    sub: claims.sub,
    client_id: clientId ?? '',
    scopes,
    // The token's top-level sub_profile ('' for tokens minted before the actor profile).
    sub_profile: text(claims.sub_profile),
    // draft-mcguinness-oauth-actor-profile: every member always present, '' when the entry lacks it
    // (tokens minted before the actor profile, inner entries from elsewhere), so a rule never errors.
    act: actors.map((actor) => ({ sub: actor.sub, client_id: text(actor.client_id), sub_profile: text(actor.sub_profile), iss: text(actor.iss) })),
  });
  const principal: Principal = { token, claims, sub: claims.sub, clientId, scopes, actors, cel };
  if (Object.isFrozen(claims)) principals.set(claims, principal);
  return principal;
}
