import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { failure, handleStatelessMcp, text } from '../shared/stateless-mcp.ts';
import { decodeJwt } from 'jose';
import { z } from 'zod';
import { isOAuthError } from '../../src/core/errors.ts';
import { Mediator } from '../../src/gateway/mediator.ts';
import { resourceServer } from '../../src/gateway/resource-server.ts';
import { nodeVerifier } from '../../src/gateway/node/verifier.ts';
import { RevocationFeeds } from '../../src/gateway/node/revocation-feeds.ts';
import { DEFAULT_REVOCATION_CHANNEL } from '../../src/store/revocation-channel.ts';
import { issuerMetadata, type TokenClaims } from '../../src/gateway/token-validator.ts';

/**
 * The demo's Todo MCP server (seed 000's topology): it protects itself — 401 with its protected
 * resource metadata, tokens for its own URL only — and, for every tool that needs the Todo API,
 * exchanges the user's token (RFC 8693, itself as actor with its own client credentials) for a
 * token for the API with the narrowest scope the tool needs. The user's token never leaves it.
 */
export interface TodoMcpOptions {
  issuer: string;
  /** Its own resource identifier, e.g. http://localhost:8787/mcp. */
  resource: string;
  todoApi: string;
  clientId: string;
  clientSecret: string;
  /** Browser origins allowed (MCP Inspector). */
  allowedOrigins?: string[];
  host?: string;
  port?: number;
  /** Seconds between polls of the AS revocation list (its client must be a resource server of `resource` at the AS). */
  revocationPollSeconds?: number;
  /** REDIS_URL by default: revocations pushed over pub/sub apply at once. */
  redisUrl?: string;
  revocationChannel?: string;
}

export interface TodoMcpServer {
  url: string;
  close(): Promise<void>;
}


export async function startTodoMcpServer(options: TodoMcpOptions): Promise<TodoMcpServer> {
  // The same revocation feed as the gateway's: revoked tokens and grants, disabled agents refused.
  const feeds = new RevocationFeeds({
    redisUrl: options.redisUrl ?? process.env.REDIS_URL,
    onError: (error) => console.error(`todo-mcp: revocation feed: ${error.message}`),
  });
  const revocations = feeds.acquire({
    endpoint: `${options.issuer.replace(/\/$/, '')}/revocations`,
    issuer: options.issuer,
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    pollMs: (options.revocationPollSeconds ?? 10) * 1000,
    channel: options.revocationChannel ?? DEFAULT_REVOCATION_CHANNEL,
  }).list;
  const guard = resourceServer({ resource: options.resource, issuer: options.issuer, scopesSupported: ['todo_api:read', 'todo_api:write'], resourceName: 'Todo MCP server', createVerifier: nodeVerifier, revocations });
  const mediator = new Mediator({ metadata: issuerMetadata(options.issuer), clientId: options.clientId, clientSecret: options.clientSecret, resource: options.todoApi });
  const origins = new Set(options.allowedOrigins ?? []);
  const mcpPath = new URL(options.resource).pathname;

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

  const cors = (req: IncomingMessage, res: ServerResponse): boolean => {
    const origin = req.headers.origin;
    if (origin === undefined) return true;
    if (!origins.has(origin)) {
      res.writeHead(403, { 'content-type': 'application/json' }).end('{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"origin not allowed"}}');
      return false;
    }
    res.setHeader('access-control-allow-origin', origin);
    res.setHeader('vary', 'origin');
    res.setHeader('access-control-expose-headers', 'www-authenticate, mcp-session-id, mcp-protocol-version');
    return true;
  };

  const httpServer: Server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    if (req.method === 'GET' && (path === guard.metadataPath || path === '/.well-known/oauth-protected-resource')) {
      res.writeHead(200, { 'content-type': 'application/json', 'access-control-allow-origin': '*' }).end(JSON.stringify(guard.metadata));
      return;
    }
    if (path !== mcpPath) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'not_found', error_description: `the MCP endpoint is ${mcpPath}` }));
      return;
    }
    if (req.method === 'OPTIONS') {
      if (!cors(req, res)) return;
      res.writeHead(204, {
        'access-control-allow-methods': 'GET, POST, DELETE',
        'access-control-allow-headers': 'authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id',
        'access-control-max-age': '600',
      }).end();
      return;
    }
    if (!cors(req, res)) return;
    const check = await guard.check(req.headers.authorization);
    if (!check.ok) {
      res.writeHead(check.status, { 'content-type': 'application/json', ...check.headers }).end(JSON.stringify(check.body));
      return;
    }
    const server = mcpFor(check.token, check.claims);
    await handleStatelessMcp(server, req, res);
  });
  const host = options.host ?? 'localhost';
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port ?? 8787, host, () => resolve());
  });
  return {
    url: `http://${host}:${(httpServer.address() as AddressInfo).port}${mcpPath}`,
    close: () =>
      new Promise<void>((resolve) => {
        guard.close();
        void feeds.close();
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      }),
  };
}
