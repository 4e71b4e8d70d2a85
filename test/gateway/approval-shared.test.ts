import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { startFakeTransactionsAs } from '../helpers/fake-transactions.ts';
import { listedTools, mcpPost, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';
import { startPrivateRedis, until } from '../helpers/private-services.ts';
import { needsRedis, redisUrl } from '../helpers/services.ts';

/**
 * Issue 14 with several gateways behind one resource URL: a held call is recognized when it is
 * retried through another instance (Redis), the 2026-07-28 state is accepted by every gateway with
 * the same approvals client, and an approval is spent once however many gateways race for it —
 * the AS's `/use` is the atomic point, so each gateway forwards only when `/use` said 200.
 */
describe('gateway: approvals across gateways', () => {
  let as: Awaited<ReturnType<typeof startFakeTransactionsAs>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  const gateways: TestGateway[] = [];
  const RESOURCE = 'https://mcp.example/mcp';
  const SECRET_ENV = 'TEST_APPROVALS_SECRET';

  before(async () => {
    as = await startFakeTransactionsAs();
    upstream = await startScriptedUpstream();
  });
  after(async () => {
    await Promise.all(gateways.map((gateway) => gateway.close()));
    await upstream.close();
    await as.close();
  });

  const start = async (env: Record<string, string | undefined>, extra: Record<string, unknown> = {}) => {
    const gateway = await startTestGateway(
      () => [
        {
          path: '/mcp',
          upstream: upstream.url,
          resource: RESOURCE,
          authorization_servers: [as.issuer],
          tools: { ...listedTools(), transfer: { approval: { when: 'args.amount > 100' } } },
          approvals: { client_id: 'gateway', client_secret_env: SECRET_ENV, retry_check: true },
        },
      ],
      extra,
      { [SECRET_ENV]: 'gw-secret', ...env },
    );
    gateways.push(gateway);
    return gateway;
  };
  const bearer = async () => `Bearer ${await as.sign({ aud: RESOURCE, sub: 'alice', client_id: 'sample-agent', act: { sub: 'sample-agent' } })}`;
  const transfer = async (gateway: TestGateway, args: Record<string, unknown>, headers: Record<string, string> = { 'mcp-protocol-version': '2025-11-25' }, extra: Record<string, unknown> = {}) => {
    const message = toolCall('transfer', args);
    Object.assign(message.params, extra);
    return mcpPost(`${gateway.url}/mcp`, message, { authorization: await bearer(), ...headers });
  };
  const idOf = (res: { json?: Record<string, unknown> }) => (res.json!.error as { code: number; data: { elicitations: { elicitationId: string }[] } }).data.elicitations[0]!.elicitationId;
  const forwardedFor = (to: string) => upstream.requests.filter((request) => request.body.includes('"tools/call"') && request.body.includes(`"${to}"`)).length;

  it('2026-07-28: a requestState from one gateway is accepted by another with the same approvals client (no shared store needed)', async () => {
    const a = await start({});
    const b = await start({});
    const headers = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'transfer' };
    const first = await transfer(a, { amount: 200, to: 'state-at-b' }, headers);
    const result = first.json!.result as { requestState: string; inputRequests: { approval: { params: { elicitationId: string } } } };
    as.approve(result.inputRequests.approval.params.elicitationId);
    const res = await transfer(b, { amount: 200, to: 'state-at-b' }, headers, { requestState: result.requestState });
    assert.equal(res.status, 200, res.text);
    assert.equal(forwardedFor('state-at-b'), 1);
  });

  it('without Redis, a retry through another gateway is not recognized there: a new transaction', async () => {
    const a = await start({});
    const b = await start({});
    const first = await transfer(a, { amount: 200, to: 'no-redis' });
    as.approve(idOf(first));
    const atB = await transfer(b, { amount: 200, to: 'no-redis' });
    assert.equal(atB.status, 200);
    assert.notEqual(idOf(atB), idOf(first));
    assert.equal(forwardedFor('no-redis'), 0);
  });

  it('with Redis: the retry is recognized at another gateway; two gateways racing for one approval forward it once, each only when /use said 200', { ...needsRedis() }, async () => {
    const prefix = `mandate-test:${randomUUID()}`;
    const a = await start({ REDIS_URL: redisUrl }, { rate_limit_prefix: prefix });
    const b = await start({ REDIS_URL: redisUrl }, { rate_limit_prefix: prefix });
    // Held at A, let through at B.
    const held = await transfer(a, { amount: 300, to: 'a-then-b' });
    const id = idOf(held);
    const redis = new Redis(redisUrl!);
    try {
      const keys = await redis.keys(`${prefix}:approval:*`);
      assert.equal(keys.length, 1, 'remembered in Redis, under a hash');
      assert.ok(!keys[0]!.includes('alice') && !keys[0]!.includes('a-then-b'));
    } finally {
      redis.disconnect();
    }
    // The same first call at both gateways at once: one transaction is kept, both answer with it.
    const [twinA, twinB] = await Promise.all([transfer(a, { amount: 310, to: 'twins' }), transfer(b, { amount: 310, to: 'twins' })]);
    assert.equal(idOf(twinA), idOf(twinB), 'both gateways send the caller to the transaction remembered first');
    const pendingAtB = await transfer(b, { amount: 300, to: 'a-then-b' });
    assert.equal(idOf(pendingAtB), id, 'B answers with the transaction A created');
    as.approve(id);
    const atB = await transfer(b, { amount: 300, to: 'a-then-b' });
    assert.equal(atB.status, 200, atB.text);
    assert.equal(forwardedFor('a-then-b'), 1);

    for (let round = 0; round < 5; round++) {
      const to = `race-${round}`;
      const first = await transfer(round % 2 ? a : b, { amount: 400, to });
      const tx = idOf(first);
      as.approve(tx);
      const grantedBefore = as.granted.length;
      const answers = await Promise.all([transfer(a, { amount: 400, to }), transfer(b, { amount: 400, to }), transfer(a, { amount: 400, to }), transfer(b, { amount: 400, to })]);
      const passed = answers.filter((res) => res.status === 200 && res.json!.result !== undefined);
      assert.equal(passed.length, 1, `round ${round}: exactly one retry passes: ${answers.map((res) => res.text).join(' | ')}`);
      assert.equal(forwardedFor(to), 1, `round ${round}: forwarded once`);
      assert.deepEqual(as.granted.slice(grantedBefore), [tx], 'the one forwarded call is the one /use said 200 to');
      // The others: refused as used, or (the key already forgotten) held for a new approval.
      for (const res of answers.filter((r) => !passed.includes(r))) {
        const code = (res.json!.error as { code: number }).code;
        assert.ok((res.status === 403 && code === -32003) || (res.status === 200 && code === -32042), res.text);
      }
    }
  });

  it('with Redis down: a call that needs approval is refused with 503 (fail closed), nothing forwarded', { ...needsRedis() }, async () => {
    const redis = await startPrivateRedis();
    try {
      const gateway = await start({ REDIS_URL: redis.url });
      await until(async () => (await transfer(gateway, { amount: 1, to: 'redis-up' })).status === 200, 10_000, 'gateway never reached its Redis');
      await redis.kill();
      const res = await transfer(gateway, { amount: 500, to: 'redis-down' });
      assert.equal(res.status, 503, res.text);
      const event = (await gateway.auditEvents()).find((e) => e.request_id === res.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'approval_unavailable');
      assert.equal(event?.decision, 'error');
      assert.equal(forwardedFor('redis-down'), 0);
    } finally {
      await redis.close();
    }
  });
});
