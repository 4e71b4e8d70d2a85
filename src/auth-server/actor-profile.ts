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
 * the admin API; else `ai_agent` for an agent; else `service` for a client an administrator made
 * (configuration file, admin API: MCP servers, the gateway, resource servers). A self-registered
 * client (RFC 7591, a client ID metadata document) is `ai_agent` whatever it is: nobody vouched for
 * it, and its own metadata never sets its profile — an agent could otherwise present itself as a
 * `user` or a `service` (or merely register at /register rather than /aiagent/register) and escape
 * rules written for AI agents.
 */
export function clientProfile(client: Client): string {
  const administered = client.source === 'config' || client.source === 'admin';
  const override = client.metadata.sub_profile;
  if (administered && typeof override === 'string' && override !== '') return override;
  if (!administered || (client as ClientRecord).agent) return ENTITY_PROFILES.aiAgent;
  return ENTITY_PROFILES.service;
}

/** The `act` entry for the actor of a token exchange (outermost; nested over the subject's chain by the caller). */
export function actorEntry(ctx: ServerContext, client: Client, actorClaims: { sub: string }): Actor {
  return { sub: actorClaims.sub, iss: ctx.issuer, sub_profile: clientProfile(client), client_id: client.clientId };
}

/** An entity profile value as the draft writes it: space-separated tokens (RFC 6749 §3.3 characters). */
const PROFILE_VALUE = /^[\x21\x23-\x5B\x5D-\x7E]+(?: [\x21\x23-\x5B\x5D-\x7E]+)*$/;

/**
 * The token's top-level `sub_profile` (draft-mcguinness-oauth-actor-profile §3.3: what kind of
 * entity `sub` is):
 * - an exchanged token keeps its subject token's (the subject does not change, RFC 8693 §1.1); a
 *   subject token from before issue 17 has none, and gets the profile it would have had;
 * - a client's own token (client credentials, a workload JWT: `sub` = client_id) has the
 *   client's profile (`clientProfile`);
 * - any other token is a person's: `user`.
 * Reads the store only for an old subject token that was a client's own.
 */
export async function subjectProfile(ctx: ServerContext, request: { sub: string; client: Client; subject?: Record<string, unknown> }): Promise<string> {
  const subject = request.subject;
  if (subject) {
    if (typeof subject.sub_profile === 'string' && PROFILE_VALUE.test(subject.sub_profile)) return subject.sub_profile;
    if (typeof subject.client_id === 'string' && subject.client_id === subject.sub) {
      if (subject.client_id === request.client.clientId) return clientProfile(request.client);
      const owner = await ctx.store.clients.find(subject.client_id);
      return owner ? clientProfile(owner) : ENTITY_PROFILES.service;
    }
    return ENTITY_PROFILES.user;
  }
  return request.sub === request.client.clientId ? clientProfile(request.client) : ENTITY_PROFILES.user;
}

/** The profiles of a chain for the audit log, outermost first (`''` for an entry without one). */
export function actorProfiles(chain: readonly Actor[]): string[] {
  return chain.map((actor) => (typeof actor.sub_profile === 'string' ? actor.sub_profile : ''));
}
