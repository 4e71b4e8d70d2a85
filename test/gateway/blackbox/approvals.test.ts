/**
 * The gateway as a black box, on the Node gateway and on the Worker in workerd (issue 16): calls of
 * a tool marked `approval` (issue 14) held until the user approves them at the AS (the fake that
 * keeps the transactions contract, test/helpers/fake-transactions.ts), in both forms a client may
 * know (2025-11-25: a URL elicitation error; 2026-07-28: `input_required` with a `requestState`);
 * the approved retry forwarded exactly once; denied → 403; the AS failing → 503 (fail closed).
 * One gateway per target for the whole file.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startBlackboxUpstream } from '../../helpers/blackbox-upstream.ts';
import { startFakeTransactionsAs } from '../../helpers/fake-transactions.ts';
import { listedTools, mcpPost, toolCall } from '../../helpers/gateway.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type TargetGateway } from '../../helpers/gateway-targets.ts';

type Elicitation = { mode: string; elicitationId: string; url: string; message: string };
const V2025 = { 'mcp-protocol-version': '2025-11-25' };
const V2026 = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'transfer' };

for (const target of targets) {
  describe(`black box [${target}]: calls held for approval`, onTarget(target), () => {
    let as: Awaited<ReturnType<typeof startFakeTransactionsAs>>;
    let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
    let gateway: TargetGateway;
    let resource: string;

    before(async () => {
      as = await startFakeTransactionsAs();
      upstream = await startBlackboxUpstream();
      gateway = await startGatewayOn(
        target,
        (origin) => [
          {
            path: '/mcp',
            upstream: upstream.url,
            resource: `${origin}/mcp`,
            authorization_servers: [as.issuer],
            tools: { ...listedTools(['echo']), transfer: { scopes: ['banking:transfer'], approval: { when: 'args.amount > 100', binds: ['amount', 'to'], summary: 'Transfer {amount} EUR to {to}' } } },
            approvals: { client_id: 'gateway', client_secret_env: 'BB_APPROVALS_SECRET', retry_check: true },
          },
        ],
        { secrets: { BB_APPROVALS_SECRET: 'gw-secret' } },
      );
      resource = `${gateway.url}/mcp`;
    });
    after(async () => {
      await gateway?.stop();
      await upstream?.close();
      await as?.close();
    });

    const bearer = () => as.sign({ aud: resource, sub: 'alice', client_id: 'sample-agent', scope: 'banking:read banking:transfer', act: { sub: 'sample-agent', client_id: 'sample-agent' } });
    const call = async (args: Record<string, unknown>, headers: Record<string, string> = V2025, extra: Record<string, unknown> = {}) => {
      const message = toolCall('transfer', args, 1);
      Object.assign(message.params, extra);
      return mcpPost(resource, message, { authorization: `Bearer ${await bearer()}`, ...headers });
    };
    const forwarded = (to: string) => upstream.requests.filter((r) => r.body.includes('"tools/call"') && (JSON.parse(r.body) as { params: { arguments: { to?: string } } }).params.arguments.to === to).length;
    const eventOf = (res: { headers: Headers }) => gateway.waitForAudit((e) => e.request_id === res.headers.get('x-request-id'));
    const held = async (args: Record<string, unknown>) => {
      const res = await call(args);
      assert.equal(res.status, 200, res.text);
      const error = res.json!.error as { code: number; data: { elicitations: Elicitation[] } };
      assert.equal(error.code, -32042, res.text);
      return { res, elicitation: error.data.elicitations[0]! };
    };

    it('a call over the threshold is held: a URL elicitation of the approval page, nothing forwarded, audited approval_required', async () => {
      const { res, elicitation } = await held({ amount: 250, to: 'Bob' });
      assert.deepEqual(elicitation, { mode: 'url', elicitationId: elicitation.elicitationId, url: `${as.issuer}/approve/${elicitation.elicitationId}`, message: 'Transfer 250 EUR to Bob' });
      assert.ok(as.transactions.has(elicitation.elicitationId));
      assert.equal(forwarded('Bob'), 0);
      const event = await eventOf(res);
      assert.deepEqual([event.decision, event.rejection, event.reason, event.approval, event.approval_id, event.status], ['deny', 'approval_required', `approval required: transaction ${elicitation.elicitationId} created`, 'required', elicitation.elicitationId, 200]);
      assert.equal((await call({ amount: 50, to: 'Bob' })).status, 200, 'under the threshold: no approval');
    });

    it('retried before the decision: the same transaction; approved: forwarded exactly once; replayed: held again', async () => {
      const first = await held({ amount: 500, to: 'Erin' });
      const again = await held({ to: 'Erin', amount: 500 });
      assert.deepEqual(again.elicitation, first.elicitation);
      assert.equal((await eventOf(again.res)).reason, `approval required: transaction ${first.elicitation.elicitationId} still pending`);
      as.approve(first.elicitation.elicitationId);
      const res = await call({ amount: 500, to: 'Erin' });
      assert.equal(res.status, 200, res.text);
      assert.ok(res.json!.result, res.text);
      assert.equal(forwarded('Erin'), 1);
      assert.equal(as.status(first.elicitation.elicitationId), 'used');
      const event = await eventOf(res);
      assert.deepEqual([event.decision, event.approval, event.approval_id], ['allow', 'granted', first.elicitation.elicitationId]);
      const replay = await held({ amount: 500, to: 'Erin' });
      assert.notEqual(replay.elicitation.elicitationId, first.elicitation.elicitationId);
      assert.equal(forwarded('Erin'), 1, 'the replay was not forwarded');
    });

    it('2026-07-28: input_required with a requestState; the approved retry echoing it is forwarded once', async () => {
      const first = await call({ amount: 1000, to: 'Lea' }, V2026);
      assert.equal(first.status, 200, first.text);
      const result = first.json!.result as { resultType: string; inputRequests: { approval: { params: Elicitation } }; requestState: string };
      assert.equal(result.resultType, 'input_required');
      const id = result.inputRequests.approval.params.elicitationId;
      as.approve(id);
      const res = await call({ amount: 1000, to: 'Lea' }, V2026, { requestState: result.requestState, inputResponses: { approval: { action: 'accept' } } });
      assert.equal(res.status, 200, res.text);
      assert.equal(forwarded('Lea'), 1);
      const seen = JSON.parse(upstream.requests.at(-1)!.body) as { params: Record<string, unknown> };
      assert.equal(seen.params.requestState, undefined, "the gateway's requestState is not forwarded");
      const tampered = await call({ amount: 1000, to: 'Lea' }, V2026, { requestState: `${result.requestState.slice(0, -2)}xx` });
      await assertRefused(gateway, tampered, { status: 403, code: -32003, rejection: 'approval_state_invalid', reason: 'requestState with a wrong MAC or shape (tampered, or issued to another caller or route)' });
    });

    it('denied: 403 approval_denied, nothing forwarded', async () => {
      const { elicitation } = await held({ amount: 700, to: 'Hank' });
      as.deny(elicitation.elicitationId);
      const res = await call({ amount: 700, to: 'Hank' });
      await assertRefused(gateway, res, { status: 403, code: -32003, rejection: 'approval_denied', reason: new RegExp(`^transaction ${elicitation.elicitationId}: transaction_denied`) });
      assert.equal(forwarded('Hank'), 0);
    });

    // `reset` names the runtime's fetch error (Node: "fetch failed (other side closed)"; workerd: "Network connection lost.").
    const failures = {
      reset: /\/transactions: .+/,
      error: /\/transactions answered 500$/,
      html: /\/transactions answered 200 without a JSON id, approval_uri on http:\/\/127\.0\.0\.1:\d+ and expires_at$/,
      redirect: /\/transactions: fetch failed \(unexpected redirect\)$/,
    } as const;
    for (const [mode, reason] of Object.entries(failures) as [keyof typeof failures, RegExp][]) {
      it(`the AS failing (${mode}): 503 approval_unavailable with Retry-After, nothing forwarded`, async () => {
        as.setMode(mode);
        try {
          const res = await call({ amount: 5000, to: `Rita-${mode}` });
          const event = await assertRefused(gateway, res, { status: 503, code: -32603, rejection: 'approval_unavailable', reason });
          assert.equal(res.headers.get('retry-after'), '5');
          assert.equal(event.decision, 'error');
        } finally {
          as.setMode('up');
        }
        assert.equal(forwarded(`Rita-${mode}`), 0);
      });
    }
  });
}
