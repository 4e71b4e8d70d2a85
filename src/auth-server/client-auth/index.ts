import type { Context } from 'hono';
import { hashSecret } from '../hash.ts';
import { OAuthError } from '../../core/errors.ts';
import { constantTimeEqual } from '../../core/encoding.ts';
import { WORKLOAD_IDENTITY_AUTH_METHOD, type TokenEndpointAuthMethod } from '../../core/client-metadata.ts';
import { spendWorkloadJti, verifyWorkloadJwt, WorkloadRefused } from '../workload/verify.ts';
import type { ClientRecord } from '../../store/types.ts';
import { unusableReason, type ServerContext } from '../context.ts';
import type { Params } from '../params.ts';
import { JWT_BEARER_ASSERTION, verifyClientAssertion } from './private-key-jwt.ts';

interface Presented {
  method: TokenEndpointAuthMethod;
  clientId: string;
  secret?: string;
  assertion?: string;
}

/** Which authentication the request carries; more than one is an error (RFC 6749 §2.3). */
function presented(c: Context, params: Params): Presented {
  const header = c.req.header('authorization');
  const found: Presented[] = [];
  if (header?.toLowerCase().startsWith('basic ')) {
    const decoded = Buffer.from(header.slice(6).trim(), 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon < 0) throw new OAuthError('invalid_client', 'malformed Basic credentials');
    // RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
    const decode = (s: string) => {
      try {
        return decodeURIComponent(s.replace(/\+/g, ' '));
      } catch {
        throw new OAuthError('invalid_client', 'malformed Basic credentials');
      }
    };
    found.push({ method: 'client_secret_basic', clientId: decode(decoded.slice(0, colon)), secret: decode(decoded.slice(colon + 1)) });
  }
  const assertion = params.get('client_assertion');
  if (assertion) {
    if (params.get('client_assertion_type') !== JWT_BEARER_ASSERTION) {
      throw new OAuthError('invalid_client', 'unsupported client_assertion_type');
    }
    const sub = unverifiedSubject(assertion);
    found.push({ method: 'private_key_jwt', clientId: params.get('client_id') ?? sub, assertion });
  }
  const secret = params.get('client_secret');
  if (secret !== undefined) found.push({ method: 'client_secret_post', clientId: params.require('client_id'), secret });
  if (found.length > 1) throw new OAuthError('invalid_request', 'use exactly one client authentication method');
  if (found.length === 1) {
    const bodyId = params.get('client_id');
    if (bodyId !== undefined && bodyId !== found[0]!.clientId) throw new OAuthError('invalid_request', 'client_id does not match the authenticated client');
    return found[0]!;
  }
  const clientId = params.get('client_id');
  if (!clientId) throw new OAuthError('invalid_client', 'client authentication is required', { headers: { 'WWW-Authenticate': 'Basic' } });
  return { method: 'none', clientId };
}

/**
 * Whether the request carries any client authentication or identification (Authorization header,
 * client_assertion, client_secret, client_id). A grant with an `authenticate` hook is asked to name
 * the client only when it carries none.
 */
export function carriesClientAuthentication(c: Context, params: Params): boolean {
  return c.req.header('authorization') !== undefined || params.get('client_assertion') !== undefined || params.get('client_secret') !== undefined || params.get('client_id') !== undefined;
}

function unverifiedSubject(assertion: string): string {
  try {
    const payload = JSON.parse(Buffer.from(assertion.split('.')[1] ?? '', 'base64url').toString('utf8')) as { sub?: unknown };
    if (typeof payload.sub === 'string') return payload.sub;
  } catch {
    // fall through
  }
  throw new OAuthError('invalid_client', 'malformed client assertion');
}

/**
 * Authenticates the client of a token, introspection or revocation request with the method it
 * registered — no other. Failures are audited with the reason and answered with a generic
 * `invalid_client` (401, with a Basic challenge when Basic was tried; RFC 6749 §5.2).
 */
export async function authenticateClient(ctx: ServerContext, c: Context, params: Params, endpointUrl: string): Promise<ClientRecord> {
  let attempt: Presented | undefined;
  try {
    attempt = presented(c, params);
    const client = await ctx.findClient(attempt.clientId);
    if (!client) throw new OAuthError('invalid_client', 'client authentication failed', { reason: 'unknown client_id' });
    const registered = client.metadata.token_endpoint_auth_method;
    // A platform JWT is a client assertion too (RFC 7523 §2.2); the registered method says which.
    if (attempt.method === 'private_key_jwt' && registered === WORKLOAD_IDENTITY_AUTH_METHOD) attempt.method = WORKLOAD_IDENTITY_AUTH_METHOD;
    if (registered !== attempt.method) {
      throw new OAuthError('invalid_client', 'client authentication failed', { reason: `used ${attempt.method}, registered ${registered}` });
    }
    if (attempt.method === 'client_secret_basic' || attempt.method === 'client_secret_post') {
      // Secrets are 256-bit random values: a SHA-256 hash compared in constant time is enough.
      const ok = client.secretHash !== undefined && constantTimeEqual(hashSecret(attempt.secret!), client.secretHash);
      if (!ok) throw new OAuthError('invalid_client', 'client authentication failed', { reason: 'wrong client secret' });
    } else if (attempt.method === 'private_key_jwt') {
      await verifyClientAssertion(ctx, client, attempt.assertion!, endpointUrl);
    } else if (attempt.method === WORKLOAD_IDENTITY_AUTH_METHOD) {
      await workloadClientAssertion(ctx, client, params, attempt.assertion!);
    }
    // Only after the credentials check: a wrong secret must not learn that the client is disabled.
    const unusable = unusableReason(client, ctx.now());
    if (unusable) throw new OAuthError('invalid_client', 'the client is disabled or has expired', { reason: unusable });
    // First use only (one write per client, not per request): the admin API's first_used_at, and
    // what expires dynamic clients never used. Every stored client — configured agents, agent
    // registrations, dynamic clients — is recorded; a metadata-document client has no row.
    if (client.source !== 'metadata_document' && client.lastUsedAt === undefined) {
      await ctx.store.clients.touch(client.clientId, ctx.now());
      client.lastUsedAt = ctx.now();
    }
    return client;
  } catch (error) {
    if (error instanceof OAuthError && error.code === 'invalid_client') {
      ctx.audit.record({
        at: ctx.now(),
        type: 'client.auth_failed',
        outcome: 'failure',
        clientId: attempt?.clientId,
        error: error.code,
        reason: error.reason ?? error.message,
        data: { method: attempt?.method, endpoint: endpointUrl },
      });
      error.audited = true;
      if (attempt?.method === 'client_secret_basic' && !error.headers['WWW-Authenticate']) {
        const challenged = new OAuthError('invalid_client', error.message, { reason: error.reason, headers: { 'WWW-Authenticate': 'Basic realm="mandate"' } });
        challenged.audited = true;
        throw challenged;
      }
    }
    throw error;
  }
}

/**
 * Mandate's workload variant of RFC 7523 §2.2 (issue 17, SEP-1933): the platform JWT's `sub` is
 * the workload (a service account, a SPIFFE ID), not the client_id, so `client_id` must be in the
 * body and the JWT must carry that client's registered workload identity. Checks in
 * src/auth-server/workload/verify.ts; a refusal is `invalid_client` with the reason audited.
 */
async function workloadClientAssertion(ctx: ServerContext, client: ClientRecord, params: Params, assertion: string): Promise<void> {
  if (params.get('client_id') === undefined) throw new OAuthError('invalid_client', 'client authentication failed', { reason: 'workload_identity: client_id is required in the body' });
  try {
    await spendWorkloadJti(ctx, await verifyWorkloadJwt(ctx, assertion, { client }));
  } catch (error) {
    if (error instanceof WorkloadRefused) throw new OAuthError('invalid_client', 'client authentication failed', { reason: error.reason });
    throw error;
  }
}
