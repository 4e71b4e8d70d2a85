/**
 * The gateway's Node listener (src/gateway/node/listener.ts) runs an MCP route's chain without
 * @hono/node-server's adapter. Differential test: the same requests, on the same routes, through
 * the listener and through the adapter alone (`getRequestListener(app.fetch)`, what the gateway
 * used before) must get the same answers — status, headers (every Set-Cookie, WWW-Authenticate,
 * CORS), body — and the same audit events, for proxied calls, refusals of every filter, and the
 * requests the listener leaves to the adapter (metadata, unknown paths, escaped or dot-segment
 * paths, HEAD).
 */
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { getRequestListener } from '@hono/node-server';
import { gatewayConfigSchema } from '../../src/config/gateway-schema.ts';
import { gatewayHandlers } from '../../src/gateway/chain.ts';
import { nodeForwarder } from '../../src/gateway/node/forwarder.ts';
import { gatewayListener } from '../../src/gateway/node/listener.ts';
import { compileRoute, type CompiledRoute } from '../../src/gateway/route.ts';
import type { GatewayAuditEvent } from '../../src/gateway/types.ts';
import type { Forwarder } from '../../src/gateway/filters/proxy.ts';
import { startBlackboxUpstream } from '../helpers/blackbox-upstream.ts';
import { MCP_HEADERS, listedTools, startFakeIssuer, toolCall } from '../helpers/gateway.ts';

interface Answer {
  status: number;
  headers: Record<string, string | string[]>;
  body: string;
}

/** Headers that differ between any two requests (the audit stamp, the clock, the connection). */
const VARYING = new Set(['date', 'x-request-id', 'connection', 'keep-alive']);

function send(base: string, path: string, options: { method?: string; headers?: Record<string, string>; body?: string }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { method: options.method ?? 'POST', headers: options.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => {
        const headers: Record<string, string | string[]> = {};
        for (const [name, value] of Object.entries(res.headers)) if (value !== undefined && !VARYING.has(name)) headers[name] = value;
        resolve({ status: res.statusCode!, headers, body });
      });
    });
    req.on('error', reject);
    // The path as written: dot segments and escapes reach the server unchanged.
    req.path = path;
    req.end(options.body);
  });
}

const listen = async (server: Server) => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
};

describe('the Node listener answers as the Hono adapter does', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
  let routes: CompiledRoute[];
  let forwarder: Forwarder;
  let fast: Server;
  let adapter: Server;
  let fastUrl: string;
  let adapterUrl: string;
  let token: string;
  /** Requests the listener handed to the adapter. */
  let adapted = 0;
  const events: GatewayAuditEvent[] = [];

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startBlackboxUpstream();
    const config = gatewayConfigSchema.parse({
      routes: [
        { path: '/mcp', upstream: `${upstream.url}/mcp`, resource: 'http://gateway.test/mcp', authorization_servers: [issuer.issuer], tools: listedTools(['echo', 'cookies', 'fails', 'rpc_error']), allowed_origins: ['https://app.example'], max_body_bytes: 2048, scopes: ['mcp'] },
        { path: '/other/', upstream: `${upstream.url}/mcp`, resource: 'http://gateway.test/other', authorization_servers: [issuer.issuer], unlisted_tools: 'allow' },
      ],
    });
    routes = config.routes.map((route, index) => compileRoute(route, index, { env: {} }));
    forwarder = nodeForwarder();
    const handlers = gatewayHandlers(routes, { observer: { ready: () => undefined, record: (event) => void events.push(event) }, forwarder });
    const fetch = (request: Request, bindings: unknown) => handlers.app.fetch(request, bindings as never);
    fast = createServer(
      gatewayListener(() => ({
        handlers,
        fetch: (request, bindings) => {
          adapted++;
          return fetch(request, bindings);
        },
      })),
    );
    adapter = createServer(getRequestListener(fetch));
    fastUrl = await listen(fast);
    adapterUrl = await listen(adapter);
    token = await issuer.sign({ sub: 'alice', aud: 'http://gateway.test/mcp', scope: 'mcp' });
  });
  after(async () => {
    for (const server of [fast, adapter]) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    await forwarder.close();
    for (const route of routes) route.close();
    await upstream.close();
    await issuer.close();
  });

  /** The same request to both servers: the same answer, and audit events that differ only in their stamps. */
  async function same(path: string, options: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
    const before = events.length;
    const viaFast = await send(fastUrl, path, options);
    const viaAdapter = await send(adapterUrl, path, options);
    assert.deepEqual(viaFast, viaAdapter, `${options.method ?? 'POST'} ${path}`);
    // Events are written once the response is sent: wait for both.
    for (let i = 0; i < 50 && events.length < before + 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    const [one, two] = events.slice(before).map(({ time: _t, request_id: _r, latency_ms: _l, upstream_latency_ms: _u, ...rest }) => rest);
    assert.deepEqual(one, two, `audit of ${options.method ?? 'POST'} ${path}`);
    return viaFast;
  }

  const auth = () => ({ ...MCP_HEADERS, authorization: `Bearer ${token}` });
  const call = (name: string, id = 1) => JSON.stringify(toolCall(name, { text: 'ok' }, id));

  it('a proxied tool call', async () => {
    const answer = await same('/mcp', { headers: auth(), body: call('echo') });
    assert.equal(answer.status, 200);
    assert.match(answer.body, /"result"/);
    // The listener ran the chain itself (a Host with a port over 59999 would go to the adapter).
    if (!/:(6\d{4})$/.test(new URL(fastUrl).host)) assert.equal(adapted, 0);
  });

  it('an upstream answer with two Set-Cookie headers, and a JSON-RPC error, and an isError result', async () => {
    assert.deepEqual((await same('/mcp', { headers: auth(), body: call('cookies') })).headers['set-cookie'], ['a=1; Path=/', 'b=2; Path=/']);
    assert.match((await same('/mcp', { headers: auth(), body: call('rpc_error') })).body, /-32602/);
    assert.match((await same('/mcp', { headers: auth(), body: call('fails') })).body, /isError/);
  });

  it('refusals of the protection filter: no token, a bad token, two Authorization headers, a token in the query', async () => {
    const none = await same('/mcp', { headers: MCP_HEADERS, body: call('echo') });
    assert.equal(none.status, 401);
    assert.match(String(none.headers['www-authenticate']), /resource_metadata=/);
    assert.equal((await same('/mcp', { headers: { ...MCP_HEADERS, authorization: 'Bearer nope' }, body: call('echo') })).status, 401);
    assert.equal((await same('/mcp?access_token=x', { headers: auth(), body: call('echo') })).status, 400);
    const twice = { ...MCP_HEADERS, authorization: [`Bearer ${token}`, `Bearer ${token}`] } as unknown as Record<string, string>;
    const repeated = await same('/mcp', { headers: twice, body: call('echo') });
    assert.equal(repeated.status, 400);
    assert.match(String(repeated.headers['www-authenticate']), /invalid_request/);
  });

  it('refusals of the validation filter', async () => {
    assert.equal((await same('/mcp', { headers: { ...auth(), accept: 'application/json' }, body: call('echo') })).status, 406);
    assert.equal((await same('/mcp', { headers: { ...auth(), 'content-type': 'text/plain' }, body: call('echo') })).status, 415);
    assert.equal((await same('/mcp', { headers: auth(), body: JSON.stringify(toolCall('echo', { text: 'x'.repeat(4000) })) })).status, 413);
    assert.equal((await same('/mcp', { headers: auth(), body: '{"jsonrpc":' })).status, 400);
    assert.equal((await same('/mcp', { headers: auth(), body: '{"jsonrpc":"2.0","id":1,"method":"TOOLS/CALL"}' })).status, 400);
    assert.equal((await same('/mcp', { headers: { ...auth(), origin: 'https://evil.example' }, body: call('echo') })).status, 403);
    assert.equal((await same('/mcp', { method: 'GET', headers: { ...auth(), accept: 'application/json' } })).status, 406);
    assert.equal((await same('/mcp', { method: 'PUT', headers: auth(), body: call('echo') })).status, 405);
    assert.equal((await same('/mcp', { method: 'DELETE', headers: { ...auth(), 'mcp-protocol-version': '2026-07-28' } })).status, 405);
  });

  it('tool authorization and CORS', async () => {
    assert.equal((await same('/mcp', { headers: auth(), body: call('transfer') })).status, 403);
    const preflight = await same('/mcp', { method: 'OPTIONS', headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' } });
    assert.equal(preflight.status, 204);
    assert.equal(preflight.headers['access-control-allow-origin'], 'https://app.example');
    const cors = await same('/mcp', { headers: { ...auth(), origin: 'https://app.example' }, body: call('echo') });
    assert.equal(cors.headers['access-control-allow-origin'], 'https://app.example');
  });

  it('an unknown session: 404 -32001', async () => {
    assert.equal((await same('/mcp', { headers: { ...auth(), 'mcp-session-id': 's-unknown' }, body: call('echo') })).status, 404);
  });

  /** A request written by hand, its body in pieces with pauses between them; resolves with the raw answer (or what came before the server closed). */
  function sendInPieces(head: string, pieces: string[], options: { end?: boolean } = {}): Promise<string> {
    return new Promise((resolve, reject) => {
      const socket = connect(Number(new URL(fastUrl).port), '127.0.0.1');
      let answer = '';
      socket.setEncoding('utf8');
      socket.on('data', (chunk: string) => {
        answer += chunk;
        // One answer per connection: done once its body (Content-Length) is in.
        const [headers, body] = answer.split('\r\n\r\n', 2);
        const length = /content-length: (\d+)/i.exec(headers ?? '')?.[1];
        if (body !== undefined && length !== undefined && Buffer.byteLength(body) >= Number(length)) {
          socket.destroy();
          resolve(answer);
        }
      });
      socket.on('close', () => resolve(answer));
      socket.on('error', reject);
      socket.write(head);
      void (async () => {
        for (const piece of pieces) {
          await new Promise((r) => setTimeout(r, 40));
          socket.write(piece);
        }
        if (options.end) socket.end();
      })();
    });
  }
  const headOf = (length: number | 'chunked') =>
    `POST /mcp HTTP/1.1\r\nhost: ${new URL(fastUrl).host}\r\nconnection: close\r\naccept: ${MCP_HEADERS.accept}\r\ncontent-type: application/json\r\nauthorization: Bearer ${token}\r\n` +
    `${length === 'chunked' ? 'transfer-encoding: chunked' : `content-length: ${length}`}\r\n\r\n`;

  it('reads a body that arrives in pieces after the headers, whole, once the message is complete', async () => {
    const body = JSON.stringify(toolCall('echo', { text: 'sent in three pieces' }, 7));
    const thirds = [body.slice(0, 20), body.slice(20, 60), body.slice(60)];
    const seen = upstream.requests.length;
    const answer = await sendInPieces(headOf(Buffer.byteLength(body)), thirds);
    assert.match(answer, /^HTTP\/1\.1 200 /);
    assert.match(answer, /"id":7/);
    assert.equal(upstream.requests.length, seen + 1);
    assert.deepEqual(JSON.parse(upstream.requests.at(-1)!.body), JSON.parse(body), 'the upstream got the whole message');
    // Chunked, the same: the message ends with its last chunk, not with the connection.
    const chunked = thirds.map((piece) => `${Buffer.byteLength(piece).toString(16)}\r\n${piece}\r\n`).concat('0\r\n\r\n');
    assert.match(await sendInPieces(headOf('chunked'), chunked), /^HTTP\/1\.1 200 [^]*"id":7/);
  });

  it('refuses a body in pieces as soon as it grows past max_body_bytes; a body cut off half-way is audited client_closed (499); the next call is served', async () => {
    const events0 = events.length;
    const pad = 'p'.repeat(1500);
    const piece = (text: string) => `${Buffer.byteLength(text).toString(16)}\r\n${text}\r\n`;
    // Two pieces of 1500 bytes (max_body_bytes 2048), and a third the server never waits for.
    const answer = await sendInPieces(headOf('chunked'), [piece(pad), piece(pad), piece(pad), '0\r\n\r\n']);
    assert.match(answer, /^HTTP\/1\.1 413 /);
    for (let i = 0; i < 50 && events.length === events0; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(events.at(-1)?.rejection, 'body_too_large');
    // The client goes away half-way through its body: audited as a client that left (499, not an
    // internal error); Node's server says 400 to the half-closed connection, nothing of the gateway.
    const before = events.length;
    const cut = await sendInPieces(headOf(500), ['{"jsonrpc":"2.0",'], { end: true });
    assert.doesNotMatch(cut, /jsonrpc/);
    for (let i = 0; i < 50 && events.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(events.length, before + 1);
    assert.deepEqual(
      { decision: events.at(-1)!.decision, status: events.at(-1)!.status, rejection: events.at(-1)!.rejection, reason: events.at(-1)!.reason },
      { decision: 'error', status: 499, rejection: 'client_closed', reason: 'the connection ended before the body was complete (aborted)' },
    );
    assert.equal((await send(fastUrl, '/mcp', { headers: auth(), body: call('echo') })).status, 200);
  });

  it('the second route, by its prefix; paths and requests the adapter serves', async () => {
    const other = await same('/other/x', { headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: call('echo') });
    assert.equal(other.status, 401);
    assert.equal((await send(fastUrl, '/nowhere', {})).status, 404);
    assert.deepEqual(await send(fastUrl, '/nowhere', {}), await send(adapterUrl, '/nowhere', {}));
    assert.deepEqual(await send(fastUrl, '/.well-known/oauth-protected-resource/mcp', { method: 'GET' }), await send(adapterUrl, '/.well-known/oauth-protected-resource/mcp', { method: 'GET' }));
    for (const path of ['/mcp/%2e%2e/mcp', '/mcp/../mcp', '/other/./x', '/mc%70']) await same(path, { headers: MCP_HEADERS, body: call('echo') });
    await same('/mcp', { method: 'HEAD', headers: auth() });
    assert.equal((await same('/mcpx', { headers: auth(), body: call('echo') })).status, 404);
  });
});
