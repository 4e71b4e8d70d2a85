/**
 * The MCP upstream of the gateway benchmark, alone in a process, on any path (`/mcp` is loaded).
 * No auth of its own. BENCH_UPSTREAM picks the variant:
 *
 *   trivial  a plain `node:http` server: reads the request, answers a fixed JSON-RPC result
 *   sdk      the MCP SDK v1: a new McpServer + stateless StreamableHTTPServerTransport
 *            (`sessionIdGenerator: undefined`, `enableJsonResponse: true`) per request, as the SDK's
 *            stateless example does, with one JSON-schema validator shared by all of them (a new
 *            one per request would cost ~30 % of the upstream's CPU); one tool, `echo`
 *
 * Prints one ready line on stdout.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { handleStatelessMcp } from '../examples/shared/stateless-mcp.ts';
import { AjvJsonSchemaValidator } from '@modelcontextprotocol/sdk/validation/ajv';
import { z } from 'zod';
import { announceReady, closeServer, exitOnSignal, listenLoopback } from './lib/child.ts';

const TRIVIAL_RESULT = '{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}]}}';

const variant = process.env.BENCH_UPSTREAM ?? 'trivial';
if (variant !== 'trivial' && variant !== 'sdk') throw new Error(`BENCH_UPSTREAM must be trivial or sdk, got ${variant}`);

const trivial = (req: IncomingMessage, res: ServerResponse) => {
  req.resume();
  req.once('end', () => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(TRIVIAL_RESULT) });
    res.end(TRIVIAL_RESULT);
  });
};

const jsonSchemaValidator = new AjvJsonSchemaValidator();
const sdk = async (req: IncomingMessage, res: ServerResponse) => {
  const mcp = new McpServer({ name: 'mandate-bench-upstream', version: '1.0.0' }, { jsonSchemaValidator });
  mcp.registerTool('echo', { description: 'Answers its text', inputSchema: { text: z.string() } }, async ({ text }) => ({ content: [{ type: 'text', text }] }));
  await handleStatelessMcp(mcp, req, res);
};

const server = createServer(variant === 'sdk' ? (req, res) => void sdk(req, res) : trivial);
const url = await listenLoopback(server);
exitOnSignal(() => closeServer(server));
announceReady({ name: `upstream (${variant})`, url, tokenEndpoint: `${url}/mcp` });
