import { Hono } from 'hono';
import { OAuthError } from '../../core/errors.ts';
import { authenticateServiceClient } from '../client-auth/service-client.ts';
import type { AppEnv, ServerContext } from '../context.ts';
import { readJsonObject } from '../json-body.ts';
import { mayPinTools, readReport, reportTools } from './pins.ts';

/** Client authentication fields a JSON body may carry, as a form body would at /token (RFC 6749 §2.3.1, RFC 7523 §2.2). */

/**
 * The gateways' pin endpoint (docs/gateway.md "Tool pinning"), mounted at /tool-pins:
 *
 *   POST /   { resource, upstream?, first_use?, list_id?, tools: [{ name, definition? | hash? }] }
 *            → 200 { tools: [{ name, verdict: pinned|new|changed|unknown, hash?, approved_hash? }], resource_pinned? }
 *
 * A tool with its definition is a report (what a tools/list returned); with a hash only, a
 * question about that definition; with its name only, a question about the pin. The caller
 * authenticates as at /token and must be a confidential client configured with
 * `tool_pins: allowed` (default denied) and one of the resource's `resource_servers`: a gateway
 * reads and writes the pins of the resources it fronts only. Refusals are audited as `tool_pin.refused`.
 */
export function toolPinsApi(ctx: ServerContext): Hono<AppEnv> {
  const api = new Hono<AppEnv>();
  const endpoint = ctx.url('/tool-pins');
  api.post('/', async (c) => {
    try {
      const body = await readJsonObject(ctx, c, 'invalid_request');
      const client = await authenticateServiceClient(ctx, c, body, endpoint, { what: 'tool pins', allowed: (id) => mayPinTools(ctx, id), denied: 'the client may not report or read tool pins', flag: 'tool_pins: allowed' });
      const report = await readReport(ctx, body);
      // The pins of a resource are its gateways' business only: the client must serve it (as for the revocation feed).
      if (!ctx.resource(report.resource)!.resourceServers.includes(client.clientId)) {
        throw new OAuthError('unauthorized_client', 'the client may not report or read the tool pins of this resource', {
          status: 403,
          reason: `client ${client.clientId} is not a resource server of ${report.resource} (resources[].resource_servers)`,
        });
      }
      const tools = await reportTools(ctx, client.clientId, report);
      // A tool nobody reported: whether the resource has pins at all (nothing pinned yet: trust on first use still applies).
      const unknown = tools.some((tool) => tool.verdict === 'unknown');
      const resourcePinned = unknown ? { resource_pinned: await ctx.store.toolPins.any(report.resource, report.upstream) } : {};
      return c.json({ tools, ...resourcePinned }, 200, { 'Cache-Control': 'no-store' });
    } catch (error) {
      if (error instanceof OAuthError && !error.audited && error.status < 500) {
        ctx.audit.record({ at: ctx.now(), type: 'tool_pin.refused', outcome: 'failure', clientId: c.get('clientId'), error: error.code, reason: `${c.req.method} ${c.req.path}: ${error.reason ?? error.message}` });
        error.audited = true;
      }
      throw error;
    }
  });
  return api;
}
