import { Hono } from 'hono';
import { cors } from 'hono/cors';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import { OAuthError } from '../core/errors.ts';
import type { AppEnv, ServerContext } from './context.ts';
import { bodyLimit } from './body-limit.ts';
import { singleBearerCredential } from './bearer.ts';
import { authorizeEndpoint } from './endpoints/authorize.ts';
import { parEndpoint } from './endpoints/par.ts';
import { interactionEndpoints } from './endpoints/interaction.ts';
import { introspectEndpoint } from './endpoints/introspect.ts';
import { metadataEndpoints } from './endpoints/metadata.ts';
import { registerEndpoints } from './endpoints/register.ts';
import { revokeEndpoint } from './endpoints/revoke.ts';
import { deviceEndpoints } from './endpoints/device.ts';
import { accountEndpoints } from './endpoints/account.ts';
import { logoutEndpoints } from './endpoints/logout.ts';
import { tokenEndpoint } from './endpoints/token.ts';
import { userinfoEndpoints } from './endpoints/userinfo.ts';
import { revocationsEndpoint } from './endpoints/revocations.ts';
import { ADMIN_METADATA_PATH, adminApi, adminResourceMetadata } from './admin-api/index.ts';
import { ADMIN_MCP_PATH, adminMcp } from './admin-mcp/index.ts';
import { consoleApp } from './console/index.ts';
import { transactionsApi } from './endpoints/transactions.ts';
import { toolPinsApi } from './tool-pins/endpoint.ts';
import { approvalEndpoints } from './endpoints/approve.ts';
import { UNAVAILABLE_RETRY_AFTER_SECONDS, unavailableReason } from '../store/unavailable.ts';
import { dpopNonceHeader } from './dpop.ts';

/** RFC 6749 §4.1.2.1 `temporarily_unavailable`, also used at the token endpoint (as OAuth 2.1 does). */
export const temporarilyUnavailable = () => new OAuthError('temporarily_unavailable', 'the service is temporarily unavailable; try again shortly');

/** Endpoints that browser-based clients (MCP Inspector) call from the page (DESIGN §4). */
const CORS_PATHS = ['/.well-known/*', '/jwks', '/register', '/register/*', '/token', '/par', '/revoke', '/userinfo'];

/** Builds the authorization server's Hono app. Mountable in any Hono host. */
export function createAuthServerApp(ctx: ServerContext, options: { adminToken?: string }): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.use('*', bodyLimit({ maxBytes: ctx.config.request_limits.max_body_bytes }));
  if (ctx.config.cors.allowed_origins.length > 0) {
    const origins = ctx.config.cors.allowed_origins;
    // RFC 9449: browser clients send DPoP proofs and must read the server's DPoP-Nonce.
    const policy = cors({ origin: origins, allowHeaders: ['Authorization', 'Content-Type', 'MCP-Protocol-Version', 'DPoP'], exposeHeaders: ['DPoP-Nonce', 'WWW-Authenticate'], maxAge: 600 });
    for (const path of CORS_PATHS) app.use(path, policy);
    // The admin MCP server, for browser-based MCP clients (MCP Inspector's web UI).
    app.use(
      ADMIN_MCP_PATH,
      cors({
        origin: origins,
        allowMethods: ['GET', 'POST', 'DELETE'],
        allowHeaders: ['Authorization', 'Content-Type', 'Accept', 'Mcp-Session-Id', 'MCP-Protocol-Version', 'Last-Event-ID', 'DPoP'],
        exposeHeaders: ['WWW-Authenticate', 'Mcp-Session-Id', 'MCP-Protocol-Version', 'DPoP-Nonce'],
        maxAge: 600,
      }),
    );
  }

  app.use('/userinfo', singleBearerCredential);
  // RFC 9449 §8.2: with server nonces on, every /token and /par answer carries a fresh one.
  app.use('/token', dpopNonceHeader(ctx));
  app.use('/par', dpopNonceHeader(ctx));
  metadataEndpoints(app, ctx);
  registerEndpoints(app, ctx);
  authorizeEndpoint(app, ctx);
  parEndpoint(app, ctx);
  interactionEndpoints(app, ctx);
  tokenEndpoint(app, ctx);
  deviceEndpoints(app, ctx);
  accountEndpoints(app, ctx);
  // Signing out (docs/browser-sessions.md): RP-initiated logout; ending a session sends back-channel logout tokens.
  logoutEndpoints(app, ctx);
  introspectEndpoint(app, ctx);
  revokeEndpoint(app, ctx);
  userinfoEndpoints(app, ctx);
  revocationsEndpoint(app, ctx);
  // High-risk actions (docs/high-risk-actions.md): gateways ask for approvals; users decide on the pages.
  app.route('/transactions', transactionsApi(ctx));
  approvalEndpoints(app, ctx);
  // Tool pinning (docs/gateway.md "Tool pinning"): gateways report tools/list answers; admins approve changes.
  app.route('/tool-pins', toolPinsApi(ctx));
  // The admin API over admin identities; the static token only bootstraps the first admin.
  app.get(ADMIN_METADATA_PATH, (c) => c.json(adminResourceMetadata(ctx), 200, { 'Cache-Control': 'public, max-age=300' }));
  app.route('/admin/api/v1', adminApi(ctx, { bootstrapToken: options.adminToken }));
  if (ctx.config.admin.mcp.enabled) app.on(['GET', 'POST', 'DELETE'], ADMIN_MCP_PATH, adminMcp(ctx));
  // The web console (docs/console.md): a client of this server, reaching /token and /revoke in process.
  app.route(
    '/console',
    consoleApp(ctx, async (path, form, c) =>
      app.fetch(new Request(ctx.url(path), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(form) }), c.env),
    ),
  );

  app.notFound((c) => c.json({ error: 'not_found', error_description: `no endpoint at ${c.req.method} ${c.req.path}` }, 404));

  // The single error handler: OAuth errors become their standard response (and an audit record
  // with the detailed reason); anything else is logged and answered with a generic server_error.
  app.onError((error, c) => {
    if (error instanceof OAuthError) {
      if (!error.audited && error.status < 500) {
        ctx.audit.record({
          at: ctx.now(),
          type: `${c.req.path.split('/')[1] || 'request'}.refused`,
          outcome: 'failure',
          clientId: c.get('clientId'),
          error: error.code,
          reason: error.reason ?? error.message,
        });
      }
      return c.json(error.toResponseObject(), error.status as ContentfulStatusCode, { ...error.headers, 'Cache-Control': 'no-store' });
    }
    const unavailable = unavailableReason(error);
    if (unavailable) {
      // A dependency is down (database, Redis): the client may retry; the server stays up.
      ctx.log.warn({ path: c.req.path, reason: unavailable }, 'a dependency is unavailable; answered 503');
      return c.json(temporarilyUnavailable().toResponseObject(), 503, { 'Retry-After': String(UNAVAILABLE_RETRY_AFTER_SECONDS), 'Cache-Control': 'no-store' });
    }
    ctx.log.error({ err: error, path: c.req.path }, 'unhandled error');
    return c.json({ error: 'server_error', error_description: 'the server could not complete the request' }, 500, { 'Cache-Control': 'no-store' });
  });

  return app;
}
