import type { Actor } from '../core/delegation.ts';
import type { Client } from '../core/client-metadata.ts';
import type { ClientRecord } from '../store/types.ts';
import type { ServerContext } from './context.ts';

/**
 * The actor profile (draft-mcguinness-oauth-actor-profile, profile values from
 * draft-mora-oauth-entity-profiles): what a token says about who acts and what kind of entity the
 * subject is.
 *
 * An `act` entry this server adds is `{ sub, iss, sub_profile, client_id }` (§3.4: `iss` is the
 * namespace of `sub`, here always this issuer; `sub_profile` RECOMMENDED; `client_id` is Mandate's
 * extension member). Entries inherited from the subject token are nested as received and never
 * rewritten (§3.5): a token minted before issue 17 keeps its bare `{ sub, client_id? }` entries.
 */

/** Entity profile values Mandate assigns (draft-mora-oauth-entity-profiles registry). */
export const ENTITY_PROFILES = { user: 'user', service: 'service', aiAgent: 'ai_agent' } as const;

/** What the metadata advertises: the subject and actor profiles Mandate's tokens carry. */
export const ENTITY_PROFILES_SUPPORTED = {
  subject: [ENTITY_PROFILES.user, ENTITY_PROFILES.service, ENTITY_PROFILES.aiAgent],
  actor: [ENTITY_PROFILES.service, ENTITY_PROFILES.aiAgent],
};

/**
 * A client's entity profile: the `sub_profile` override of a client from the configuration file or
 * the admin API, else `ai_agent` for an agent and `service` for any other client (MCP servers, the
 * gateway, resource servers). A self-registered client's metadata is the client's own say and
 * never sets its profile: an agent could otherwise present itself as a `user` or a `service`.
 */
export function clientProfile(client: Client): string {
  const override = client.metadata.sub_profile;
  if ((client.source === 'config' || client.source === 'admin') && typeof override === 'string' && override !== '') return override;
  return (client as ClientRecord).agent ? ENTITY_PROFILES.aiAgent : ENTITY_PROFILES.service;
}

/** The `act` entry for the actor of a token exchange (outermost; nested over the subject's chain by the caller). */
export function actorEntry(ctx: ServerContext, client: Client, actorClaims: { sub: string }): Actor {
  return { sub: actorClaims.sub, iss: ctx.issuer, sub_profile: clientProfile(client), client_id: client.clientId };
}

/**
 * The token's top-level `sub_profile`: `user` for a person, the client's profile for a client's own
 * token (client credentials, a workload JWT: `sub` = client_id).
 */
export function subjectProfile(_ctx: ServerContext, request: { sub: string; client: Client; grantType: string }): string | undefined {
  return request.sub === request.client.clientId ? clientProfile(request.client) : ENTITY_PROFILES.user;
}

/** The profiles of a chain for the audit log, outermost first (`''` for an entry without one). */
export function actorProfiles(chain: readonly Actor[]): string[] {
  return chain.map((actor) => (typeof actor.sub_profile === 'string' ? actor.sub_profile : ''));
}
