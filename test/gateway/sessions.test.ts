import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport, StreamableHTTPError } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { Redis } from 'ioredis';
import { freePort } from '../helpers/auth-server.ts';
import { startStatefulSdkUpstream } from '../helpers/sdk-upstream.ts';
import { mcpPost, startFakeIssuer, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';
import { startPrivateRedis, until } from '../helpers/private-services.ts';
import { redisUrl, skipUnless } from '../helpers/services.ts';

const PROTOCOL = '2025-11-25';
const INITIALIZE = { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: PROTOCOL, capabilities: {}, clientInfo: { name: 'test', version: '1' } } };

/**
 * A stateful MCP server (the SDK's, one transport per session) with no auth of its own, as a
 * gateway fronts it. Its sessions outlive any gateway: exactly the case where a gateway that
 * forgot a binding would hand the session to whoever presents its id.
 */
async function startSessionUpstream() {
  const callers: { session: string | undefined; sub: string | undefined }[] = [];
  const upstream = await startStatefulSdkUpstream({
    name: 'session-upstream',
    port: await freePort(),
    register: (mcp) => mcp.registerTool('whoami', { description: 'who the upstream thinks is calling' }, () => ({ content: [{ type: 'text', text: 'ok' }] })),
    onRequest: (req, session) => callers.push({ session, sub: req.headers['x-mandate-sub'] as string | undefined }),
  });
  return { ...upstream, callers };
}

describe('gateway: MCP sessions are bound to their opener on every instance', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startSessionUpstream>>;
  const gateways: TestGateway[] = [];

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startSessionUpstream();
  });
  after(async () => {
    await Promise.all(gateways.map((gateway) => gateway.close()));
    await upstream.close();
    await issuer.close();
  });

  /** Gateways on one resource URL (as behind a load balancer): a token is good at each. */
  const RESOURCE = 'https://mcp.example/mcp';
  const start = async (env: Record<string, string | undefined>, extra: Record<string, unknown> = {}, port?: number) => {
    const gateway = await startTestGateway(
      () => [{ path: '/mcp', upstream: upstream.url, resource: RESOURCE, authorization_servers: [issuer.issuer], identity_headers: true, tools: { whoami: {} } }],
      { ...(port ? { listen: { host: '127.0.0.1', port } } : {}), ...extra },
      env,
    );
    gateways.push(gateway);
    return gateway;
  };
  const bearer = async (sub: string, clientId = 'app') => `Bearer ${await issuer.sign({ sub, aud: RESOURCE, client_id: clientId, scope: 'mcp' })}`;
  const headers = async (sub: string, session?: string, clientId?: string) => ({
    authorization: await bearer(sub, clientId),
    'mcp-protocol-version': PROTOCOL,
    ...(session ? { 'mcp-session-id': session } : {}),
  });
  const open = async (gateway: TestGateway, sub: string) => {
    const res = await mcpPost(`${gateway.url}/mcp`, INITIALIZE, await headers(sub));
    assert.equal(res.status, 200, res.text);
    const session = res.headers.get('mcp-session-id');
    assert.ok(session, 'initialize (no session id yet) opens a session');
    return session;
  };
  const whoami = async (gateway: TestGateway, sub: string, session: string, id: number, clientId?: string) => mcpPost(`${gateway.url}/mcp`, toolCall('whoami', {}, id), await headers(sub, session, clientId));
  const eventFor = async (gateway: TestGateway, id: number) => {
    const event = (await gateway.auditEvents()).find((e) => e.jsonrpc_id === id);
    assert.ok(event, `an audit event for request ${id}`);
    return event;
  };
  /** A refusal as the transport defines it for an unknown session: 404, JSON-RPC -32001, audited. */
  const assertRefused = async (gateway: TestGateway, res: Awaited<ReturnType<typeof mcpPost>>, id: number, rejection: string, reason: RegExp) => {
    assert.equal(res.status, 404, res.text);
    assert.deepEqual(res.json, { jsonrpc: '2.0', id, error: { code: -32001, message: 'session not found: start a new session with initialize' } });
    const event = await eventFor(gateway, id);
    assert.equal(event.decision, 'deny');
    assert.equal(event.rejection, rejection);
    assert.match(event.reason as string, reason);
  };

  it('without Redis: a session opened at A is refused at B (404 unknown_session) for Bob and Alice alike, and stays Alice\'s at A', async () => {
    const a = await start({});
    const b = await start({});
    const session = await open(a, 'alice');
    const served = upstream.callers.length;
    await assertRefused(b, await whoami(b, 'bob', session, 11), 11, 'unknown_session', /no binding for this Mcp-Session-Id/);
    await assertRefused(b, await whoami(b, 'alice', session, 12), 12, 'unknown_session', /no binding/);
    assert.equal(upstream.callers.length, served, 'nothing reached the upstream');
    await assertRefused(a, await whoami(a, 'bob', session, 13), 13, 'session_mismatch', /^session opened by another subject$/);
    await assertRefused(a, await whoami(a, 'alice', session, 14, 'other-app'), 14, 'session_mismatch', /another client/);
    const ok = await whoami(a, 'alice', session, 15);
    assert.equal(ok.status, 200, ok.text);
    assert.equal(upstream.callers.at(-1)?.sub, 'alice');
  });

  it('a session id never opened anywhere is refused with 404 unknown_session', async () => {
    const gateway = await start({});
    await assertRefused(gateway, await whoami(gateway, 'alice', 'made-up-session', 21), 21, 'unknown_session', /no binding/);
  });

  it('DELETE ends the binding: the id is refused afterwards', async () => {
    const gateway = await start({});
    const session = await open(gateway, 'alice');
    const ended = await fetch(`${gateway.url}/mcp`, { method: 'DELETE', headers: await headers('alice', session) });
    assert.equal(ended.status, 200);
    await assertRefused(gateway, await whoami(gateway, 'alice', session, 31), 31, 'unknown_session', /no binding/);
  });

  it('the stateless revision (2026-07-28, no session id) is not affected', async () => {
    const gateway = await start({});
    const res = await mcpPost(`${gateway.url}/mcp`, { jsonrpc: '2.0', id: 41, method: 'ping' }, { authorization: await bearer('alice'), 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'ping' });
    // Forwarded: what the (session-only) upstream answers is its own business.
    assert.equal(res.status, 404, res.text);
    assert.equal((res.json as { error: { message: string } }).error.message, 'Session not found');
    const event = await eventFor(gateway, 41);
    assert.equal(event.session, undefined);
    assert.equal(event.decision, 'allow');
    assert.equal(event.rejection, undefined);
    assert.equal(event.upstream_status, 404);
  });

  it('with Redis: gateways sharing it (and a restarted one) know who opened the session; Bob gets 404 everywhere', { ...skipUnless(Boolean(redisUrl), 'needs REDIS_URL') }, async () => {
    const prefix = `mandate-test:${randomUUID()}`;
    const a = await start({ REDIS_URL: redisUrl }, { rate_limit_prefix: prefix });
    const b = await start({ REDIS_URL: redisUrl }, { rate_limit_prefix: prefix });
    const session = await open(a, 'alice');
    await assertRefused(b, await whoami(b, 'bob', session, 51), 51, 'session_mismatch', /^session opened by another subject$/);
    const atB = await whoami(b, 'alice', session, 52);
    assert.equal(atB.status, 200, atB.text);
    await a.close();
    gateways.splice(gateways.indexOf(a), 1);
    const restarted = await start({ REDIS_URL: redisUrl }, { rate_limit_prefix: prefix });
    await assertRefused(restarted, await whoami(restarted, 'bob', session, 53), 53, 'session_mismatch', /another subject/);
    assert.equal((await whoami(restarted, 'alice', session, 54)).status, 200);
    // Another deployment (another prefix) on the same Redis shares nothing.
    const other = await start({ REDIS_URL: redisUrl }, { rate_limit_prefix: `${prefix}-other` });
    await assertRefused(other, await whoami(other, 'alice', session, 55), 55, 'unknown_session', /no binding/);
  });

  it('with Redis: a binding idle past session_idle_seconds expires, and its id is then refused', { ...skipUnless(Boolean(redisUrl), 'needs REDIS_URL') }, async () => {
    const prefix = `mandate-test:${randomUUID()}`;
    const gateway = await start({ REDIS_URL: redisUrl }, { rate_limit_prefix: prefix, session_idle_seconds: 1 });
    const session = await open(gateway, 'alice');
    const redis = new Redis(redisUrl!);
    try {
      const bound = async () => (await redis.keys(`${prefix}:session:*`)).length;
      assert.equal(await bound(), 1, 'the binding is in Redis (under a hash of the id, never the id itself)');
      assert.ok(!(await redis.keys(`${prefix}:session:*`))[0]!.includes(session));
      await until(async () => (await bound()) === 0, 10_000, 'the binding never expired');
    } finally {
      redis.disconnect();
    }
    await assertRefused(gateway, await whoami(gateway, 'alice', session, 61), 61, 'unknown_session', /no binding/);
  });

  it('with Redis down: a session id is refused with 503 (fail closed), and no new session id is handed out', { ...skipUnless(Boolean(redisUrl), 'needs REDIS_URL') }, async () => {
    const redis = await startPrivateRedis();
    try {
      const gateway = await start({ REDIS_URL: redis.url });
      await until(async () => (await mcpPost(`${gateway.url}/mcp`, INITIALIZE, await headers('alice'))).status === 200, 10_000, 'gateway never reached its Redis');
      const session = await open(gateway, 'alice');
      await redis.kill();
      const res = await whoami(gateway, 'alice', session, 71);
      assert.equal(res.status, 503, res.text);
      assert.equal((res.json as { error: { code: number } }).error.code, -32603);
      const event = await eventFor(gateway, 71);
      assert.equal(event.rejection, 'session_store_unavailable');
      assert.equal(event.decision, 'error');
      const opening = await mcpPost(`${gateway.url}/mcp`, { ...INITIALIZE, id: 72 }, await headers('alice'));
      assert.equal(opening.status, 503, opening.text);
      assert.equal(opening.headers.get('mcp-session-id'), null);
      assert.equal((await eventFor(gateway, 72)).rejection, 'session_store_unavailable');
    } finally {
      await redis.close();
    }
  });

  it('the MCP SDK client starts a new session after a gateway restart; the old id stays refused for Bob', async () => {
    const port = await freePort();
    const url = new URL(`http://127.0.0.1:${port}/mcp`);
    let gateway = await start({}, {}, port);
    const aliceAuth = await bearer('alice');
    const connect = async () => {
      const client = new Client({ name: 'sdk-client', version: '1.0.0' });
      const transport = new StreamableHTTPClientTransport(url, { requestInit: { headers: { authorization: aliceAuth } } });
      await client.connect(transport);
      return { client, transport };
    };
    let { client, transport } = await connect();
    const first = transport.sessionId!;
    assert.ok(first);
    assert.equal((await client.callTool({ name: 'whoami' })).isError, undefined);

    await gateway.close();
    gateways.splice(gateways.indexOf(gateway), 1);
    gateway = await start({}, {}, port);
    // The upstream still holds Alice's session; the restarted gateway does not know it: 404.
    await assertRefused(gateway, await whoami(gateway, 'bob', first, 81), 81, 'unknown_session', /no binding/);
    await assert.rejects(client.callTool({ name: 'whoami' }), (error: unknown) => error instanceof StreamableHTTPError && error.code === 404);
    // The transport spec's recovery: a new initialize, without the old session id.
    await client.close();
    ({ client, transport } = await connect());
    assert.ok(transport.sessionId && transport.sessionId !== first, 'a new session');
    assert.equal((await client.callTool({ name: 'whoami' })).isError, undefined);
    assert.equal(upstream.callers.at(-1)?.sub, 'alice');
    await assertRefused(gateway, await whoami(gateway, 'bob', transport.sessionId, 82), 82, 'session_mismatch', /another subject/);
    await client.close();
  });
});
