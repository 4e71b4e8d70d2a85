import { randomUUID } from 'node:crypto';
import type { Context } from 'hono';
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { AdminError, invoke, type Caller } from '../../admin/index.ts';
import { callerAuditData } from '../../admin/caller.ts';
import { ADMIN_AREAS } from '../../admin/scopes.ts';
import { adminCallerOfRequest } from '../admin-api/caller.ts';
import { ADMIN_METADATA_PATH } from '../admin-api/index.ts';
import type { ServerContext } from '../context.ts';
import { ADMIN_TOOLS, findTool, toolRefusal, visibleTools, writesOff, type WritePolicy } from './tools.ts';

/** Where the admin MCP server answers (docs/admin-mcp.md). */
export const ADMIN_MCP_PATH = '/admin/mcp';

/** Sessions idle longer than this are forgotten; the client starts a new one (MCP: 404 on an unknown session). */
const SESSION_IDLE_MS = 60 * 60 * 1000;
/** At most this many sessions per instance: the least recently used goes first. */
const MAX_SESSIONS = 1000;
/** Sessions one admin may hold open at once; a new one replaces their least recently used. */
const MAX_SESSIONS_PER_ADMIN = 20;

interface Session {
  transport: WebStandardStreamableHTTPServerTransport;
  server: Server;
  /** The admin who opened it: another admin's token never reaches it. */
  sub: string;
  lastSeen: number;
}

/** Every admin area's read scope: what the server asks for while writes are off (least privilege). */
const READ_SCOPES = ['admin:read', ...ADMIN_AREAS.map((a) => `admin:${a}:read`)];

const jsonRpcError = (code: number, message: string) => ({ jsonrpc: '2.0', id: null, error: { code, message } });

/**
 * The admin MCP server, `<issuer>/admin/mcp` (Streamable HTTP, MCP 2025-03-26 to 2025-11-25): one
 * tool per admin operation, run through `invoke` as the admin whose token it is, so every call is
 * checked and audited like the admin API's, with the MCP session and JSON-RPC request ids.
 *
 * It protects itself like any MCP server: 401 with the admin resource's protected resource
 * metadata (RFC 9728; the resource is `<issuer>/admin`, a prefix of this URL, which MCP clients
 * accept and send as the RFC 8707 resource), and tokens for the admin resource only.
 * Read-only unless `admin.mcp.writes` is true and `admin.mcp.production` is not; even then a
 * write tool needs a write scope of its area. Tools it may not run are neither listed nor run.
 */
export function adminMcp(ctx: ServerContext) {
  const policy: WritePolicy = { writes: ctx.config.admin.mcp.writes, production: ctx.config.admin.mcp.production };
  const off = writesOff(policy);
  const metadataUrl = `${ctx.issuer}${ADMIN_METADATA_PATH}`;
  const sessions = new Map<string, Session>();
  const instructions = [
    'Administration of this Mandate authorization server (agents, clients, users, grants and consents, resources, audit log, keys, settings). Every call runs and is audited as you, the signed-in admin.',
    off ? `Read-only here: ${off}.` : 'Write tools are enabled; destructive ones say so in their annotations.',
  ].join(' ');

  /** One MCP server per session; each request's caller comes with the request (roles read every time). */
  const newServer = () => {
    const server = new Server({ name: 'mandate-admin', version: '1.0.0' }, { capabilities: { tools: { listChanged: false } }, instructions });
    const callerOf = (extra: { authInfo?: { extra?: Record<string, unknown> }; sessionId?: string; requestId: string | number }): Caller => {
      const caller = extra.authInfo?.extra?.caller as Caller | undefined;
      if (!caller) throw new McpError(ErrorCode.InternalError, 'no caller');
      return { ...caller, sessionId: extra.sessionId, requestId: String(extra.requestId) };
    };
    server.setRequestHandler(ListToolsRequestSchema, async (_request, extra) => {
      const caller = callerOf(extra);
      const tools = visibleTools(caller, policy).map((t) => ({
        name: t.name,
        title: t.annotations.title,
        description: t.description,
        inputSchema: t.inputSchema as { type: 'object' },
        ...(t.outputSchema ? { outputSchema: t.outputSchema as { type: 'object' } } : {}),
        annotations: t.annotations,
      }));
      return { tools, _meta: { 'mandate/writes': off ? { enabled: false, reason: off } : { enabled: true } } };
    });
    server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
      const caller = callerOf(extra);
      const tool = findTool(request.params.name);
      if (!tool) throw new McpError(ErrorCode.InvalidParams, `no tool ${request.params.name}; tools/list names the tools this server offers you`);
      const refusal = toolRefusal(tool, caller, policy);
      if (refusal) {
        // Refused before the operation: audited here as invoke would, with the reason.
        ctx.audit.record({ at: ctx.now(), type: `admin.${tool.op.name}`, sub: caller.sub, outcome: 'failure', error: refusal.code, reason: refusal.message, data: callerAuditData(caller) });
        throw new McpError(ErrorCode.InvalidRequest, refusal.message, { error: refusal.code });
      }
      try {
        const result = (await invoke(ctx, caller, tool.op, request.params.arguments ?? {})) as Record<string, unknown>;
        return { content: [{ type: 'text', text: JSON.stringify(result, null, 2) }], ...(tool.outputSchema ? { structuredContent: result } : {}) };
      } catch (error) {
        // Errors the model can act on (not found, invalid input, a conflict) are tool results (MCP: tool execution errors).
        if (error instanceof AdminError) return { content: [{ type: 'text', text: `${error.code}: ${error.message}` }], isError: true };
        // Anything else (a database down, a bug) is logged here, not described to the client.
        ctx.log.error({ err: error, tool: tool.name }, 'admin MCP tool failed');
        throw new McpError(ErrorCode.InternalError, `${tool.name} failed on the server; the error is in its log`);
      }
    });
    return server;
  };

  const forget = (id: string) => {
    const session = sessions.get(id);
    if (!session) return;
    sessions.delete(id);
    void session.transport.close();
    void session.server.close();
  };
  const sweep = (sub: string) => {
    const now = Date.now();
    for (const [id, session] of sessions) if (now - session.lastSeen > SESSION_IDLE_MS) forget(id);
    // An admin's new session first replaces that admin's least recently used one: no admin can
    // push the others' sessions out by opening many.
    const own = [...sessions].filter(([, session]) => session.sub === sub).map(([id]) => id);
    for (const id of own.slice(0, Math.max(0, own.length - MAX_SESSIONS_PER_ADMIN + 1))) forget(id);
    while (sessions.size >= MAX_SESSIONS) forget(sessions.keys().next().value!);
  };

  return async function adminMcpHandler(c: Context): Promise<Response> {
    const sessionHeader = c.req.header('mcp-session-id');
    const challenge = (extra = '') => `Bearer resource_metadata="${metadataUrl}"${off ? `, scope="${READ_SCOPES.join(' ')}"` : ''}${extra}`;
    const verdict = await adminCallerOfRequest(ctx, c, { frontEnd: 'mcp', sessionId: sessionHeader });
    if ('refused' in verdict) {
      // A refused DPoP presentation (a bound token as Bearer, a bad proof) keeps its status, error and DPoP challenge.
      const p = 'presentation' in verdict ? verdict.presentation : undefined;
      const error = p?.error ?? 'invalid_token';
      ctx.audit.record({ at: ctx.now(), type: 'admin.refused', outcome: 'failure', error, reason: verdict.refused, data: { path: c.req.path, front_end: 'mcp', ...(sessionHeader ? { session_id: sessionHeader } : {}) } });
      const description = verdict.description ?? 'an access token for the admin resource is required';
      const wwwAuthenticate = p ? `${p.challenge}, ${challenge('').replace(/^Bearer /, '')}` : challenge(verdict.refused === 'no bearer token' ? '' : ', error="invalid_token"');
      return c.json({ error, error_description: description }, p?.status ?? 401, {
        ...(p?.status === 503 ? {} : { 'WWW-Authenticate': wwwAuthenticate }),
        'Cache-Control': 'no-store',
      });
    }
    const { caller } = verdict;
    // No server-sent stream: every answer comes in the POST's response (MCP: 405 on GET is allowed).
    if (c.req.method === 'GET') return c.json(jsonRpcError(ErrorCode.InvalidRequest, 'this server sends no stream; POST requests'), 405, { Allow: 'POST, DELETE' });
    const authInfo = { token: '', clientId: caller.clientId ?? '', scopes: caller.scopes, extra: { caller } };

    let session = sessionHeader ? sessions.get(sessionHeader) : undefined;
    if (sessionHeader && (!session || session.sub !== caller.sub)) {
      return c.json(jsonRpcError(-32001, 'session not found; initialize a new one'), 404);
    }
    if (!session) {
      sweep(caller.sub);
      const server = newServer();
      const created: Session = {
        server,
        sub: caller.sub,
        lastSeen: Date.now(),
        transport: new WebStandardStreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          enableJsonResponse: true,
          onsessioninitialized: (id) => void sessions.set(id, created),
          onsessionclosed: (id) => void sessions.delete(id),
        }),
      };
      await server.connect(created.transport);
      session = created;
    }
    session.lastSeen = Date.now();
    if (sessionHeader) {
      // Most recently used last: the sweep drops from the front.
      sessions.delete(sessionHeader);
      sessions.set(sessionHeader, session);
    }
    const response = await session.transport.handleRequest(c.req.raw, { authInfo });
    // A request that opened no session (not an initialize): nothing to keep.
    if (!sessionHeader && session.transport.sessionId === undefined) void session.server.close();
    return response;
  };
}

/** The tool names, for documentation and tests. */
export const ADMIN_TOOL_NAMES = ADMIN_TOOLS.map((t) => t.name);
