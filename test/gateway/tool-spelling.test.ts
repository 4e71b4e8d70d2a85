import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startApprovalGateway, startFakeTransactionsAs } from '../helpers/fake-transactions.ts';
import { listedTools, mcpPost, startScriptedUpstream, toolCall, type TestGateway } from '../helpers/gateway.ts';

/**
 * A tool name that differs from a configured one only by case, white space, invisible or
 * compatibility characters (`Transfer`, `transfer `, `ｔransfer`) would skip that tool's rules —
 * its scopes and its approval — on a route with `unlisted_tools: allow`, while an upstream that
 * matches names leniently runs the real tool. The gateway refuses it: 403, audited `tool_spelling`.
 */
describe('gateway: tool names spelled like a configured tool', () => {
  let as: Awaited<ReturnType<typeof startFakeTransactionsAs>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;

  before(async () => {
    as = await startFakeTransactionsAs();
    upstream = await startScriptedUpstream();
    gateway = await startApprovalGateway(
      as,
      upstream.url,
      { tools: { ...listedTools(), transfer: { scopes: ['banking:transfer'], approval: 'required' as const } }, unlisted_tools: 'allow' as const },
      process.env,
    );
    resource = `${gateway.url}/mcp`;
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await as.close();
  });

  const token = () => as.sign({ aud: resource, sub: 'alice', client_id: 'sample-agent', scope: 'banking:transfer' });
  const call = async (name: string) => mcpPost(resource, toolCall(name, { amount: 250, to: 'Bob' }, 1), { authorization: `Bearer ${await token()}`, 'mcp-protocol-version': '2025-11-25' });
  const forwarded = () => upstream.requests.filter((request) => request.body.includes('"tools/call"'));
  const eventOf = async (res: { headers: Headers }) => {
    const id = res.headers.get('x-request-id');
    const event = (await gateway.auditEvents()).find((e) => e.request_id === id);
    assert.ok(event, `an audit event for request ${id}`);
    return event;
  };

  for (const name of ['Transfer', 'TRANSFER', 'transfer ', ' transfer', 'trans\u200bfer', '\uff54ransfer', 'transfer\n']) {
    it(`${JSON.stringify(name)}: 403, not forwarded, no transaction, audited tool_spelling`, async () => {
      const before = forwarded().length;
      const creates = as.callsTo('create').length;
      const res = await call(name);
      assert.equal(res.status, 403, res.text);
      const error = res.json!.error as { code: number; message: string; data: unknown };
      assert.equal(error.code, -32003);
      assert.equal(error.message, `the call to tool ${JSON.stringify(name)} was refused by the gateway policy: it is not spelled as the tool transfer`);
      assert.deepEqual(error.data, { tool: 'transfer' });
      assert.equal(forwarded().length, before, 'nothing reached the upstream');
      assert.equal(as.callsTo('create').length, creates, 'no transaction started');
      const event = await eventOf(res);
      assert.deepEqual([event.decision, event.rejection], ['deny', 'tool_spelling']);
      assert.equal(event.reason, `tool name ${JSON.stringify(name)} differs from the configured tool transfer only by case, white space, invisible or compatibility characters`);
    });
  }

  it('the exact name is held for approval; another unlisted tool is still allowed', async () => {
    const held = await call('transfer');
    assert.equal(held.status, 200, held.text);
    assert.equal((held.json!.error as { code: number }).code, -32042);
    const other = await call('transfers');
    assert.notEqual(other.status, 403, other.text);
    assert.equal((await eventOf(other)).rejection, undefined);
  });
});
