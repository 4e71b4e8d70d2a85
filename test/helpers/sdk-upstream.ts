import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { isInitializeRequest } from '@modelcontextprotocol/sdk/types.js';

export interface StatefulSdkUpstream {
  /** The server's origin (`http://127.0.0.1:<port>`); it serves MCP at any path. */
  url: string;
  /** The live sessions' transports, by session id. */
  transports: Map<string, StreamableHTTPServerTransport>;
  close(): Promise<void>;
}

function readJson(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', () => resolve(body ? JSON.parse(body) : undefined));
  });
}

/**
 * The MCP SDK's server with sessions (one transport per session, its own id generator), with no
 * auth of its own, as a gateway fronts it: `initialize` opens a session and `register` gives the new
 * session's McpServer its tools, prompts and resources; an unknown session id (or a first request
 * that is not `initialize`) is the SDK's 404 -32001. Answers JSON (`json`, the default) or SSE.
 * `onRequest` sees each request the server handles, with the session id it came with.
 */
export async function startStatefulSdkUpstream(options: {
  name: string;
  register: (mcp: McpServer) => void;
  json?: boolean;
  port?: number;
  onRequest?: (req: IncomingMessage, sessionId: string | undefined) => void;
}): Promise<StatefulSdkUpstream> {
  const transports = new Map<string, StreamableHTTPServerTransport>();
  const server: Server = createServer((req, res) => {
    void (async () => {
      const body = req.method === 'POST' ? await readJson(req) : undefined;
      const sessionId = req.headers['mcp-session-id'] as string | undefined;
      let transport = sessionId ? transports.get(sessionId) : undefined;
      if (!transport) {
        if (sessionId || !isInitializeRequest(body)) {
          res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: null, error: { code: -32001, message: 'Session not found' } }));
          return;
        }
        const created = new StreamableHTTPServerTransport({ sessionIdGenerator: randomUUID, enableJsonResponse: options.json ?? true, onsessioninitialized: (id) => void transports.set(id, created) });
        transport = created;
        const mcp = new McpServer({ name: options.name, version: '1.0.0' });
        options.register(mcp);
        await mcp.connect(created);
      }
      options.onRequest?.(req, sessionId);
      await transport.handleRequest(req, res, body);
    })();
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    transports,
    close: () =>
      new Promise<void>((resolve) => {
        for (const transport of transports.values()) void transport.close();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
