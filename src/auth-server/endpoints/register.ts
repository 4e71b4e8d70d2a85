import type { Context, Hono } from 'hono';
import { hashSecret } from '../hash.ts';
import type { AppEnv } from '../context.ts';
import { OAuthError } from '../../core/errors.ts';
import { TOKEN_EXCHANGE_GRANT } from '../../core/delegation.ts';
import { constantTimeEqual, randomToken } from '../../core/encoding.ts';
import { assertValidRedirectUri } from '../../core/redirect-uri.ts';
import { clientMetadataSchema, GRANT_TYPES, type ClientMetadata } from '../../core/client-metadata.ts';
import type { ClientRecord } from '../../store/types.ts';
import { endpointUrls, type ServerContext } from '../context.ts';
import { bearerToken } from '../bearer.ts';

/**
 * Dynamic client registration (RFC 7591) and its management protocol (RFC 7592). The server
 * generates the client_id, the secret (256 bits, stored as a hash) and a registration access token.
 */
export function registerEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  const urls = endpointUrls(ctx.issuer);

  const validate = async (c: Context): Promise<ClientMetadata> => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      throw new OAuthError('invalid_client_metadata', 'the body must be a JSON object');
    }
    const parsed = clientMetadataSchema.safeParse(body);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      const field = String(issue.path[0] ?? '');
      throw new OAuthError(field === 'redirect_uris' ? 'invalid_redirect_uri' : 'invalid_client_metadata', `${field || 'metadata'}: ${issue.message}`);
    }
    const metadata = parsed.data;
    for (const grant of metadata.grant_types) {
      if (!(GRANT_TYPES as readonly string[]).includes(grant)) throw new OAuthError('invalid_client_metadata', `grant_type ${grant} is not supported`);
    }
    if (metadata.response_types.some((r) => r !== 'code')) throw new OAuthError('invalid_client_metadata', 'only the code response type is supported');
    if (metadata.grant_types.includes('authorization_code') && metadata.redirect_uris.length === 0) {
      throw new OAuthError('invalid_redirect_uri', 'redirect_uris are required for the authorization code grant');
    }
    metadata.redirect_uris.forEach(assertValidRedirectUri);
    if (metadata.token_endpoint_auth_method === 'none' && metadata.grant_types.some((g) => g === 'client_credentials' || g === TOKEN_EXCHANGE_GRANT)) {
      throw new OAuthError('invalid_client_metadata', 'a public client cannot use client_credentials or token exchange');
    }
    if (metadata.token_endpoint_auth_method === 'private_key_jwt' && !metadata.jwks && !metadata.jwks_uri) {
      throw new OAuthError('invalid_client_metadata', 'private_key_jwt needs jwks or jwks_uri');
    }
    if (metadata.jwks && metadata.jwks_uri) throw new OAuthError('invalid_client_metadata', 'use jwks or jwks_uri, not both');
    if (metadata.default_resource && !ctx.resource(metadata.default_resource)) {
      throw new OAuthError('invalid_client_metadata', 'default_resource is not a known resource');
    }
    // Fields the client may not choose are dropped rather than trusted.
    const { client_id: _id, client_secret: _secret, registration_access_token: _rat, authentication_policy: _policy, ...rest } = metadata as ClientMetadata &
      Record<string, unknown>;
    return rest as ClientMetadata;
  };

  const response = (record: ClientRecord, secrets: { clientSecret?: string; registrationToken?: string }) => ({
    client_id: record.clientId,
    client_id_issued_at: record.createdAt,
    ...(secrets.clientSecret ? { client_secret: secrets.clientSecret, client_secret_expires_at: 0 } : {}),
    ...(secrets.registrationToken
      ? { registration_access_token: secrets.registrationToken, registration_client_uri: `${urls.registration}/${encodeURIComponent(record.clientId)}` }
      : {}),
    ...record.metadata,
  });

  const needsSecret = (m: ClientMetadata) => m.token_endpoint_auth_method === 'client_secret_basic' || m.token_endpoint_auth_method === 'client_secret_post';

  app.post('/register', async (c) => {
    if (!ctx.config.registration.enabled) throw new OAuthError('access_denied', 'dynamic registration is disabled', { status: 403 });
    const metadata = await validate(c);
    const clientSecret = needsSecret(metadata) ? randomToken(32) : undefined;
    const registrationToken = randomToken(32);
    const record: ClientRecord = {
      clientId: `mc_${randomToken(18)}`,
      source: 'dynamic',
      metadata,
      secretHash: clientSecret ? hashSecret(clientSecret) : undefined,
      registrationTokenHash: hashSecret(registrationToken),
      createdAt: ctx.now(),
    };
    await ctx.store.clients.upsert(record);
    ctx.audit.record({ at: ctx.now(), type: 'client.registered', outcome: 'success', clientId: record.clientId, data: { client_name: metadata.client_name, auth: metadata.token_endpoint_auth_method } });
    return c.json(response(record, { clientSecret, registrationToken }), 201, { 'Cache-Control': 'no-store' });
  });

  /** RFC 7592 §2: the registration access token authenticates management requests. */
  const managed = async (c: Context): Promise<ClientRecord> => {
    const token = bearerToken(c);
    const record = await ctx.store.clients.find(c.req.param('clientId') ?? '');
    // RFC 7592 §2: an unknown client and a wrong token are both 401, so client ids cannot be probed.
    if (!token || !record?.registrationTokenHash || !constantTimeEqual(hashSecret(token), record.registrationTokenHash)) {
      throw new OAuthError('invalid_token', 'the registration access token is invalid', { headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' } });
    }
    return record;
  };

  app.get('/register/:clientId', async (c) => {
    const record = await managed(c);
    return c.json(response(record, {}), 200, { 'Cache-Control': 'no-store' });
  });

  app.put('/register/:clientId', async (c) => {
    const record = await managed(c);
    const raw = (await c.req.json().catch(() => ({}))) as Record<string, unknown>;
    if (raw.client_id !== record.clientId) throw new OAuthError('invalid_client_metadata', 'client_id must match the client being updated');
    const metadata = await validate(c);
    const rotateSecret = needsSecret(metadata) && !record.secretHash;
    const clientSecret = rotateSecret ? randomToken(32) : undefined;
    const updated: ClientRecord = {
      ...record,
      metadata,
      secretHash: needsSecret(metadata) ? (clientSecret ? hashSecret(clientSecret) : record.secretHash) : undefined,
    };
    await ctx.store.clients.upsert(updated);
    ctx.audit.record({ at: ctx.now(), type: 'client.updated', outcome: 'success', clientId: record.clientId });
    return c.json(response(updated, { clientSecret }), 200, { 'Cache-Control': 'no-store' });
  });

  app.delete('/register/:clientId', async (c) => {
    const record = await managed(c);
    await ctx.store.clients.delete(record.clientId);
    ctx.audit.record({ at: ctx.now(), type: 'client.deleted', outcome: 'success', clientId: record.clientId });
    return c.body(null, 204);
  });
}
