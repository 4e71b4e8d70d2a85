import type { MiddlewareHandler } from 'hono';
import { JSON_RPC_ERRORS, JsonRpcError, PROTOCOL_STATELESS, PROTOCOL_WITH_SESSIONS, checkStandardHeaders, parseMcpMessage, type McpMessage } from '../mcp-message.ts';

/**
 * The validation filter, first in the gateway's chain: everything after it may trust that the
 * request is a well-formed MCP request for a protocol revision it speaks, from an allowed origin.
 * Refusals are JSON-RPC error bodies with the HTTP status the transport defines.
 */
export interface ValidateOptions {
  /** Browser origins allowed to call (a request without Origin is not from a browser page). */
  allowedOrigins: string[];
  /** Largest POST body, in bytes. */
  maxBodyBytes: number;
  /** Protocol revisions accepted in MCP-Protocol-Version. */
  protocolVersions?: string[];
}

/** What later filters read from `c.get('mcp')`. */
export interface McpRequestContext {
  /** Undefined for GET (the SSE stream) and DELETE (end of session). */
  message?: McpMessage;
  /** The raw body, to forward unchanged. */
  body?: string;
  protocolVersion: string;
  sessionId?: string;
}

export interface ValidateVariables {
  mcp: McpRequestContext;
}

const encoder = new TextEncoder();

/** Without the header, the Streamable HTTP transport assumes its first revision (2025-03-26). */
const DEFAULT_PROTOCOL = '2025-03-26';

export function validateMcp(options: ValidateOptions): MiddlewareHandler<{ Variables: ValidateVariables }> {
  if (!(options.maxBodyBytes > 0)) throw new Error('validateMcp: maxBodyBytes must be positive');
  for (const origin of options.allowedOrigins) {
    if (origin !== new URL(origin).origin) throw new Error(`validateMcp: ${origin} is not an origin (scheme://host[:port])`);
  }
  const origins = new Set(options.allowedOrigins);
  const versions = new Set(options.protocolVersions ?? [DEFAULT_PROTOCOL, '2025-06-18', PROTOCOL_WITH_SESSIONS, PROTOCOL_STATELESS]);

  return async function validateMcpMiddleware(c, next) {
    const refuse = (status: number, code: number, message: string, id: string | number | null = null) => {
      const error = new JsonRpcError(code, message, id, status);
      return c.json(error.toResponseObject(), status as 400);
    };
    // DNS rebinding and cross-site calls: a browser Origin must be on the list (MCP transport security).
    const origin = c.req.header('origin');
    if (origin !== undefined && !origins.has(origin)) return refuse(403, JSON_RPC_ERRORS.invalidRequest, 'origin not allowed');

    const protocolVersion = c.req.header('mcp-protocol-version') ?? DEFAULT_PROTOCOL;
    if (!versions.has(protocolVersion)) return refuse(400, JSON_RPC_ERRORS.invalidRequest, `unsupported MCP-Protocol-Version ${protocolVersion}`);
    const sessionId = c.req.header('mcp-session-id');
    const accept = c.req.header('accept') ?? '';
    const method = c.req.method;

    if (method === 'GET' || method === 'DELETE') {
      // 2026-07-28 has no sessions: no GET stream, no DELETE.
      if (protocolVersion >= PROTOCOL_STATELESS) return refuse(405, JSON_RPC_ERRORS.invalidRequest, `${method} is not part of MCP ${protocolVersion}`);
      if (method === 'GET' && !accept.includes('text/event-stream')) return refuse(406, JSON_RPC_ERRORS.invalidRequest, 'GET must accept text/event-stream');
      c.set('mcp', { protocolVersion, sessionId });
      return next();
    }
    if (method !== 'POST') return refuse(405, JSON_RPC_ERRORS.invalidRequest, `${method} is not an MCP method`);
    if (!accept.includes('application/json') || !accept.includes('text/event-stream')) {
      return refuse(406, JSON_RPC_ERRORS.invalidRequest, 'Accept must list application/json and text/event-stream');
    }
    if (!(c.req.header('content-type') ?? '').toLowerCase().startsWith('application/json')) {
      return refuse(415, JSON_RPC_ERRORS.invalidRequest, 'Content-Type must be application/json');
    }
    const declared = Number(c.req.header('content-length'));
    if (declared > options.maxBodyBytes) return refuse(413, JSON_RPC_ERRORS.invalidRequest, `body larger than ${options.maxBodyBytes} bytes`);
    const body = await c.req.text();
    if (encoder.encode(body).length > options.maxBodyBytes) return refuse(413, JSON_RPC_ERRORS.invalidRequest, `body larger than ${options.maxBodyBytes} bytes`);

    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      return refuse(400, JSON_RPC_ERRORS.parseError, 'the body is not JSON');
    }
    try {
      const message = parseMcpMessage(json);
      checkStandardHeaders(message, { method: c.req.header('mcp-method'), name: c.req.header('mcp-name') }, protocolVersion);
      c.set('mcp', { message, body, protocolVersion, sessionId });
    } catch (error) {
      if (!(error instanceof JsonRpcError)) throw error;
      return refuse(error.status, error.code, error.message, error.id);
    }
    return next();
  };
}
