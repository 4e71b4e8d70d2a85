import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Hono } from 'hono';
import { validateMcp, type ValidateVariables } from '../../src/gateway/filters/validate.ts';

/** The validation filter alone, in front of a handler that echoes the typed context. */
function app() {
  const hono = new Hono<{ Variables: ValidateVariables }>();
  const validate = validateMcp({ allowedOrigins: ['http://localhost:6274'], maxBodyBytes: 1024 });
  // The filter may answer synchronously (the gateway's chain takes that); Hono's middleware awaits it.
  hono.use('/mcp', async (c, next) => validate(c, next));
  hono.all('/mcp', (c) => c.json({ reached: true, mcp: c.get('mcp') }));
  return hono;
}

const ACCEPT = 'application/json, text/event-stream';
const call = { jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'read_balance', arguments: {} } };

async function post(body: unknown, headers: Record<string, string> = {}) {
  const res = await app().request('/mcp', {
    method: 'POST',
    headers: { accept: ACCEPT, 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as { reached?: boolean; mcp?: Record<string, unknown>; error?: { code: number; message: string }; id?: unknown } };
}

describe('gateway validation filter', () => {
  it('passes a well-formed tool call on, with its typed context', async () => {
    const res = await post(call, { 'mcp-protocol-version': '2025-11-25', 'mcp-session-id': 's1' });
    assert.equal(res.status, 200);
    const mcp = res.json.mcp as { message: { toolName: string; kind: string }; protocolVersion: string; sessionId: string; body: string };
    assert.equal(mcp.message.toolName, 'read_balance');
    assert.equal(mcp.message.kind, 'request');
    assert.equal(mcp.protocolVersion, '2025-11-25');
    assert.equal(mcp.sessionId, 's1');
    assert.deepEqual(JSON.parse(mcp.body), call, 'the raw body is kept for forwarding');
  });

  it('accepts 2026-07-28 requests whose standard headers mirror the body', async () => {
    const res = await post(call, { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'read_balance' });
    assert.equal(res.status, 200);
  });

  const refusals: [string, () => Promise<{ status: number; json: { error?: { code: number } } }>, number, number][] = [
    ['an origin not on the list', () => post(call, { origin: 'https://evil.example' }), 403, -32600],
    ['an unsupported protocol version', () => post(call, { 'mcp-protocol-version': '1999-01-01' }), 400, -32600],
    ['an Accept without text/event-stream', () => post(call, { accept: 'application/json' }), 406, -32600],
    ['a body that is not JSON', () => post('{nope'), 400, -32700],
    ['a text/plain body', () => post(call, { 'content-type': 'text/plain' }), 415, -32600],
    ['an oversized body', () => post({ ...call, params: { name: 'x', arguments: { pad: 'a'.repeat(2000) } } }), 413, -32600],
    ['a JSON-RPC batch', () => post([call]), 400, -32600],
    ['a message without jsonrpc 2.0', () => post({ id: 1, method: 'ping' }), 400, -32600],
    ['tools/call without a name', () => post({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} }), 400, -32602],
    [
      'Mcp-Name naming another tool than the body (2026-07-28)',
      () => post(call, { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'transfer' }),
      400,
      -32020,
    ],
    ['Mcp-Method missing (2026-07-28)', () => post(call, { 'mcp-protocol-version': '2026-07-28', 'mcp-name': 'read_balance' }), 400, -32020],
    ['Mcp-Method disagreeing on the older revision', () => post(call, { 'mcp-method': 'tools/list' }), 400, -32020],
  ];
  for (const [name, request, status, code] of refusals) {
    it(`refuses ${name}: ${status}, JSON-RPC ${code}`, async () => {
      const res = await request();
      assert.equal(res.status, status);
      assert.equal(res.json.error?.code, code);
      assert.equal((res.json as { reached?: boolean }).reached, undefined, 'never reaches the upstream');
    });
  }

  it('keeps the request id in a refusal', async () => {
    const res = await post(call, { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'transfer' });
    assert.equal(res.json.id, 1);
  });

  it('accepts a page of its own loopback origin; a DNS-rebound page (same pair, other host) is refused', async () => {
    assert.equal((await post(call, { origin: 'http://127.0.0.1:8080', host: '127.0.0.1:8080' })).status, 200);
    assert.equal((await post(call, { origin: 'http://evil.example:8080', host: 'evil.example:8080' })).status, 403);
    assert.equal((await post(call, { origin: 'http://localhost:9999', host: 'localhost:8080' })).status, 403);
  });

  it('lets an allowed origin and requests without Origin through', async () => {
    assert.equal((await post(call, { origin: 'http://localhost:6274' })).status, 200);
  });

  it('GET opens the SSE stream on the session revision only, and must accept text/event-stream', async () => {
    const get = (headers: Record<string, string>) => app().request('/mcp', { method: 'GET', headers });
    assert.equal((await get({ accept: 'text/event-stream', 'mcp-protocol-version': '2025-11-25' })).status, 200);
    assert.equal((await get({ accept: 'application/json', 'mcp-protocol-version': '2025-11-25' })).status, 406);
    assert.equal((await get({ accept: 'text/event-stream', 'mcp-protocol-version': '2026-07-28' })).status, 405);
    const del = await app().request('/mcp', { method: 'DELETE', headers: { 'mcp-protocol-version': '2026-07-28' } });
    assert.equal(del.status, 405);
    assert.equal((await app().request('/mcp', { method: 'PUT' })).status, 405);
  });

  it('refuses nonsense options at once', () => {
    assert.throws(() => validateMcp({ allowedOrigins: [], maxBodyBytes: 0 }), /maxBodyBytes/);
    assert.throws(() => validateMcp({ allowedOrigins: ['http://localhost:6274/path'], maxBodyBytes: 10 }), /not an origin/);
  });
});
