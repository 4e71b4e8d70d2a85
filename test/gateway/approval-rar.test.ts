import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { actionHash } from '../../src/core/action-hash.ts';
import { basic, decodeJwt, type TestAuthServer } from '../helpers/auth-server.ts';
import { exchange } from '../helpers/delegation-server.ts';
import { listedTools, mcpPost, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';
import { needsRedis, redisUrl } from '../helpers/services.ts';
import type { FormBrowser } from '../helpers/browser-driver.ts';
import { ApprovalMemory } from '../../src/gateway/approvals.ts';
import { RedisApprovals } from '../../src/gateway/node/redis-approvals.ts';
import { AGENT, BANK, SECRETS, auditEvents, auth, call, decide, signIn, startTransactionServer } from '../transactions/helpers.ts';

/**
 * Issue 14, part 3, end to end with the real authorization server: the approval reaches the gateway
 * in the token (RFC 9396 `authorization_details`, type `mcp_tool_call`). The gateway lets exactly the
 * approved call through once — claimed in its store (Redis `SET NX` when shared), recorded at the
 * AS with `/use` — and refuses a second use; a token approving another call does not pass.
 */
describe('gateway: the approval carried in the token (RFC 9396)', () => {
  let as: TestAuthServer;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  const gateways: TestGateway[] = [];
  let gateway: TestGateway;
  /** demo signed in through sample-agent for the agent's resource: the subject of every exchange. */
  let demo: { accessToken: string; browser: FormBrowser };
  const agentAuth = basic('sample-agent', SECRETS.agent);
  const SECRET_ENV = 'TEST_RAR_GATEWAY_SECRET';
  const V2025 = { 'mcp-protocol-version': '2025-11-25' };

  const start = async (env: Record<string, string | undefined> = {}, extra: Record<string, unknown> = {}) => {
    const started = await startTestGateway(
      () => [
        {
          path: '/mcp',
          upstream: upstream.url,
          resource: BANK,
          authorization_servers: [as.issuer],
          tools: { ...listedTools(), transfer: { approval: { binds: ['amount', 'to'], summary: 'Transfer {amount} EUR to {to}' } }, echo: { approval: 'required' as const } },
          approvals: { client_id: 'gateway', client_secret_env: SECRET_ENV, retry_check: true },
        },
      ],
      extra,
      { ...process.env, [SECRET_ENV]: SECRETS.gateway, ...env },
    );
    gateways.push(started);
    return started;
  };

  before(async () => {
    as = await startTransactionServer();
    upstream = await startScriptedUpstream();
    demo = await signIn(as, { clientId: 'sample-agent', secret: SECRETS.agent, resource: AGENT });
    gateway = await start();
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.close()));
    await upstream?.close();
    await as?.close();
  });

  /** The agent's token at the bank (act: [sample-agent]), with the approvals named, if any. */
  const bankToken = async (...transactionIds: string[]) => {
    const form: Record<string, string> = { subject_token: demo.accessToken, resource: BANK };
    if (transactionIds.length > 0) form.authorization_details = JSON.stringify(transactionIds.map((id) => ({ type: 'mcp_tool_call', transaction_id: id })));
    const res = await exchange(as, form, { authorization: agentAuth });
    assert.equal(res.status, 200, res.text);
    return res.json.access_token as string;
  };
  const callTool = async (at: TestGateway, token: string, args: Record<string, unknown>, tool = 'transfer') => mcpPost(`${at.url}/mcp`, toolCall(tool, args), { authorization: `Bearer ${token}`, ...V2025 });
  const forwarded = (to: string, tool = 'transfer') =>
    upstream.requests.filter((r) => r.body.includes('"tools/call"') && JSON.parse(r.body).params.name === tool && JSON.parse(r.body).params.arguments?.to === to).length;
  const heldId = (res: { status: number; json?: Record<string, unknown>; text: string }) => {
    assert.equal(res.status, 200, res.text);
    const error = res.json!.error as { code: number; data: { elicitations: { elicitationId: string }[] } };
    assert.equal(error.code, -32042, res.text);
    return error.data.elicitations[0]!.elicitationId;
  };
  const eventOf = async (at: TestGateway, res: { headers: Headers }) => {
    const event = (await at.auditEvents()).find((e) => e.request_id === res.headers.get('x-request-id'));
    assert.ok(event, 'an audit event');
    return event;
  };
  /** A held call approved by demo on the page: its transaction id. */
  const approvedCall = async (args: Record<string, unknown>, tool = 'transfer') => {
    const id = heldId(await callTool(gateway, await bankToken(), args, tool));
    await decide(demo.browser, id, 'approve');
    return id;
  };
  const statusAtAs = async (id: string) => (await call(as, 'GET', `/transactions/${id}`, { authorization: auth.gateway })).json.status;

  it('the token with the approval passes once, audited with the approval id; a second use is refused approval_used; the AS records the use', async () => {
    const args = { amount: 250, to: 'rar-once', memo: 'not bound' };
    const id = await approvedCall(args);
    const rar = await bankToken(id);
    assert.deepEqual(decodeJwt(rar).authorization_details, [{ type: 'mcp_tool_call', transaction_id: id, resource: BANK, tool: 'transfer', arguments_hash: await actionHash('transfer', args, ['amount', 'to']) }]);

    const first = await callTool(gateway, rar, args);
    assert.equal(first.status, 200, first.text);
    assert.ok(first.json!.result, first.text);
    assert.equal(forwarded('rar-once'), 1);
    const granted = await eventOf(gateway, first);
    assert.equal(granted.decision, 'allow');
    assert.equal(granted.approval, 'granted');
    assert.equal(granted.approval_id, id);
    assert.equal(granted.approval_via, 'authorization_details');
    assert.equal(await statusAtAs(id), 'used', 'the AS knows the approval was spent');
    const used = (await auditEvents(as)).find((e) => e.type === 'transaction.used' && e.data?.transaction_id === id);
    assert.ok(used, 'transaction.used at the AS');

    const second = await callTool(gateway, rar, args);
    assert.equal(second.status, 403, second.text);
    assert.equal((second.json!.error as { code: number }).code, -32003);
    assert.equal(forwarded('rar-once'), 1, 'not forwarded again');
    const refused = await eventOf(gateway, second);
    assert.equal(refused.decision, 'deny');
    assert.equal(refused.rejection, 'approval_used');
    assert.equal(refused.approval, 'refused');
    assert.equal(refused.approval_id, id);
    assert.equal(refused.approval_via, 'authorization_details');
    assert.match(refused.reason as string, new RegExp(`transaction ${id} already used at a gateway`));

    // The plain token's retry of the same call is not let through either: a new approval is asked.
    const plain = await callTool(gateway, await bankToken(), args);
    assert.notEqual(heldId(plain), id);
    assert.equal(forwarded('rar-once'), 1);
  });

  it('a token approving another call does not pass: other arguments (hash) or another tool → a new approval, nothing forwarded, the approval kept', async () => {
    const args = { amount: 300, to: 'rar-other' };
    const id = await approvedCall(args);
    const rar = await bankToken(id);

    const otherAmount = await callTool(gateway, rar, { ...args, amount: 301 });
    const newId = heldId(otherAmount);
    assert.notEqual(newId, id, 'a mismatching hash falls through to a new approval');
    const event = await eventOf(gateway, otherAmount);
    assert.equal(event.rejection, 'approval_required');
    assert.equal(event.approval_via, undefined);

    const otherTool = await callTool(gateway, rar, { to: 'rar-other' }, 'echo');
    assert.notEqual(heldId(otherTool), id);
    assert.equal(forwarded('rar-other') + forwarded('rar-other', 'echo'), 0);

    // The approval is still there for the call it was given for.
    assert.equal(await statusAtAs(id), 'approved');
    const exact = await callTool(gateway, rar, args);
    assert.equal(exact.status, 200, exact.text);
    assert.equal(forwarded('rar-other'), 1);
  });

  it('an approval spent by the plain retry first (the AS said used) is refused when the token brings it again', async () => {
    const args = { amount: 400, to: 'rar-after-retry' };
    const id = await approvedCall(args);
    const rar = await bankToken(id);
    const retried = await callTool(gateway, await bankToken(), args);
    assert.equal(retried.status, 200, retried.text);
    assert.equal(forwarded('rar-after-retry'), 1);
    const late = await callTool(gateway, rar, args);
    assert.equal(late.status, 403, late.text);
    const event = await eventOf(gateway, late);
    assert.equal(event.rejection, 'approval_used');
    assert.match(event.reason as string, new RegExp(`authorization_details: transaction ${id}: transaction_used`));
    assert.equal(forwarded('rar-after-retry'), 1);
  });

  it('two gateways each with its own memory, racing: the AS /use decides, exactly one forwards', async () => {
    const other = await start();
    for (let round = 0; round < 3; round++) {
      const to = `rar-race-memory-${round}`;
      const id = await approvedCall({ amount: 500, to });
      const rar = await bankToken(id);
      const answers = await Promise.all([gateway, other, gateway, other].map((at) => callTool(at, rar, { amount: 500, to })));
      const passed = answers.filter((res) => res.status === 200 && res.json!.result !== undefined);
      assert.equal(passed.length, 1, answers.map((res) => res.text).join(' | '));
      assert.equal(forwarded(to), 1);
      for (const res of answers.filter((r) => !passed.includes(r))) assert.equal(res.status, 403, res.text);
    }
  });

  it('two gateways sharing Redis, racing: exactly one forwards; the mark is one key per transaction id, living as long as the token', { ...needsRedis() }, async () => {
    const { Redis } = await import('ioredis');
    const prefix = `mandate-test:${randomUUID()}`;
    const a = await start({ REDIS_URL: redisUrl }, { rate_limit_prefix: prefix });
    const b = await start({ REDIS_URL: redisUrl }, { rate_limit_prefix: prefix });
    const redis = new Redis(redisUrl!);
    try {
      for (let round = 0; round < 5; round++) {
        const to = `rar-race-redis-${round}`;
        const id = await approvedCall({ amount: 600, to });
        const rar = await bankToken(id);
        const answers = await Promise.all([a, b, a, b].map((at) => callTool(at, rar, { amount: 600, to })));
        const passed = answers.filter((res) => res.status === 200 && res.json!.result !== undefined);
        assert.equal(passed.length, 1, `round ${round}: ${answers.map((res) => res.text).join(' | ')}`);
        assert.equal(forwarded(to), 1);
        const losers = await Promise.all(answers.filter((r) => !passed.includes(r)).map(async (res) => ({ res, event: await eventOf(res === answers[0] || res === answers[2] ? a : b, res) })));
        for (const { res, event } of losers) {
          assert.equal(res.status, 403, res.text);
          assert.equal(event.rejection, 'approval_used');
        }
        // Every loser lost at the Redis mark: the AS was asked once.
        assert.ok(losers.every(({ event }) => /already used at a gateway/.test(event.reason as string)), 'refused at the shared mark, without asking the AS');
        const ttl = await redis.pttl(`${prefix}:approval-used:${id}`);
        const exp = decodeJwt(rar).exp as number;
        assert.ok(ttl > 0 && ttl <= exp * 1000 - Date.now() + 1_000, `TTL ${ttl} ms: the token's remaining life`);
      }
    } finally {
      redis.disconnect();
    }
  });
});

describe('gateway: claiming an approval carried in a token (the stores)', () => {
  it('memory: the first claim wins until the TTL ends; a release undoes it', async () => {
    const store = new ApprovalMemory();
    assert.equal(store.claim('tx-1', 200), true);
    assert.equal(store.claim('tx-1', 200), false);
    assert.equal(store.claim('tx-2', 200), true, 'per transaction id');
    store.release('tx-2');
    assert.equal(store.claim('tx-2', 200), true);
    await new Promise((resolve) => setTimeout(resolve, 250));
    assert.equal(store.claim('tx-1', 200), true, 'the mark lapses with the token');
  });

  it('Redis: SET NX under <prefix>:approval-used:<id> with the TTL; of concurrent claims exactly one wins', { ...needsRedis() }, async () => {
    const { Redis } = await import('ioredis');
    const redis = new Redis(redisUrl!);
    const prefix = `mandate-test:${randomUUID()}`;
    try {
      const a = new RedisApprovals(redis, prefix);
      const b = new RedisApprovals(redis, prefix);
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2 ? a : b).claim('tx-race', 60_000)));
      assert.equal(results.filter(Boolean).length, 1);
      const ttl = await redis.pttl(`${prefix}:approval-used:tx-race`);
      assert.ok(ttl > 55_000 && ttl <= 60_000, String(ttl));
      await a.release('tx-race');
      assert.equal(await b.claim('tx-race', 1_000), true);
    } finally {
      redis.disconnect();
    }
  });
});
