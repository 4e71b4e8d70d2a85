import type { ClientRecord } from '../../store/types.ts';
import type { Resource, ServerContext } from '../context.ts';
import type { Interaction } from '../interaction.ts';
import { isOidcScope } from '../registration-policy.ts';
import type { ConsentView } from './consent.ts';
import type { PageLook } from './layout.ts';
import type { ClientView } from './parts.ts';

function hostOf(url: string): string | undefined {
  try {
    return new URL(url).hostname.toLowerCase();
  } catch {
    return undefined;
  }
}

/**
 * How the pages present a client. Verified: configured in the server's file, or described by a
 * client ID metadata document on a host listed in `client_id_metadata_documents.verified_hosts`.
 * A client that registered itself (RFC 7591, /aiagent/register) or a document elsewhere chose
 * its own name: nobody vouches for it.
 */
export function clientView(ctx: ServerContext, clientId: string, record: ClientRecord | undefined): ClientView {
  const documentHost = record?.source === 'metadata_document' ? hostOf(clientId) : undefined;
  const trustedHosts = ctx.config.client_id_metadata_documents.verified_hosts.map((h) => h.toLowerCase());
  const verified = record?.source === 'config' || (documentHost !== undefined && trustedHosts.includes(documentHost));
  return { id: clientId, name: record?.metadata.client_name ?? clientId, verified, documentHost: verified ? documentHost : undefined, isAgent: record?.agent !== undefined };
}

/**
 * Where the permissions are used. A token for an agent itself (`may_act: requesting_client`) is
 * only a starting point: the agent exchanges it (RFC 8693) for tokens at the resources that offer
 * the granted scopes and accept it as an actor, so those are named (the bank, not the agent's
 * own audience). Any other token is used at its resource.
 */
export function placesOf(ctx: ServerContext, resource: Resource, clientId: string, scopes: string[]): Resource[] {
  if (resource.mayAct !== 'requesting_client') return [resource];
  const wanted = scopes.filter((s) => !isOidcScope(s));
  const reachable = ctx
    .resources()
    .filter((r) => r.id !== resource.id && r.scopes.some((s) => wanted.includes(s.name)) && (r.exchange.allowedActors === undefined || r.exchange.allowedActors.includes(clientId)));
  return reachable.length > 0 ? reachable : [resource];
}

/** A scope is high risk where the token is for, or at any resource the agent can take it to. */
function highRiskScopes(resource: Resource, places: Resource[]): Set<string> {
  return new Set([resource, ...places].flatMap((r) => r.scopes.filter((s) => s.high_risk).map((s) => s.name)));
}

/**
 * The high-risk scopes of this interaction that the user must tick for them to be granted: every
 * high-risk scope, when the client is unverified. The consent POST grants only those ticked.
 */
export async function scopesNeedingTick(ctx: ServerContext, interaction: Interaction): Promise<string[]> {
  const resource = ctx.resource(interaction.resource);
  if (!resource) return [];
  const client = clientView(ctx, interaction.clientId, await ctx.findClient(interaction.clientId));
  if (client.verified) return [];
  const high = highRiskScopes(resource, placesOf(ctx, resource, interaction.clientId, interaction.scopes));
  return interaction.scopes.filter((s) => high.has(s));
}

/** Everything the consent page shows, from the interaction and the configuration. */
export async function consentView(
  ctx: ServerContext,
  look: PageLook,
  interaction: Interaction,
  page: { action: string; username: string },
): Promise<ConsentView> {
  const resource = ctx.resource(interaction.resource)!;
  const client = clientView(ctx, interaction.clientId, await ctx.findClient(interaction.clientId));
  const places = placesOf(ctx, resource, interaction.clientId, interaction.scopes);
  const high = highRiskScopes(resource, places);
  const described = new Map([...places, resource].flatMap((r) => r.scopes.filter((s) => s.description).map((s) => [s.name, s.description!] as const)));
  const delegateId = typeof resource.mayAct === 'object' ? resource.mayAct.client_id : undefined;
  return {
    action: page.action,
    csrf: interaction.csrf,
    client,
    username: page.username,
    places: places.map((r) => ({ id: r.id, name: r.name })),
    scopes: interaction.scopes.map((name) => ({
      name,
      description: described.get(name) ?? look.text.consent.scopes[name],
      highRisk: high.has(name),
      needsTick: high.has(name) && !client.verified,
    })),
    delegate: delegateId && delegateId !== interaction.clientId ? clientView(ctx, delegateId, await ctx.findClient(delegateId)) : undefined,
    identityOnly: interaction.scopes.every((s) => isOidcScope(s)),
  };
}
