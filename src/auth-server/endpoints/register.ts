import type { Context, Hono } from 'hono';
import { OAuthError } from '../../core/errors.ts';
import { constantTimeEqual, randomToken } from '../../core/encoding.ts';
import { TOKEN_EXCHANGE_GRANT } from '../../core/delegation.ts';
import { DEVICE_CODE_GRANT } from '../../core/client-metadata.ts';
import type { ClientRecord } from '../../store/types.ts';
import { unusableReason, type AppEnv, type ServerContext } from '../context.ts';
import { bearerToken } from '../bearer.ts';
import { hashSecret } from '../hash.ts';
import { clientMetadataFrom, createRegistration, needsSecret, registrationPolicy, registrationResponse } from '../registration.ts';
import { readJsonObject } from '../json-body.ts';

const AGENT_GRANTS = ['client_credentials', 'authorization_code', 'refresh_token', TOKEN_EXCHANGE_GRANT, DEVICE_CODE_GRANT];

/**
 * Dynamic client registration (RFC 7591) with its management protocol (RFC 7592), and agent
 * registration (`/aiagent/register`, seed 003): the server generates the client_id, the secret
 * (256 bits, stored as a hash) and a registration access token. An agent is a confidential client
 * marked as an agent, allowed client credentials, authorization code, refresh and token exchange.
 * Every creation and update goes through the one registration policy (`registration-policy.ts`).
 */
export function registerEndpoints(app: Hono<AppEnv>, ctx: ServerContext) {
  const policy = registrationPolicy(ctx);

  app.post('/register', async (c) => {
    if (!ctx.config.registration.dynamic_clients) throw new OAuthError('access_denied', 'open registration is off here; AI agents register at /aiagent/register', { status: 403 });
    await policy.admit(c);
    const body = await readJsonObject(ctx, c, 'invalid_client_metadata');
    return createRegistration(ctx, c, policy, policy.apply(clientMetadataFrom(ctx, body), 'dynamic'), { idPrefix: 'mc_' });
  });

  app.post('/aiagent/register', async (c) => {
    await policy.admit(c);
    const body = await readJsonObject(ctx, c, 'invalid_client_metadata');
    if (body.client_id !== undefined) throw new OAuthError('invalid_client_metadata', 'the server chooses an agent client_id');
    const requested = clientMetadataFrom(ctx, body, { grant_types: AGENT_GRANTS, token_endpoint_auth_method: 'client_secret_basic' });
    const agentType = typeof body.agent_type === 'string' && body.agent_type ? body.agent_type : 'assistant';
    return createRegistration(ctx, c, policy, policy.apply(requested, 'agent'), { idPrefix: 'agent_', agent: { agentType } });
  });

  /** RFC 7592 §2: the registration access token authenticates management requests. */
  const managed = async (c: Context): Promise<ClientRecord> => {
    const token = bearerToken(c);
    const record = await ctx.store.clients.find(c.req.param('clientId') ?? '');
    // RFC 7592 §2: an unknown client and a wrong token are both 401, so client ids cannot be probed.
    if (!token || !record?.registrationTokenHash || !constantTimeEqual(hashSecret(token), record.registrationTokenHash)) {
      throw new OAuthError('invalid_token', 'the registration access token is invalid', { headers: { 'WWW-Authenticate': 'Bearer error="invalid_token"' } });
    }
    // A disabled or expired client cannot manage (and so cannot revive) itself.
    const unusable = unusableReason(record, ctx.now());
    if (unusable) throw new OAuthError('access_denied', 'the client is disabled or has expired', { status: 403, reason: unusable });
    return record;
  };

  app.get('/register/:clientId', async (c) => {
    const record = await managed(c);
    return c.json(registrationResponse(ctx, record, {}), 200, { 'Cache-Control': 'no-store' });
  });

  app.put('/register/:clientId', async (c) => {
    const record = await managed(c);
    const raw = await readJsonObject(ctx, c, 'invalid_client_metadata');
    if (raw.client_id !== record.clientId) throw new OAuthError('invalid_client_metadata', 'client_id must match the client being updated');
    // RFC 7592 §2.2 replaces the metadata: the whole policy applies again, as at registration.
    const { metadata, notes } = policy.apply(clientMetadataFrom(ctx, raw), record.agent ? 'agent' : 'dynamic');
    const clientSecret = needsSecret(metadata) && !record.secretHash ? randomToken(32) : undefined;
    const patch = {
      metadata,
      // The metadata changed: an identical registration must not find this client any more.
      fingerprint: undefined,
      secretHash: needsSecret(metadata) ? (clientSecret ? hashSecret(clientSecret) : record.secretHash) : undefined,
    };
    // Only these fields, and only while the client is enabled: a disable that lands meanwhile wins.
    if (!(await ctx.store.clients.update(record.clientId, patch, { onlyIfEnabled: true }))) {
      throw new OAuthError('access_denied', 'the client is disabled or was deleted', { status: 403 });
    }
    const updated: ClientRecord = { ...record, ...patch };
    ctx.audit.record({ at: ctx.now(), type: 'client.updated', outcome: 'success', clientId: record.clientId });
    return c.json(registrationResponse(ctx, updated, { clientSecret }, notes), 200, { 'Cache-Control': 'no-store' });
  });

  app.delete('/register/:clientId', async (c) => {
    const record = await managed(c);
    // RFC 7592 §2.3: the client's grants and tokens go with it. The row stays as a disabled
    // tombstone without credentials, so tokens issued before are cut off like a disabled agent's.
    const now = ctx.now();
    await ctx.store.clients.update(record.clientId, {
      disabledAt: now,
      tokensValidAfter: now,
      secretHash: undefined,
      registrationTokenHash: undefined,
      fingerprint: undefined,
    });
    await ctx.store.grants.revokeByClient(record.clientId, now);
    await ctx.refreshDisabled();
    ctx.audit.record({ at: ctx.now(), type: 'client.deleted', outcome: 'success', clientId: record.clientId });
    return c.body(null, 204);
  });
}
