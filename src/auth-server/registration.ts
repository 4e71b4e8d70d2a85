import type { Context } from 'hono';
import { OAuthError } from '../core/errors.ts';
import { randomToken } from '../core/encoding.ts';
import { assertValidRedirectUri } from '../core/redirect-uri.ts';
import { parseScope, formatScope } from '../core/scopes.ts';
import { clientMetadataSchema, GRANT_TYPES, type ClientMetadata } from '../core/client-metadata.ts';
import type { AgentAttributes, ClientRecord } from '../store/types.ts';
import { endpointUrls, type ServerContext } from './context.ts';
import { hashSecret } from './hash.ts';
import { applyRegistrationPolicy, type PolicyOutcome, type SelfRegistration } from './registration-policy.ts';
import { jwksUriAllowed } from './client-auth/private-key-jwt.ts';
import { assertRegisteredLogoutMetadata } from './logout-metadata.ts';

/**
 * Validates RFC 7591 client metadata from a request body read once with `readJsonObject` (within
 * the JSON limits). Fields the client may not choose are dropped, not trusted.
 */
export function clientMetadataFrom(ctx: ServerContext, body: Record<string, unknown>, defaults: Partial<ClientMetadata> = {}): ClientMetadata {
  const parsed = clientMetadataSchema.safeParse({ ...defaults, ...withScopeArray(body) });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = String(issue.path[0] ?? '');
    throw new OAuthError(field === 'redirect_uris' ? 'invalid_redirect_uri' : 'invalid_client_metadata', `${field || 'metadata'}: ${issue.message}`);
  }
  const metadata = parsed.data;
  for (const grant of metadata.grant_types) {
    if (!(GRANT_TYPES as readonly string[]).includes(grant)) throw new OAuthError('invalid_client_metadata', `grant_type ${grant} is not supported`);
  }
  if (metadata.grant_types.includes('authorization_code') && metadata.redirect_uris.length === 0) {
    throw new OAuthError('invalid_redirect_uri', 'redirect_uris are required for the authorization code grant');
  }
  metadata.redirect_uris.forEach(assertValidRedirectUri);
  if (metadata.token_endpoint_auth_method === 'private_key_jwt' && !metadata.jwks && !metadata.jwks_uri) {
    throw new OAuthError('invalid_client_metadata', 'private_key_jwt needs jwks or jwks_uri');
  }
  if (metadata.jwks && metadata.jwks_uri) throw new OAuthError('invalid_client_metadata', 'use jwks or jwks_uri, not both');
  if (metadata.jwks_uri && !jwksUriAllowed(metadata.jwks_uri, ctx.config.client_id_metadata_documents.allow_loopback)) {
    throw new OAuthError('invalid_client_metadata', 'jwks_uri must use https');
  }
  assertRegisteredLogoutMetadata(metadata, ctx.config.client_id_metadata_documents.allow_loopback);
  if (metadata.default_resource && !ctx.resource(metadata.default_resource)) {
    throw new OAuthError('invalid_client_metadata', 'default_resource is not a known resource');
  }
  const {
    client_id: _id,
    client_secret: _secret,
    registration_access_token: _rat,
    authentication_policy: _policy,
    agent_type: _type,
    ...rest
  } = metadata as ClientMetadata & Record<string, unknown>;
  return rest as ClientMetadata;
}

/**
 * Seed 003's agents send their scopes as a JSON array, `scopes`; RFC 7591 §2 has a
 * space-separated `scope`. Either is taken (both only if they agree) and stored as `scope`.
 */
function withScopeArray(body: Record<string, unknown>): Record<string, unknown> {
  if (!('scopes' in body)) return body;
  const { scopes, ...rest } = body;
  if (!Array.isArray(scopes) || !scopes.every((s) => typeof s === 'string' && /^[\x21\x23-\x5B\x5D-\x7E]+$/.test(s))) {
    throw new OAuthError('invalid_client_metadata', 'scopes must be an array of scope tokens');
  }
  const scope = formatScope(scopes as string[]);
  if (rest.scope !== undefined && formatScope(parseScope(String(rest.scope))) !== scope) {
    throw new OAuthError('invalid_client_metadata', 'scope and scopes disagree');
  }
  return { ...rest, scope };
}

/**
 * The registration policy, for /register and /aiagent/register alike: a per-address rate limit,
 * a cap on registered clients, the scope allowlist and the redirect URI host rules.
 */
export function registrationPolicy(ctx: ServerContext) {
  const policy = ctx.config.registration;
  const limiter = ctx.limiter('registration', { points: policy.rate_limit_per_minute, perSeconds: 60 });

  return {
    /** Who is registering: the client address (behind `trusted_proxies`; IPv6 per /64). */
    registrant(c: Context): string {
      return ctx.clientAddress(c);
    },

    async admit(c: Context): Promise<void> {
      if (!policy.enabled) throw new OAuthError('access_denied', 'registration is disabled', { status: 403 });
      const registrant = this.registrant(c);
      const counted = await limiter.consume(registrant);
      if (!counted.allowed) {
        throw new OAuthError('temporarily_unavailable', 'too many registrations; try again later', {
          status: 429,
          headers: { 'Retry-After': String(counted.retryAfter) },
          reason: `registration rate limit for ${registrant}`,
        });
      }
      if ((await ctx.store.clients.countDynamic()) >= policy.max_clients) {
        throw new OAuthError('temporarily_unavailable', 'the server holds as many registered clients as it may', { status: 503 });
      }
    },

    /** The registration policy (see `registration-policy.ts`): the metadata to store, and notes on what it changed. */
    apply: (metadata: ClientMetadata, kind: SelfRegistration) => applyRegistrationPolicy(policy, metadata, kind),
  };
}

export type RegistrationPolicy = ReturnType<typeof registrationPolicy>;

export const needsSecret = (m: ClientMetadata) => m.token_endpoint_auth_method === 'client_secret_basic' || m.token_endpoint_auth_method === 'client_secret_post';

/** Stable JSON (sorted keys) for fingerprints. */
function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Creates a client (or an agent) and answers per RFC 7591 §3.2.1. A public client registering the
 * same metadata again from the same address gets its existing registration back (200) instead of
 * a duplicate: MCP clients tend to register on every connection. Confidential registrations are
 * always new, because an existing secret cannot be shown again.
 */
export async function createRegistration(
  ctx: ServerContext,
  c: Context,
  policy: RegistrationPolicy,
  outcome: PolicyOutcome,
  options: { idPrefix: string; agent?: AgentAttributes },
): Promise<Response> {
  const { metadata, notes } = outcome;
  const fingerprint = hashSecret(`${options.idPrefix}|${policy.registrant(c)}|${canonical(metadata)}`);
  if (!needsSecret(metadata) && metadata.token_endpoint_auth_method === 'none') {
    const existing = await ctx.store.clients.findByFingerprint(fingerprint);
    if (existing && existing.disabledAt === undefined) {
      ctx.audit.record({ at: ctx.now(), type: 'client.registration_reused', outcome: 'success', clientId: existing.clientId });
      return c.json(registrationResponse(ctx, existing, {}, notes), 200, { 'Cache-Control': 'no-store' });
    }
  }
  const clientSecret = needsSecret(metadata) ? randomToken(32) : undefined;
  // Public clients get no registration access token: their registration may be shared (see
  // above), and a management token would let one registrant rewrite the redirect URIs of all.
  // They register again to change anything.
  const registrationToken = metadata.token_endpoint_auth_method === 'none' ? undefined : randomToken(32);
  const record: ClientRecord = {
    clientId: `${options.idPrefix}${randomToken(18)}`,
    source: 'dynamic',
    metadata,
    secretHash: clientSecret ? hashSecret(clientSecret) : undefined,
    registrationTokenHash: registrationToken ? hashSecret(registrationToken) : undefined,
    createdAt: ctx.now(),
    agent: options.agent,
    fingerprint,
  };
  await ctx.store.clients.upsert(record);
  ctx.audit.record({
    at: ctx.now(),
    type: options.agent ? 'agent.registered' : 'client.registered',
    outcome: 'success',
    clientId: record.clientId,
    data: {
      client_name: metadata.client_name,
      auth: metadata.token_endpoint_auth_method,
      registrant: policy.registrant(c),
      scope: metadata.scope,
      ...(outcome.withheld.length ? { scope_withheld: formatScope(outcome.withheld) } : {}),
    },
  });
  return c.json(registrationResponse(ctx, record, { clientSecret, registrationToken }, notes), 201, { 'Cache-Control': 'no-store' });
}

/**
 * RFC 7591 §3.2.1: the registered metadata. `registration_notes` (a Mandate extension) says in words
 * what the registration policy replaced; an agent's scopes are also given as the `scopes` array
 * seed 003 reads.
 */
export function registrationResponse(ctx: ServerContext, record: ClientRecord, secrets: { clientSecret?: string; registrationToken?: string }, notes: string[] = []) {
  return {
    client_id: record.clientId,
    client_id_issued_at: record.createdAt,
    ...(secrets.clientSecret ? { client_secret: secrets.clientSecret, client_secret_expires_at: 0 } : {}),
    // RFC 7592 §3: the management URI is always given; the token only when it was just issued.
    ...(record.registrationTokenHash ? { registration_client_uri: `${endpointUrls(ctx.issuer).registration}/${encodeURIComponent(record.clientId)}` } : {}),
    ...(secrets.registrationToken ? { registration_access_token: secrets.registrationToken } : {}),
    ...record.metadata,
    ...(record.agent
      ? {
          agent_type: record.agent.agentType,
          ...(record.agent.owner ? { owner: record.agent.owner } : {}),
          enabled: record.disabledAt === undefined,
          scopes: parseScope(record.metadata.scope),
        }
      : {}),
    ...(notes.length ? { registration_notes: notes } : {}),
  };
}
