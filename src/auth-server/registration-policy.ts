import { OAuthError } from '../core/errors.ts';
import { JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT } from '../core/delegation.ts';
import { isLoopbackHttp } from '../core/redirect-uri.ts';
import { formatScope, OIDC_SCOPES, parseScope } from '../core/scopes.ts';
import { WORKLOAD_IDENTITY_AUTH_METHOD, type Client, type ClientMetadata } from '../core/client-metadata.ts';
import type { AuthServerConfig } from '../config/schema.ts';

type Policy = AuthServerConfig['registration'];

/**
 * How a client came into being without an administrator: RFC 7591 at `/register`, agent
 * registration at `/aiagent/register`, or a client ID metadata document it publishes itself.
 */
export type SelfRegistration = 'dynamic' | 'agent' | 'metadata_document';

export interface PolicyOutcome {
  /** The metadata to store (or, for a metadata document, to use). */
  metadata: ClientMetadata;
  /** What the policy changed, in words, for the registration response (`registration_notes`). */
  notes: string[];
  /** Requested scopes the policy did not grant. */
  withheld: string[];
}

/** Clients nobody vouched for: held to the registration policy when they register and on every use. */
export const isSelfRegistered = (client: Pick<Client, 'source'>): boolean => client.source === 'dynamic' || client.source === 'metadata_document';

const OIDC = new Set<string>(OIDC_SCOPES);

/** What the policy lets a self-registered client hold: the allowlist, and OpenID Connect scopes. */
function grantable(policy: Policy): Set<string> {
  return new Set([...(policy.allowed_scopes ?? []), ...OIDC_SCOPES]);
}

const refuse = (description: string, reason?: string): never => {
  throw new OAuthError('invalid_client_metadata', description, { reason: reason ?? description });
};

/**
 * The one registration policy, for every way a client comes into being without an administrator
 * and for every RFC 7592 update: whether it may register at all, which grants it may declare,
 * which scopes it gets (default deny: only those `registration.allowed_scopes` grants), which
 * redirect hosts it may use. Never trusted from the client: `authentication_policy`.
 * RFC 7591 §3.2.1 lets the server replace requested values; what it replaced is said in `notes`.
 */
export function applyRegistrationPolicy(policy: Policy, requested: ClientMetadata, kind: SelfRegistration): PolicyOutcome {
  if (!policy.enabled) throw new OAuthError('access_denied', 'registration is disabled', { status: 403, reason: 'registration.enabled is false' });
  if (kind !== 'agent' && !policy.dynamic_clients) {
    throw new OAuthError('access_denied', 'open registration is off here; AI agents register at /aiagent/register', { status: 403, reason: 'registration.dynamic_clients is false' });
  }
  const { authentication_policy: _ignored, ...metadata } = requested as ClientMetadata & Record<string, unknown>;
  const notes: string[] = [];
  const grants = metadata.grant_types;
  const isPublic = metadata.token_endpoint_auth_method === 'none';

  if (metadata.token_endpoint_auth_method === WORKLOAD_IDENTITY_AUTH_METHOD) refuse('token_endpoint_auth_method workload_identity is set by an administrator, not at self-registration', `workload_identity at self-registration (${kind} client)`);
  if (kind === 'agent' && isPublic) refuse('an agent is a confidential client: client_secret_basic, client_secret_post or private_key_jwt');
  if (isPublic && grants.some((g) => g === 'client_credentials' || g === TOKEN_EXCHANGE_GRANT)) {
    refuse('a public client cannot use client_credentials or token exchange');
  }
  if (kind !== 'agent' && grants.includes('client_credentials') && !policy.client_credentials) {
    refuse('self-registered clients may not use client_credentials here; register an agent at /aiagent/register', `registration.client_credentials is false (${kind} client)`);
  }
  // Issue 17: the jwt-bearer grant (ID-JAG, workload JWTs) is for clients of the configuration
  // file or the admin API until a registration policy for it exists.
  if (grants.includes(JWT_BEARER_GRANT)) refuse(`grant_type ${JWT_BEARER_GRANT} is not supported for self-registered clients`, `jwt-bearer at self-registration (${kind} client)`);
  if (kind !== 'agent' && grants.includes(TOKEN_EXCHANGE_GRANT) && !policy.token_exchange) {
    refuse('self-registered clients may not use token exchange here; register an agent at /aiagent/register', `registration.token_exchange is false (${kind} client)`);
  }

  // OAuth 2.1 §4.1: only the authorization endpoint takes response types, and only `code`. A
  // client without the authorization code grant never calls it, so whatever it sent is moot.
  let responseTypes = metadata.response_types;
  if (grants.includes('authorization_code')) {
    if (responseTypes.some((r) => r !== 'code')) refuse('only the code response type is supported');
  } else if (responseTypes.length > 0) {
    // `code` alone is RFC 7591's default, not a choice the client made: dropped without a word.
    if (responseTypes.some((r) => r !== 'code')) notes.push('response_types: none registered; without the authorization_code grant the client never uses the authorization endpoint');
    responseTypes = [];
  }

  const allowed = grantable(policy);
  const asked = parseScope(metadata.scope);
  const withheld = asked.filter((s) => !allowed.has(s));
  const scope = asked.length > 0 ? formatScope(asked.filter((s) => allowed.has(s))) : formatScope(policy.allowed_scopes ?? []);
  if (!policy.allowed_scopes) {
    notes.push('scope: no resource scopes; this server grants self-registered clients OpenID Connect scopes only (it has no registration scope allowlist)');
  } else if (withheld.length > 0) {
    notes.push(`scope: ${formatScope(withheld)} withheld; not in this server's registration scope allowlist`);
  }

  const hosts = policy.redirect_uri_hosts;
  for (const uri of hosts ? [...metadata.redirect_uris, ...(metadata.post_logout_redirect_uris ?? [])] : []) {
    const url = new URL(uri);
    const web = url.protocol === 'https:' || url.protocol === 'http:';
    if (web && !isLoopbackHttp(url) && !hosts!.includes(url.hostname)) {
      throw new OAuthError('invalid_redirect_uri', `redirect_uri host ${url.hostname} is not allowed for registered clients`);
    }
  }

  // RFC 8707 lets the server pick the audience of a request that names none: for agents, the
  // resource the policy gives them (seed 003's client credentials name a scope, not a resource).
  const defaultResource = metadata.default_resource ?? (kind === 'agent' ? policy.default_resource : undefined);
  return {
    metadata: { ...metadata, response_types: responseTypes, scope, ...(defaultResource ? { default_resource: defaultResource } : {}) },
    notes,
    withheld,
  };
}

/**
 * The scopes a client may hold, OpenID Connect ones included; undefined for any scope. A
 * self-registered client is held to the policy in force now, not the one it registered under:
 * a narrowed allowlist reaches clients registered before, and so do default-deny and metadata
 * documents that never registered at all.
 */
export function clientScopeLimit(policy: Policy, client: Client): Set<string> | undefined {
  const registered = client.metadata.scope;
  if (!isSelfRegistered(client)) return registered ? new Set([...parseScope(registered), ...OIDC_SCOPES]) : undefined;
  const allowed = grantable(policy);
  if (registered === undefined) return allowed;
  return new Set([...parseScope(registered), ...OIDC_SCOPES].filter((s) => allowed.has(s)));
}

/** Why a self-registered client may not hold these scopes, for the audit log. */
export function withheldReason(policy: Policy, scopes: string[]): string {
  const allowed = grantable(policy);
  const byPolicy = scopes.filter((s) => !allowed.has(s));
  const byClient = scopes.filter((s) => allowed.has(s));
  const why = policy.allowed_scopes ? 'not in registration.allowed_scopes' : 'no registration.allowed_scopes, so self-registered clients get no resource scopes';
  return [
    ...(byPolicy.length ? [`registration policy withholds ${formatScope(byPolicy)}: ${why}`] : []),
    ...(byClient.length ? [`${formatScope(byClient)} not in the client's registered scope`] : []),
  ].join('; ');
}

/** Whether a scope is one of OpenID Connect's own (served by the AS, not a resource). */
export const isOidcScope = (scope: string): boolean => OIDC.has(scope);
