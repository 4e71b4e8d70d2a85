import type { AuthServerConfig, StaticClientConfig } from '../config/schema.ts';
import type { ServerContext } from './context.ts';

/**
 * Flags only the configuration file can give a client (`first_party`, `session_transfer`): they
 * are read from the file by client id, never from stored metadata, so a client that registered
 * itself (RFC 7591, a metadata document) cannot claim them, whatever it sends.
 */
const byId = new WeakMap<AuthServerConfig, Map<string, StaticClientConfig>>();

/** One lookup per request (the token endpoint asks on every call): the file's clients by id, built once. */
function configuredClient(config: AuthServerConfig, clientId: string): StaticClientConfig | undefined {
  let clients = byId.get(config);
  if (!clients) byId.set(config, (clients = new Map(config.clients.map((client) => [client.client_id, client]))));
  return clients.get(clientId);
}

/** A first-party client of this deployment: its users are not asked for consent. */
export function isFirstParty(ctx: ServerContext, clientId: string): boolean {
  return configuredClient(ctx.config, clientId)?.first_party === true;
}

/** The session transfer settings of a client, when it is one (docs/browser-sessions.md). */
export interface SessionTransferClient {
  clientId: string;
  allowedReturnUrls: string[];
  subjectClients: string[];
  /** The audiences a subject token may have (every one of its audiences must be listed). */
  audiences: string[];
  bindAddress: boolean;
}

export function sessionTransferClient(ctx: Pick<ServerContext, 'config'>, clientId: string): SessionTransferClient | undefined {
  const client = configuredClient(ctx.config, clientId);
  if (!client?.session_transfer) return undefined;
  return {
    clientId: client.client_id,
    allowedReturnUrls: client.allowed_return_urls,
    subjectClients: client.session_transfer_subject_clients,
    audiences: client.session_transfer_audiences,
    bindAddress: client.session_transfer_bind_address,
  };
}

/**
 * Refuses, at start, a configuration that would weaken a session transfer client or give a flag
 * where it means nothing. A transfer client exists to turn a pushed token into a browser session,
 * nothing else: it may hold no grant but authorization_code (which it can never complete: it has
 * no redirect URI and /token refuses it), and it is never first-party. Agents take none of the flags.
 */
export function checkClientFlags(config: AuthServerConfig): void {
  for (const agent of config.agents) {
    const flags = [
      ...(['first_party', 'session_transfer'] as const).filter((flag) => agent[flag]),
      ...(['allowed_return_urls', 'session_transfer_subject_clients', 'session_transfer_audiences'] as const).filter((list) => agent[list].length > 0),
    ];
    if (flags.length > 0) throw new Error(`agent ${agent.client_id}: ${flags.join(', ')} is for clients, not agents`);
  }
  for (const client of config.clients) {
    const transferOnly = client.allowed_return_urls.length > 0 || client.session_transfer_subject_clients.length > 0 || client.session_transfer_audiences.length > 0;
    if (!client.session_transfer) {
      if (transferOnly) throw new Error(`client ${client.client_id}: allowed_return_urls, session_transfer_subject_clients and session_transfer_audiences need session_transfer: true`);
      continue;
    }
    const refuse = (why: string) => {
      throw new Error(`session transfer client ${client.client_id}: ${why}`);
    };
    if (client.grant_types.length !== 1 || client.grant_types[0] !== 'authorization_code') refuse('grant_types must be [authorization_code] only (no refresh_token, client_credentials, token exchange or device code)');
    if (client.redirect_uris.length > 0) refuse('redirect_uris must be empty: no code is ever sent to it');
    if (client.first_party) refuse('cannot be first_party');
    // It holds no grant, so it is never signed out of anything.
    if (client.post_logout_redirect_uris.length > 0 || client.backchannel_logout_uri) refuse('takes no post_logout_redirect_uris or backchannel_logout_uri');
    if (client.transactions === 'allowed' || client.introspection === 'allowed') refuse('cannot be allowed transactions or introspection');
    if (client.allowed_return_urls.length === 0) refuse('allowed_return_urls must list at least one URL');
    for (const url of client.allowed_return_urls) if (new URL(url).hash) refuse(`allowed return URL ${url} must not have a fragment`);
    if (client.session_transfer_subject_clients.length === 0) refuse('session_transfer_subject_clients must name the app clients whose tokens it accepts');
    // Every resource server that receives the app's tokens could push them here: only those named.
    if (client.session_transfer_audiences.length === 0) refuse('session_transfer_audiences must name the resources whose tokens it accepts');
    const known = new Set([config.issuer, config.issuer.replace(/\/$/, ''), ...config.resources.map((r) => r.id)]);
    for (const audience of client.session_transfer_audiences) if (!known.has(audience)) refuse(`session_transfer_audiences: ${audience} is neither a resource nor the issuer`);
    for (const subject of client.session_transfer_subject_clients) {
      if (subject === client.client_id) refuse('cannot accept its own tokens');
      if (config.clients.find((c) => c.client_id === subject)?.session_transfer) refuse(`subject client ${subject} is itself a session transfer client`);
    }
  }
}
