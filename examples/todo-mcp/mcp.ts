import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';
import { decodeJwt } from 'jose';
import { z } from 'zod';
import { isOAuthError } from '../../src/core/errors.ts';
import { Mediator } from '../../src/gateway/mediator.ts';
import { resourceServer, type ResourceServerOptions } from '../../src/gateway/resource-server.ts';
import { parseCredential } from '../../src/gateway/dpop.ts';
import { SessionStoreUnavailable, type SessionOwner, type SessionStore, type SessionVerdict } from '../../src/gateway/sessions.ts';
import { issuerMetadata, type TokenClaims, type ValidationContext } from '../../src/gateway/token-validator.ts';
import { failure, text } from '../shared/mcp-results.ts';

/**
 * The demo's Todo MCP server (seed 000's topology) as a fetch handler on web-standard APIs only, so
 * the same source runs on Node (`server.ts`, a thin `node:http` wrapper) and on Cloudflare Workers
 * (`worker.ts`). It protects itself — 401 with its protected resource metadata, tokens for its own
 * URL only — and, for every tool that needs the Todo API, exchanges the user's token (RFC 8693,
 * itself as actor with its own client credentials) for a token for the API with the narrowest scope
 * the tool needs. The user's token never leaves it.
 *
 * Each request gets its own `McpServer` on the SDK's `WebStandardStreamableHTTPServerTransport`
 * (JSON responses): the tools keep no state between calls, everything follows from the token.
 * Without `sessions` it is stateless (no `Mcp-Session-Id`, as on Node). With a `SessionStore` it
 * gives out a session id at `initialize`, bound to the caller (sub, client): a later request must
 * carry it and come from the same caller (else 404, as an unknown session), DELETE ends it, and a
 * store that cannot answer refuses (503). GET (a standalone SSE stream) is then 405: a server made
 * per request has nothing to push later.
 */
export interface TodoMcpHandlerOptions {
  issuer: string;
  /** Its own resource identifier, e.g. http://localhost:8787/mcp. */
  resource: string;
  todoApi: string;
  clientId: string;
  clientSecret: string;
  /** Browser origins allowed (MCP Inspector). */
  allowedOrigins?: string[];
  /** Node passes node:crypto verification (faster); jose's WebCrypto otherwise. */
  createVerifier?: ResourceServerOptions['createVerifier'];
  /** The AS's revocation feed. */
  revocations?: ResourceServerOptions['revocations'];
  /** How the AS's key set stays fresh: `timer` (Node, the default) or `on-use` (the Worker). */
  jwksSchedule?: ResourceServerOptions['jwksSchedule'];
  /**
   * DPoP-bound access tokens (RFC 9449 §7), as a gateway route's `dpop` block: `allow` (the
   * default) takes Bearer tokens as before and `Authorization: DPoP` with its proof; `require`
   * takes DPoP-bound tokens only; `off` takes Bearer only. In every mode a DPoP-bound token sent as
   * Bearer is refused (401 invalid_token).
   */
  dpop?: TodoMcpDpopMode | ResourceServerOptions['dpop'];
  /** Where proof `jti`s are remembered: default this process's (isolate's) memory. */
  dpopReplay?: ResourceServerOptions['dpopReplay'];
  /** Sessions bound to their caller; stateless without. */
  sessions?: SessionStore;
  /** Told each refusal with its reason (the Worker logs them); Node passes none. */
  onRefusal?: (refusal: TodoMcpRefusal) => void;
}

export const TODO_MCP_DPOP_MODES = ['off', 'allow', 'require'] as const;
export type TodoMcpDpopMode = (typeof TODO_MCP_DPOP_MODES)[number];

export interface TodoMcpRefusal {
  status: number;
  error: string;
  reason: string;
  sub?: string;
  client_id?: string;
}

export interface TodoMcpHandler {
  /** `context.waitUntil` (the Worker's) keeps a key set fetch or revocation poll begun by the request running after it. */
  fetch(request: Request, context?: ValidationContext): Promise<Response>;
  /** The path of the protected resource metadata document (RFC 9728). */
  metadataPath: string;
  close(): void;
}

const SESSION_NOT_FOUND = -32001;
const SESSION_REASONS: Record<Exclude<SessionVerdict, 'own'>, string> = {
  unknown: 'no session with this Mcp-Session-Id (never opened, ended, or idle past its lifetime)',
  other_subject: 'session opened by another subject',
  other_client: 'session opened by the same subject through another client',
};

/** The transport's own bound (4 MiB), kept when the body is read here to see whether it is an initialize. */
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** The body as text, or undefined past `max` bytes (declared or read): never more than that in memory. */
async function readBounded(request: Request, max: number): Promise<string | undefined> {
  const bytes = await readBoundedBytes(request, max);
  return bytes === undefined ? undefined : new TextDecoder().decode(bytes);
}

/** The body's bytes, or undefined past `max` bytes (declared or read). */
async function readBoundedBytes(request: Request, max: number): Promise<Uint8Array<ArrayBuffer> | undefined> {
  if (Number(request.headers.get('content-length') ?? 0) > max) return undefined;
  if (!request.body) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let total = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.byteLength;
    if (total > max) {
      await reader.cancel();
      return undefined;
    }
    chunks.push(value);
  }
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, at);
    at += chunk.byteLength;
  }
  return bytes;
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'content-type': 'application/json', ...headers } });
const rpcError = (status: number, code: number, message: string, headers: Record<string, string> = {}) => json(status, { jsonrpc: '2.0', id: null, error: { code, message } }, headers);

export function todoMcpHandler(options: TodoMcpHandlerOptions): TodoMcpHandler {
  const guard = resourceServer({
    resource: options.resource,
    issuer: options.issuer,
    scopesSupported: ['todo_api:read', 'todo_api:write'],
    resourceName: 'Todo MCP server',
    createVerifier: options.createVerifier,
    revocations: options.revocations,
    jwksSchedule: options.jwksSchedule,
    dpop: typeof options.dpop === 'string' || options.dpop === undefined ? { mode: options.dpop ?? 'allow' } : options.dpop,
    dpopReplay: options.dpopReplay,
  });
  // The proof's htu is compared with this server's public URL, never one built from the Host header.
  const publicOrigin = new URL(options.resource).origin;
  const mediator = new Mediator({ metadata: issuerMetadata(options.issuer), clientId: options.clientId, clientSecret: options.clientSecret, resource: options.todoApi });
  const origins = new Set(options.allowedOrigins ?? []);
  const mcpPath = new URL(options.resource).pathname;
  const sessions = options.sessions;

  /** Calls the Todo API with a token exchanged for exactly the scope the call needs. */
  const callApi = async (userToken: string, scope: 'todo_api:read' | 'todo_api:write', method: string, path: string, body?: unknown) => {
    const apiToken = await mediator.upstreamToken(userToken, scope);
    const response = await fetch(`${options.todoApi}${path}`, {
      method,
      headers: { authorization: `Bearer ${apiToken}`, ...(body ? { 'content-type': 'application/json' } : {}) },
      body: body ? JSON.stringify(body) : undefined,
    });
    const payload = response.status === 204 ? {} : ((await response.json().catch(() => ({}))) as Record<string, unknown>);
    if (!response.ok) throw new Error(`Todo API answered ${response.status}: ${String(payload.error_description ?? payload.error ?? '')}`);
    return payload;
  };
  const safely = async (run: () => Promise<ReturnType<typeof text>>) => {
    try {
      return await run();
    } catch (error) {
      if (!isOAuthError(error)) return failure((error as Error).message);
      // The mediator's words are the gateway's; here it is this server's own exchange for the Todo API.
      if (error.code === 'temporarily_unavailable') return failure('the Todo MCP server could not reach the authorization server to exchange your token for a Todo API token');
      const refusedBy = error.reason?.replace(/^token exchange refused: /, '');
      return failure(`the authorization server refused the Todo MCP server's token exchange for a Todo API token${refusedBy ? ` (${refusedBy})` : ''}`);
    }
  };

  const mcpFor = (userToken: string, claims: TokenClaims) => {
    const server = new McpServer({ name: 'mandate-demo-todo', version: '1.0.0' });
    server.registerTool('who_am_I', { description: 'The claims of the token you called this server with.', inputSchema: {} }, async () => text(claims));
    server.registerTool(
      'peek_api_token_claims',
      { description: 'The claims of the token this server obtains for the Todo API on your behalf (RFC 8693 exchange).', inputSchema: {} },
      async () => safely(async () => text(decodeJwt(await mediator.upstreamToken(userToken, 'todo_api:read')))),
    );
    server.registerTool('list_todos', { description: 'Your todos.', inputSchema: {} }, async () => safely(async () => text((await callApi(userToken, 'todo_api:read', 'GET', '/todos')).todos)));
    server.registerTool('add_todo', { description: 'Add a todo.', inputSchema: { title: z.string().min(1).max(200) } }, async ({ title }) =>
      safely(async () => text(await callApi(userToken, 'todo_api:write', 'POST', '/todos', { title }))),
    );
    server.registerTool('complete_todo', { description: 'Mark a todo done.', inputSchema: { id: z.number().int().positive() } }, async ({ id }) =>
      safely(async () => text(await callApi(userToken, 'todo_api:write', 'PATCH', `/todos/${id}`, { done: true }))),
    );
    server.registerTool('delete_todo', { description: 'Delete a todo.', inputSchema: { id: z.number().int().positive() } }, async ({ id }) =>
      safely(async () => {
        await callApi(userToken, 'todo_api:write', 'DELETE', `/todos/${id}`);
        return text(`deleted todo ${id}`);
      }),
    );
    return server;
  };

  /** One request through a server and a stateless transport made for it; closed when the answer is complete. */
  const serve = async (request: Request, userToken: string, claims: TokenClaims, parsedBody?: unknown): Promise<Response> => {
    const server = mcpFor(userToken, claims);
    const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    const close = () => {
      void transport.close();
      void server.close();
    };
    try {
      await server.connect(transport);
      const response = await transport.handleRequest(request, parsedBody === undefined ? undefined : { parsedBody });
      // A JSON answer is complete here; a stream (GET, stateless only) lasts until the client leaves.
      if (response.body && response.headers.get('content-type')?.startsWith('text/event-stream')) {
        if (request.signal.aborted) close();
        else request.signal.addEventListener('abort', close, { once: true });
      } else close();
      return response;
    } catch {
      close();
      return rpcError(500, -32603, 'internal error');
    }
  };

  const refuse = (response: Response, refusal: TodoMcpRefusal) => {
    options.onRefusal?.(refusal);
    return response;
  };

  /** With a session store: sessions given out at initialize, bound to their caller, checked on every later request. */
  const serveInSession = async (request: Request, userToken: string, claims: TokenClaims): Promise<Response> => {
    const store = sessions!;
    const owner: SessionOwner = { sub: String(claims.sub), clientId: typeof claims.client_id === 'string' ? claims.client_id : undefined };
    const who = { sub: owner.sub, client_id: owner.clientId };
    const unavailable = (error: SessionStoreUnavailable) =>
      refuse(rpcError(503, -32000, 'temporarily_unavailable: the session store cannot be reached; retry shortly', { 'retry-after': '1' }), { status: 503, error: 'session_store_unavailable', reason: error.message, ...who });
    const sessionId = request.headers.get('mcp-session-id') ?? undefined;
    let body: unknown;
    if (request.method === 'POST') {
      const raw = await readBounded(request, MAX_BODY_BYTES);
      if (raw === undefined) return rpcError(413, -32000, `Payload Too Large: the body exceeds ${MAX_BODY_BYTES} bytes`);
      try {
        body = JSON.parse(raw);
      } catch {
        return rpcError(400, -32700, 'Parse error: Invalid JSON');
      }
      if ((Array.isArray(body) ? body : [body]).some((message) => isInitializeRequest(message))) {
        if (sessionId !== undefined) return rpcError(400, -32600, 'Invalid Request: initialize starts a new session and carries no Mcp-Session-Id');
        const response = await serve(request, userToken, claims, body);
        if (response.status !== 200) return response;
        const id = crypto.randomUUID();
        try {
          await store.bind(id, owner);
        } catch (error) {
          if (error instanceof SessionStoreUnavailable) return unavailable(error);
          throw error;
        }
        const headers = new Headers(response.headers);
        headers.set('mcp-session-id', id);
        return new Response(response.body, { status: response.status, headers });
      }
    }
    if (request.method !== 'POST' && request.method !== 'DELETE') {
      return new Response(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32000, message: 'Method not allowed: this server opens no standalone SSE stream' } }), {
        status: 405,
        headers: { 'content-type': 'application/json', allow: 'POST, DELETE' },
      });
    }
    if (sessionId === undefined) return rpcError(400, -32000, 'Bad Request: Mcp-Session-Id header is required');
    let verdict: SessionVerdict;
    try {
      verdict = await store.check(sessionId, owner);
    } catch (error) {
      if (error instanceof SessionStoreUnavailable) return unavailable(error);
      throw error;
    }
    if (verdict !== 'own') {
      // The same answer for someone else's session as for an unknown one: a probe learns nothing.
      return refuse(rpcError(404, SESSION_NOT_FOUND, 'Session not found: start a new session with initialize'), {
        status: 404,
        error: verdict === 'unknown' ? 'unknown_session' : 'session_mismatch',
        reason: SESSION_REASONS[verdict],
        ...who,
      });
    }
    if (request.method === 'DELETE') {
      try {
        await store.end(sessionId);
      } catch (error) {
        if (error instanceof SessionStoreUnavailable) return unavailable(error);
        throw error;
      }
      return new Response(null, { status: 200 });
    }
    return serve(request, userToken, claims, body);
  };

  /** CORS for browser pages (MCP Inspector): headers to add, or a refusal. */
  const cors = (request: Request): Record<string, string> | Response => {
    const origin = request.headers.get('origin');
    if (origin === null) return {};
    if (!origins.has(origin)) return rpcError(403, -32600, 'origin not allowed');
    return { 'access-control-allow-origin': origin, vary: 'origin', 'access-control-expose-headers': 'www-authenticate, dpop-nonce, mcp-session-id, mcp-protocol-version' };
  };
  const withHeaders = (response: Response, headers: Record<string, string>) => {
    if (Object.keys(headers).length === 0) return response;
    const merged = new Headers(response.headers);
    for (const [name, value] of Object.entries(headers)) merged.set(name, value);
    return new Response(response.body, { status: response.status, statusText: response.statusText, headers: merged });
  };

  return {
    metadataPath: guard.metadataPath,
    async fetch(request: Request, context?: ValidationContext): Promise<Response> {
      const path = new URL(request.url).pathname;
      if (request.method === 'GET' && (path === guard.metadataPath || path === '/.well-known/oauth-protected-resource')) {
        return json(200, guard.metadata, { 'access-control-allow-origin': '*' });
      }
      if (path !== mcpPath) return json(404, { error: 'not_found', error_description: `the MCP endpoint is ${mcpPath}` });
      const corsHeaders = cors(request);
      if (corsHeaders instanceof Response) return corsHeaders;
      if (request.method === 'OPTIONS') {
        return new Response(null, {
          status: 204,
          headers: {
            ...corsHeaders,
            'access-control-allow-methods': 'GET, POST, DELETE',
            'access-control-allow-headers': 'authorization, dpop, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id',
            'access-control-max-age': '600',
          },
        });
      }
      const authorization = request.headers.get('authorization');
      // A DPoP request's proof may carry content_digest (SEP-1932): the body is read once, bounded,
      // checked against it, and handed on as the same bytes.
      let body: Uint8Array<ArrayBuffer> | undefined;
      if (request.body && parseCredential(authorization ?? '')?.scheme === 'DPoP') {
        body = await readBoundedBytes(request, MAX_BODY_BYTES);
        if (body === undefined) return withHeaders(rpcError(413, -32000, `Payload Too Large: the body exceeds ${MAX_BODY_BYTES} bytes`), corsHeaders);
        request = new Request(request, { body });
      }
      const check = await guard.check({ authorization, dpop: request.headers.get('dpop'), method: request.method, url: `${publicOrigin}${mcpPath}`, ...(body ? { body } : {}) }, [], context);
      if (!check.ok) {
        const response = json(check.status, check.body, check.headers);
        if (check.reason || check.status === 503) {
          options.onRefusal?.({ status: check.status, error: check.body.error, reason: check.reason ?? check.body.error_description });
        }
        return withHeaders(response, corsHeaders);
      }
      const response = sessions ? await serveInSession(request, check.token, check.claims) : await serve(request, check.token, check.claims);
      return withHeaders(response, corsHeaders);
    },
    close: () => guard.close(),
  };
}
