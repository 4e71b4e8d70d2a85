/**
 * An MCP-shaped upstream for the black-box gateway suite (test/gateway/blackbox/): no auth of its
 * own, a new `Mcp-Session-Id` for each `initialize` (so sessions opened by different callers are
 * different sessions), the tools of the scripted upstream (`echo`, `fails`, `rpc_error`…), and a
 * `cut` tool whose SSE answer breaks off after one event, and a `stream` tool whose SSE answer the test paces: the first progress event is sent at once, the
 * rest only after `release()` (and `slow`, which answers nothing before it) — a gateway that buffered the stream would hold the first event back
 * and the test would wait in vain (bounded by its own timeout). `redirect` answers 307 to its
 * argument `to` (a gateway must pass it on, not follow it). Records every request it receives.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import { freePort } from './auth-server.ts';

export interface SeenRequest {
  method: string;
  url: string;
  headers: IncomingMessage['headers'];
  body: string;
}

const TOOLS = ['read_balance', 'transfer', 'echo', 'fails', 'rpc_error', 'stream', 'slow', 'cut', 'cookies', 'redirect'];

export async function startBlackboxUpstream() {
  const requests: SeenRequest[] = [];
  const sessions = new Set<string>();
  let release: () => void = () => undefined;
  let released = new Promise<void>((resolve) => (release = resolve));
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', () => {
      requests.push({ method: req.method!, url: req.url!, headers: req.headers, body });
      const session = req.headers['mcp-session-id'] as string | undefined;
      if (req.method === 'DELETE') {
        res.writeHead(session && sessions.delete(session) ? 200 : 404).end();
        return;
      }
      if (req.method === 'GET' && session && sessions.has(session)) {
        // The session's server-to-client stream: one notification, then open until release().
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/tools/list_changed' })}\n\n`);
        void released.then(() => res.end());
        return;
      }
      if (req.method !== 'POST') {
        res.writeHead(req.method === 'GET' ? 404 : 405).end();
        return;
      }
      const message = JSON.parse(body) as { id?: number | string; method: string; params?: { name?: string; arguments?: Record<string, unknown> } };
      if (message.id === undefined) {
        res.writeHead(202).end();
        return;
      }
      // `X-Answer: sse`: the answer as one SSE event, as a Streamable HTTP server may choose to.
      const sse = req.headers['x-answer'] === 'sse';
      const reply = (payload: Record<string, unknown>, headers: Record<string, string> = {}) => {
        res.writeHead(200, { 'content-type': sse ? 'text/event-stream' : 'application/json', ...headers });
        const json = JSON.stringify({ jsonrpc: '2.0', id: message.id, ...payload });
        res.end(sse ? `event: message\ndata: ${json}\n\n` : json);
      };
      if (message.method === 'initialize') {
        const id = `s-${randomUUID()}`;
        sessions.add(id);
        return reply({ result: { protocolVersion: '2025-11-25', capabilities: { tools: {} }, serverInfo: { name: 'blackbox-upstream', version: '1' } } }, { 'mcp-session-id': id });
      }
      if (message.method === 'tools/list') return reply({ result: { tools: TOOLS.map((name) => ({ name, inputSchema: { type: 'object' } })) } });
      if (message.method !== 'tools/call') return reply({ result: {} });
      const name = message.params?.name;
      if (name === 'fails') return reply({ result: { content: [{ type: 'text', text: 'boom' }], isError: true } });
      if (name === 'rpc_error') return reply({ error: { code: -32602, message: 'bad params' } });
      if (name === 'slow') {
        void released.then(() => reply({ result: { content: [{ type: 'text', text: 'late' }] } }));
        return;
      }
      if (name === 'cookies') return reply({ result: { content: [] } }, { 'set-cookie': ['a=1; Path=/', 'b=2; Path=/'] as never, 'x-upstream': 'yes' });
      if (name === 'redirect') {
        res.writeHead(307, { location: String(message.params?.arguments?.to), 'content-type': 'text/plain' });
        res.end('moved');
        return;
      }
      if (name === 'cut') {
        // One event, then the connection dies mid-stream.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'p', progress: 1, total: 2 } })}\n\n`);
        setImmediate(() => res.socket?.destroy());
        return;
      }
      if (name === 'stream') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        const event = (data: unknown) => res.write(`event: message\ndata: ${JSON.stringify(data)}\n\n`);
        event({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'p', progress: 1, total: 2 } });
        void released.then(() => {
          event({ jsonrpc: '2.0', method: 'notifications/progress', params: { progressToken: 'p', progress: 2, total: 2 } });
          res.end(`event: message\ndata: ${JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text: 'streamed' }] } })}\n\n`);
        });
        return;
      }
      reply({ result: { content: [{ type: 'text', text: JSON.stringify(message.params?.arguments ?? {}) }] } });
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    sessions,
    /** Lets the pending `stream` answers finish (and arms the next ones to wait again). */
    release() {
      release();
      released = new Promise<void>((resolve) => (release = resolve));
    },
    close: () =>
      new Promise<void>((resolve) => {
        release();
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
