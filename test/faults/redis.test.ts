import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { pkcePair, postForm } from '../helpers/auth-server.ts';
import { FAULT_APP, isUnavailable, serviceAuth, startFaultAuthServer, processCrashes, type FaultAuthServer } from '../helpers/fault-servers.ts';
import { listedTools, mcpPost, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';
import { redisAvailable, startPrivateRedis, until, type PrivateRedis } from '../helpers/private-services.ts';
import { skipUnless } from '../helpers/services.ts';

/**
 * Issue 11, item 8 for Redis: a Redis of the test's own killed and restarted under an AS (sign-in
 * state lives there) and a gateway (global rate limits). Requests that need it get 503 while it is
 * down, never a crash or a 500, and both recover by themselves once it is back.
 */
describe('fault suite: Redis killed and restarted', skipUnless(redisAvailable(), 'fault suite: redis-server is not installed'), () => {
  let redis: PrivateRedis;
  let as: FaultAuthServer;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let token: string;

  before(async () => {
    redis = await startPrivateRedis();
    as = await startFaultAuthServer({ driver: 'sqlite', env: { REDIS_URL: redis.url } });
    upstream = await startScriptedUpstream();
    gateway = await startTestGateway(
      () => [
        {
          path: '/mcp',
          upstream: upstream.url,
          tools: listedTools(),
          resource: as.resource,
          authorization_servers: [as.issuer],
          rate_limits: [{ name: 'per-client', key: ['client'], limit: 1000, window_seconds: 60 }],
        },
      ],
      {},
      { REDIS_URL: redis.url },
    );
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', scope: 'mcp:read' }, serviceAuth(as));
    assert.equal(res.status, 200, res.text);
    token = res.json.access_token as string;
  });
  after(async () => {
    await gateway?.close();
    await upstream?.close();
    await as?.close();
    as?.remove();
    await redis?.close();
  });
  // Whatever would have killed a service process fails the test that caused it.
  afterEach(() => assert.deepEqual(processCrashes(), []));

  // Starting a sign-in stores the interaction in Redis.
  const authorize = async () => {
    const url = `${as.issuer}/authorize?${new URLSearchParams({
      response_type: 'code',
      client_id: FAULT_APP.client_id,
      redirect_uri: FAULT_APP.redirect,
      code_challenge: pkcePair().challenge,
      code_challenge_method: 'S256',
      resource: as.resource,
      scope: 'mcp:read',
    })}`;
    const res = await fetch(url, { redirect: 'manual' });
    const text = await res.text();
    return { status: res.status, headers: res.headers, text, json: (res.headers.get('content-type')?.includes('json') ? JSON.parse(text) : {}) as Record<string, unknown> };
  };
  const call = (id: number) => mcpPost(`${gateway.url}/mcp`, toolCall('echo', { id }, id), { authorization: `Bearer ${token}` });

  it('503 while Redis is down, at the AS and the gateway; both recover once it is back', async () => {
    assert.equal((await authorize()).status, 303);
    assert.equal((await call(1)).status, 200);

    await redis.kill();
    const refused = await authorize();
    assert.ok(isUnavailable(refused), `sign-in while Redis is down: ${refused.status} ${refused.text}`);
    assert.ok(as.logs.some((line) => line.msg === 'a dependency is unavailable; answered 503' && /redis|Connection|closed/i.test(String(line.reason))), 'the reason is logged');
    const throttled = await call(2);
    assert.equal(throttled.status, 503, throttled.text);
    assert.ok(Number(throttled.headers.get('retry-after')) > 0);
    const event = (await gateway.auditEvents()).find((e) => e.jsonrpc_id === 2)!;
    assert.equal(event.decision, 'error');
    assert.equal(event.rejection, 'rate_limiter_unavailable');
    assert.ok(event.reason, 'the cause is recorded');
    assert.equal((await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).status, 200, 'the AS is alive');

    await redis.start();
    const back = Date.now();
    await until(async () => (await authorize()).status === 303, 15_000, 'the AS using Redis again');
    const asRecovery = Date.now() - back;
    await until(async () => (await call(3)).status === 200, 15_000, 'the gateway using Redis again');
    const gatewayRecovery = Date.now() - back;
    console.log(`# Redis killed: AS serving sign-ins again ${asRecovery} ms, gateway ${gatewayRecovery} ms after Redis came back`);
    assert.deepEqual(as.logs.filter((line) => line.msg === 'unhandled error'), []);
  });
});
