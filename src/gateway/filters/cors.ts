import type { GatewayFilter } from '../types.ts';
import { JSON_RPC_ERRORS } from '../mcp-message.ts';
import { refuse } from './refuse.ts';
import { requestHeader } from '../headers.ts';

const ALLOW_HEADERS = 'authorization, dpop, content-type, accept, mcp-session-id, mcp-protocol-version, mcp-method, mcp-name, last-event-id';
const EXPOSE_HEADERS = 'mcp-session-id, mcp-protocol-version, www-authenticate, dpop-nonce, retry-after, x-request-id';

/**
 * CORS for browser-based MCP clients (MCP Inspector): preflights from allowed origins are
 * answered here; every response to an allowed origin, proxied ones too, carries the headers the
 * page needs to read it (the session id, the challenge). Other origins are refused by validation.
 */
export function corsForOrigins(allowedOrigins: string[]): GatewayFilter {
  const origins = new Set(allowedOrigins);
  return function corsMiddleware(c, next) {
    const origin = requestHeader(c, 'origin');
    const allowed = origin !== undefined && origins.has(origin);
    if (c.req.method === 'OPTIONS') {
      if (origin !== undefined && !allowed) return refuse(c, { status: 403, code: JSON_RPC_ERRORS.invalidRequest, message: 'origin not allowed', rejection: 'origin_not_allowed', id: null });
      const headers: Record<string, string> = { allow: 'GET, POST, DELETE, OPTIONS' };
      if (allowed) {
        Object.assign(headers, {
          'access-control-allow-origin': origin,
          'access-control-allow-methods': 'GET, POST, DELETE',
          'access-control-allow-headers': ALLOW_HEADERS,
          'access-control-max-age': '600',
          vary: 'origin',
        });
      }
      return c.body(null, 204, headers);
    }
    if (allowed) Object.assign(c.get('responseHeaders'), { 'access-control-allow-origin': origin, 'access-control-expose-headers': EXPOSE_HEADERS, vary: 'origin' });
    return next().then(() => {
      // Responses the proxy wrote itself already carry them; the gateway's own answers get them here.
      if (!c.res.headers.has('x-hono-already-sent')) {
        for (const [name, value] of Object.entries(c.get('responseHeaders'))) c.res.headers.set(name, value);
      }
    });
  };
}
