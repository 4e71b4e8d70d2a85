import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startApprovalGateway, startFakeTransactionsAs } from '../helpers/fake-transactions.ts';
import { mcpPost, startScriptedUpstream, toolCall, type TestGateway } from '../helpers/gateway.ts';

/**
 * Rate limits and approvals (issue 14, found end to end with the demo's `transfers-per-user-and-agent`
 * limit): a call held for approval spends the caller's budget like any call, so an agent cannot
 * fill the person's pending approvals with transactions beyond the route's limits (approval
 * fatigue), and an approved retry refused by a limit does not spend the approval.
 */
describe('gateway approvals under a rate limit', () => {
  let as: Awaited<ReturnType<typeof startFakeTransactionsAs>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  const V2025 = { 'mcp-protocol-version': '2025-11-25' };

  before(async () => {
    as = await startFakeTransactionsAs();
    upstream = await startScriptedUpstream();
    gateway = await startApprovalGateway(as, upstream.url, {
      tools: { transfer: { approval: { when: 'args.amount > 100', summary: 'Transfer {amount} EUR to {to}' } } },
      rate_limits: [{ name: 'transfers', key: ['subject', 'actor'], tools: ['transfer'], limit: 3, window_seconds: 3600 }],
    });
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await as.close();
  });

  it('held calls spend the budget: past the limit, 429 and no new transaction at the AS; the approval refused by the limit is not spent', async () => {
    const token = await as.sign({ aud: `${gateway.url}/mcp`, sub: 'alice', client_id: 'sample-agent', act: { sub: 'sample-agent' } });
    const headers = { ...V2025, authorization: `Bearer ${token}` };
    const held = await mcpPost(`${gateway.url}/mcp`, toolCall('transfer', { amount: 250, to: 'Bob' }, 1), headers);
    assert.equal((held.json!.error as { code: number }).code, -32042);
    const id = [...as.transactions.keys()].at(-1)!;
    assert.equal((await mcpPost(`${gateway.url}/mcp`, toolCall('transfer', { amount: 251, to: 'Bob' }, 2), headers)).status, 200);
    assert.equal((await mcpPost(`${gateway.url}/mcp`, toolCall('transfer', { amount: 252, to: 'Bob' }, 3), headers)).status, 200);
    assert.equal(as.transactions.size, 3);

    const flood = await mcpPost(`${gateway.url}/mcp`, toolCall('transfer', { amount: 253, to: 'Bob' }, 4), headers);
    assert.equal(flood.status, 429, flood.text);
    assert.equal((flood.json!.error as { code: number }).code, -32029);
    assert.equal(as.transactions.size, 3, 'no transaction created past the limit');

    // The person approves the first one; the retry is over the limit: refused before /use, the approval kept.
    as.approve(id);
    const retry = await mcpPost(`${gateway.url}/mcp`, toolCall('transfer', { amount: 250, to: 'Bob' }, 5), headers);
    assert.equal(retry.status, 429);
    assert.equal(as.status(id), 'approved', 'not spent by a call that was not made');
    assert.equal(upstream.requests.filter((request) => request.body.includes('"transfer"')).length, 0, 'nothing forwarded');

    const events = (await gateway.auditEvents()).filter((event) => event.tool === 'transfer');
    assert.deepEqual(events.map((event) => event.rejection), ['approval_required', 'approval_required', 'approval_required', 'rate_limited', 'rate_limited']);
    assert.equal(events[3]!.approval_id, undefined, 'no approval started');
  });
});
