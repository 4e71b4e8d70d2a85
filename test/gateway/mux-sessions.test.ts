/**
 * A multiplexed route's session in a shared Redis (docs/gateway.md "Several MCP servers behind one
 * route", Sessions): the owner and the upstream session ids are one record, written before the
 * `initialize` answer leaves, with one lifetime — so whatever keeps the session alive (a ping,
 * which reads no upstream session) keeps its upstream sessions too, and a replica never finds a
 * live session without them. Before, they were two keys renewed apart: a session kept alive by
 * pings lost its upstream sessions at the idle lifetime while its binding lived on.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisSessionBindings } from '../../src/gateway/node/redis-sessions.ts';
import { SessionBindings, SessionStoreUnavailable } from '../../src/gateway/sessions.ts';
import { DurableSessionBindings } from '../../src/gateway/workers/durable-state.ts';
import { localNamespace } from '../helpers/edge-worker.ts';
import { mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';
import { needsRedis, redisUrl } from '../helpers/services.ts';

describe('gateway: a multiplexed session in Redis is one record, with one lifetime', needsRedis(), () => {
  let redis: Redis;
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstreams: Awaited<ReturnType<typeof startScriptedUpstream>>[];
  let gateways: TestGateway[];
  const prefix = `mandate-test-mux-sessions:${crypto.randomUUID()}`;
  /** Every key the gateways wrote (they write nothing else under this prefix: no rate limits, no approvals), with its remaining lifetime in ms. */
  const lifetimes = async () => Promise.all((await redis.keys(`${prefix}:*`)).map(async (key) => ({ key, ms: await redis.pttl(key) })));

  before(async () => {
    redis = new Redis(redisUrl!);
    issuer = await startFakeIssuer();
    upstreams = [await startScriptedUpstream(), await startScriptedUpstream()];
    const route = (url: string) => ({
      path: '/mcp',
      upstreams: [
        { name: 'a', url: upstreams[0]!.url },
        { name: 'b', url: upstreams[1]!.url },
      ],
      resource: `${url.replace(/:\d+$/, ':1')}/mcp`,
      authorization_servers: [issuer.issuer],
      tools: { a__echo: {}, b__echo: {} },
    });
    gateways = [await startTestGateway((url) => [route(url)], { rate_limit_prefix: prefix }), await startTestGateway((url) => [route(url)], { rate_limit_prefix: prefix })];
  });
  after(async () => {
    for (const gateway of gateways ?? []) await gateway.close();
    for (const upstream of upstreams ?? []) await upstream.close();
    await issuer?.close();
    redis?.disconnect();
  });

  it('the record is in Redis, with the upstream sessions, when initialize answers; a session kept alive by pings keeps them; the other replica then calls both upstreams', async () => {
    const token = await issuer.sign({ sub: 'alice', aud: 'http://127.0.0.1:1/mcp', client_id: 'mux-sessions' });
    const [a, b] = gateways.map((gateway) => `${gateway.url}/mcp`);
    const init = await mcpPost(a!, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }, { authorization: `Bearer ${token}` });
    assert.equal(init.status, 200, init.text);
    const session = init.headers.get('mcp-session-id')!;
    // Nothing else has happened: what is stored was stored before the answer left.
    const store = new RedisSessionBindings(redis, prefix);
    assert.deepEqual(await store.upstreams(session), { a: { session: 'upstream-session' }, b: { session: 'upstream-session' } });
    const keys = await lifetimes();
    assert.ok(keys.length > 0);

    // The session nearly idle for its whole lifetime (as if a day had passed), then one ping.
    for (const { key } of keys) await redis.pexpire(key, 2_000);
    const headers = { authorization: `Bearer ${token}`, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' };
    const ping = await mcpPost(b!, { jsonrpc: '2.0', id: 2, method: 'ping' }, headers);
    assert.deepEqual(ping.json, { jsonrpc: '2.0', id: 2, result: {} });
    for (const { key, ms } of await lifetimes()) assert.ok(ms > 60_000, `${key} renewed by the ping: ${ms} ms left`);
    assert.equal(keys.length, 1, `one record: ${JSON.stringify(keys)}`);

    for (const [id, name] of [
      [3, 'a__echo'],
      [4, 'b__echo'],
    ] as const) {
      const call = await mcpPost(b!, toolCall(name, { text: 'hi' }, id), headers);
      assert.equal(call.status, 200, call.text);
    }
    for (const upstream of upstreams) {
      const call = upstream.requests.findLast((request) => request.body.includes('"tools/call"'))!;
      assert.equal(call.headers['mcp-session-id'], 'upstream-session', 'the upstream got its own session id');
    }
    const ended = await fetch(a!, { method: 'DELETE', headers });
    assert.equal(ended.status, 200);
    assert.deepEqual(await lifetimes(), [], 'DELETE forgets the whole record');
  });

  it('upstream sessions are never kept for a binding that is gone (Redis, memory, Durable Object): the store refuses, so no session id is handed out without them', async () => {
    const stores = [new RedisSessionBindings(redis, prefix), new SessionBindings(), new DurableSessionBindings(localNamespace().namespace, { idleMs: 60_000 })];
    for (const store of stores) {
      await assert.rejects(async () => store.setUpstreams('no-such-session', { a: { session: 'x' } }), SessionStoreUnavailable);
      assert.equal(await store.upstreams('no-such-session'), undefined);
    }
    assert.deepEqual(await lifetimes(), [], 'nothing written for a session nobody bound');
  });
});
