import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import { nodeVerifier } from '../../src/gateway/node/verifier.ts';
import { RevocationFeeds } from '../../src/gateway/node/revocation-feeds.ts';
import { DEFAULT_REVOCATION_CHANNEL } from '../../src/store/revocation-channel.ts';
import { TODO_MCP_DPOP_MODES, todoMcpHandler, type TodoMcpDpopMode, type TodoMcpRefusal } from './mcp.ts';

/**
 * The demo's Todo MCP server on Node: the runtime-neutral handler of `mcp.ts` (the same source as
 * the Worker, `worker.ts`) on `node:http`, stateless, with node:crypto verification and the
 * revocation feed the gateway uses (polling, and Redis pub/sub with REDIS_URL).
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
  /**
   * DPoP-bound access tokens (RFC 9449): `allow` (default) takes Bearer tokens as before and DPoP
   * ones with their proof, `require` DPoP only, `off` Bearer only; a bound token sent as Bearer is
   * refused in every mode. Default: the TODO_MCP_DPOP environment variable, else `allow`.
   */
  dpop?: TodoMcpDpopMode;
  /** Told each refusal with its reason; default a JSON line on stdout, as the Worker logs them. */
  onRefusal?: (refusal: TodoMcpRefusal) => void;
}

/** The DPoP mode from the option or TODO_MCP_DPOP; an unknown value refuses the start. */
export function todoMcpDpopMode(option: string | undefined, env: string | undefined = process.env.TODO_MCP_DPOP): TodoMcpDpopMode {
  const value = option ?? (env === undefined || env === '' ? 'allow' : env);
  if (!(TODO_MCP_DPOP_MODES as readonly string[]).includes(value)) throw new Error(`TODO_MCP_DPOP must be one of ${TODO_MCP_DPOP_MODES.join(', ')}, got ${JSON.stringify(value)}`);
  return value as TodoMcpDpopMode;
}

export interface TodoMcpServer {
  url: string;
  close(): Promise<void>;
}

export async function startTodoMcpServer(options: TodoMcpOptions): Promise<TodoMcpServer> {
  const dpop = todoMcpDpopMode(options.dpop);
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
  const handler = todoMcpHandler({
    issuer: options.issuer,
    resource: options.resource,
    todoApi: options.todoApi,
    clientId: options.clientId,
    clientSecret: options.clientSecret,
    allowedOrigins: options.allowedOrigins,
    createVerifier: nodeVerifier,
    revocations,
    // One process: proof jtis are remembered in its memory.
    dpop,
    onRefusal: options.onRefusal ?? ((refusal) => console.log(JSON.stringify({ audit: 'mandate-todo-mcp', decision: 'deny', ...refusal }))),
  });
  const mcpPath = new URL(options.resource).pathname;
  const httpServer: Server = createServer(getRequestListener((request) => handler.fetch(request)));
  const host = options.host ?? 'localhost';
  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(options.port ?? 8787, host, () => resolve());
  });
  return {
    url: `http://${host}:${(httpServer.address() as AddressInfo).port}${mcpPath}`,
    close: () =>
      new Promise<void>((resolve) => {
        handler.close();
        void feeds.close();
        httpServer.close(() => resolve());
        httpServer.closeAllConnections();
      }),
  };
}
