import type { Actor } from '../core/delegation.ts';
import type { Client } from '../core/client-metadata.ts';
import type { ServerContext } from './context.ts';

/**
 * The actor profile (draft-mcguinness-oauth-actor-profile): what a token says about who acts and
 * what kind of entity the subject is.
 *
 * Issue 17, WP0: the signatures WP-C fills in. Today's behaviour: an `act` entry names the actor's
 * `sub` only, and tokens carry no top-level `sub_profile`.
 */

/** The `act` entry for the actor of a token exchange (outermost; nested over the subject's chain by the caller). */
export function actorEntry(_ctx: ServerContext, _client: Client, actorClaims: { sub: string }): Actor {
  return { sub: actorClaims.sub };
}

/** The token's top-level `sub_profile`, if any: `user` for a person, the client's profile for a client's own token. */
export function subjectProfile(_ctx: ServerContext, _request: { sub: string; client: Client; grantType: string }): string | undefined {
  return undefined;
}
