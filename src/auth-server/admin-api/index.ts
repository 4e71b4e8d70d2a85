import { randomUUID } from 'node:crypto';
import { Hono, type Context } from 'hono';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { AdminError, etagOf, invoke, runBootstrap, type Caller } from '../../admin/index.ts';
import { adminResourceId, ADMIN_SCOPES } from '../../admin/scopes.ts';
import { constantTimeEqual } from '../../core/encoding.ts';
import { bearerToken } from '../bearer.ts';
import type { ServerContext } from '../context.ts';
import { hashSecret } from '../hash.ts';
import { readJsonObject } from '../json-body.ts';
import { adminCallerOfRequest } from './caller.ts';
import { adminOpenApi } from './openapi.ts';
import { ADMIN_ROUTES, hasBody, honoPath, pathParams, type AdminRoute } from './routes.ts';

interface AdminEnv {
  Variables: { caller: Caller; requestId: string };
}

/** Where the admin resource's protected resource metadata is (RFC 9728 §3.1: the resource's path after the well-known prefix). */
export const ADMIN_METADATA_PATH = '/.well-known/oauth-protected-resource/admin';

/**
 * The admin API, `/admin/api/v1` (docs/admin.md): a thin adapter over the admin operations. It
 * protects itself like any resource server: tokens of this issuer for the admin resource only
 * (signature, audience, expiry, revocation, disabled clients), 401 with the protected resource
 * metadata URL (RFC 9728 §5.1), 403 `insufficient_scope` naming the scope needed (RFC 6750 §3.1).
 */
export function adminApi(ctx: ServerContext, options: { bootstrapToken?: string }) {
  const api = new Hono<AdminEnv>();
  const metadataUrl = `${ctx.issuer}${ADMIN_METADATA_PATH}`;
  const challenge = (extra = '') => `Bearer resource_metadata="${metadataUrl}"${extra}`;
  const noStore = { 'Cache-Control': 'no-store' };

  const fail = (c: Context, status: number, error: string, description: string, headers: Record<string, string> = {}) =>
    c.json({ error, error_description: description }, status as ContentfulStatusCode, { ...noStore, ...headers });

  api.use('*', async function requestId(c, next) {
    c.set('requestId', randomUUID());
    c.header('X-Request-Id', c.get('requestId'));
    await next();
  });

  api.onError((error, c) => {
    if (error instanceof AdminError) {
      const headers: Record<string, string> = error.code === 'insufficient_scope' ? { 'WWW-Authenticate': challenge(`, error="insufficient_scope", scope="${error.scopes.join(' ')}"`) } : {};
      return fail(c, error.status, error.code, error.message, headers);
    }
    // OAuth errors (a malformed Authorization header, a body too deep) and the rest: the AS's handler.
    throw error;
  });

  api.get('/openapi.json', (c) => c.json(adminOpenApi(ctx.issuer), 200, { 'Cache-Control': 'public, max-age=300' }));

  if (options.bootstrapToken !== undefined) {
    const expected = hashSecret(options.bootstrapToken);
    api.post('/bootstrap', async (c) => {
      const token = bearerToken(c);
      if (!token || !constantTimeEqual(hashSecret(token), expected)) {
        ctx.audit.record({ at: ctx.now(), type: 'admin.bootstrap', outcome: 'failure', error: 'invalid_token', reason: token ? 'wrong bootstrap token' : 'no bearer token' });
        return fail(c, 401, 'invalid_token', 'the static admin token is required', { 'WWW-Authenticate': 'Bearer realm="mandate-admin-bootstrap"' });
      }
      const body = await readJsonObject(ctx, c, 'invalid_request');
      return c.json(await runBootstrap(ctx, body, { requestId: c.get('requestId') }), 201, noStore);
    });
  } else {
    api.post('/bootstrap', (c) => fail(c, 404, 'not_found', 'the bootstrap token is disabled (admin.bootstrap_token: false)'));
  }

  /** Verifies the bearer token as the admin resource's and builds the caller. */
  api.use('*', async function adminToken(c, next) {
    const verdict = await adminCallerOfRequest(ctx, c, { frontEnd: 'api', requestId: c.get('requestId') });
    if ('refused' in verdict) {
      // A refused DPoP presentation (a bound token as Bearer, a bad proof) keeps its status, error and DPoP challenge.
      const p = 'presentation' in verdict ? verdict.presentation : undefined;
      const error = p?.error ?? 'invalid_token';
      ctx.audit.record({ at: ctx.now(), type: 'admin.refused', outcome: 'failure', error, reason: verdict.refused, data: { path: c.req.path, request_id: c.get('requestId') } });
      const description = verdict.description ?? 'an access token for the admin resource is required';
      const wwwAuthenticate = p ? `${p.challenge}, ${challenge('').replace(/^Bearer /, '')}` : challenge(verdict.refused === 'no bearer token' ? '' : ', error="invalid_token"');
      return fail(c, p?.status ?? 401, error, description, p?.status === 503 ? {} : { 'WWW-Authenticate': wwwAuthenticate });
    }
    c.set('caller', verdict.caller);
    await next();
  });

  const handle = (route: AdminRoute) => async (c: Context<AdminEnv>) => {
    const params = Object.fromEntries(pathParams(route.path).map((name) => [name, c.req.param(name)]));
    const rest = hasBody(route) ? await readJsonObject(ctx, c, 'invalid_request') : c.req.query();
    const ifMatch = c.req.header('if-match');
    const result = await invoke(ctx, c.get('caller'), route.op, { ...rest, ...params }, { ifMatch });
    const headers: Record<string, string> = { ...noStore, ...(route.etag ? { ETag: etagOf(result) } : {}) };
    return c.json(result as object, route.status ?? 200, headers);
  };
  for (const route of ADMIN_ROUTES) api.on(route.method.toUpperCase(), honoPath(route.path), handle(route));

  api.notFound((c) => fail(c, 404, 'not_found', `no endpoint at ${c.req.method} ${c.req.path}`));
  return api;
}

/** The admin resource's protected resource metadata (RFC 9728 §2). */
export function adminResourceMetadata(ctx: ServerContext) {
  return {
    resource: adminResourceId(ctx.issuer),
    resource_name: 'Mandate administration',
    authorization_servers: [ctx.issuer],
    scopes_supported: [...ADMIN_SCOPES],
    bearer_methods_supported: ['header'],
    // RFC 9449 §7 / RFC 9728: with DPoP on, an admin token may be DPoP-bound (then only the DPoP
    // scheme with a proof is accepted, src/auth-server/resource-token.ts).
    ...(ctx.config.dpop.enabled ? { dpop_signing_alg_values_supported: [...ctx.config.dpop.signing_alg_values] } : {}),
  };
}

