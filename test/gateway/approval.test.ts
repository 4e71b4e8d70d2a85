import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { actionHash } from '../../src/core/action-hash.ts';
import { gatewayConfigSchema, mcpRoute } from '../../src/config/gateway-schema.ts';
import { parseConfig } from '../../src/config/load.ts';
import { compileRoute } from '../../src/gateway/route.ts';
import { startFakeTransactionsAs } from '../helpers/fake-transactions.ts';
import { listedTools, mcpPost, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';

/**
 * Issue 14, the gateway: a call of a tool marked `approval` is held, a transaction is created at the
 * AS and the caller is told where to approve it, in the form its protocol revision knows; the
 * retried call goes through exactly once after the approval. The AS here is a fake that keeps the
 * contract (test/helpers/fake-transactions.ts).
 */
describe('gateway: approval of high-risk tool calls', () => {
  let as: Awaited<ReturnType<typeof startFakeTransactionsAs>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;
  const SECRET_ENV = 'TEST_APPROVALS_SECRET';

  before(async () => {
    as = await startFakeTransactionsAs();
    upstream = await startScriptedUpstream();
    const transfer = {
      scopes: ['banking:transfer'],
      approval: { when: 'args.amount > 100', binds: ['amount', 'to'], summary: 'Transfer {amount} EUR to {to}' },
    };
    gateway = await startTestGateway(
      (url) => [
        {
          path: '/mcp',
          upstream: upstream.url,
          resource: `${url}/mcp`,
          authorization_servers: [as.issuer],
          tools: { ...listedTools(), transfer, echo: { approval: 'required' as const } },
          approvals: { client_id: 'gateway', client_secret_env: SECRET_ENV, retry_check: true },
        },
        {
          path: '/nocheck',
          upstream: upstream.url,
          resource: `${url}/mcp`,
          authorization_servers: [as.issuer],
          tools: { ...listedTools(), transfer },
          approvals: { client_id: 'gateway', client_secret_env: SECRET_ENV },
        },
        {
          path: '/badclient',
          upstream: upstream.url,
          resource: `${url}/mcp`,
          authorization_servers: [as.issuer],
          tools: { ...listedTools(), transfer },
          approvals: { client_id: 'gateway', client_secret_env: `${SECRET_ENV}_WRONG`, retry_check: true },
        },
      ],
      {},
      { ...process.env, [SECRET_ENV]: 'gw-secret', [`${SECRET_ENV}_WRONG`]: 'not-the-secret' },
    );
    resource = `${gateway.url}/mcp`;
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await as.close();
  });

  const ALICE = { sub: 'alice', client_id: 'sample-agent', scope: 'banking:read banking:transfer', act: { sub: 'sample-agent', client_id: 'sample-agent' } };
  const token = (claims: Record<string, unknown> = {}) => as.sign({ aud: resource, ...ALICE, ...claims });
  const V2025 = { 'mcp-protocol-version': '2025-11-25' };
  const V2026 = (name: string) => ({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': name });
  const call = async (args: Record<string, unknown>, headers: Record<string, string> = V2025, options: { bearer?: string; id?: number; path?: string; tool?: string; extra?: Record<string, unknown> } = {}) => {
    const message = toolCall(options.tool ?? 'transfer', args, options.id ?? 1);
    Object.assign(message.params, options.extra ?? {});
    return mcpPost(`${gateway.url}${options.path ?? '/mcp'}`, message, { authorization: `Bearer ${options.bearer ?? (await token())}`, ...headers });
  };
  const forwarded = (tool = 'transfer') => upstream.requests.filter((request) => request.body.includes('"tools/call"') && JSON.parse(request.body).params.name === tool);
  const eventOf = async (res: { headers: Headers }) => {
    const id = res.headers.get('x-request-id');
    const event = (await gateway.auditEvents()).find((e) => e.request_id === id);
    assert.ok(event, `an audit event for request ${id}`);
    return event;
  };
  type Elicitation = { mode: string; elicitationId: string; url: string; message: string };
  const elicitationOf = (res: { json?: Record<string, unknown> }): Elicitation => {
    const error = res.json!.error as { code: number; message: string; data: { elicitations: Elicitation[] } };
    assert.equal(error.code, -32042, JSON.stringify(res.json));
    assert.equal(error.message, 'This call needs your approval: open the link');
    assert.equal(error.data.elicitations.length, 1);
    return error.data.elicitations[0]!;
  };
  /** A held call: a URL elicitation for a new (or the same) transaction, nothing forwarded. */
  const held = async (args: Record<string, unknown>, options: Parameters<typeof call>[2] = {}) => {
    const before = forwarded(options.tool).length;
    const res = await call(args, V2025, options);
    assert.equal(res.status, 200, res.text);
    assert.equal(forwarded(options.tool).length, before, 'nothing reached the upstream');
    return { res, elicitation: elicitationOf(res) };
  };

  describe('a call that needs approval gets the answer its revision knows, and nothing is forwarded', () => {
    it('2025-11-25: HTTP 200, JSON-RPC -32042 with one URL elicitation of the approval page; the transaction is created with the caller token', async () => {
      const bearer = await token();
      const creates = as.callsTo('create').length;
      const res = await call({ amount: 250, to: 'Bob', memo: 'rent' }, V2025, { bearer, id: 7 });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json!.id, 7);
      const elicitation = elicitationOf(res);
      const tx = as.transactions.get(elicitation.elicitationId)!;
      assert.ok(tx, 'the elicitation id is the transaction id');
      assert.deepEqual(elicitation, { mode: 'url', elicitationId: tx.id, url: `${as.issuer}/approve/${tx.id}`, message: 'Transfer 250 EUR to Bob' });
      assert.equal(forwarded().length, 0, 'the upstream received nothing');
      // What the AS was sent: the gateway's client, the caller's token, the bound action.
      assert.equal(as.callsTo('create').length, creates + 1);
      const sent = as.callsTo('create').at(-1)!;
      assert.equal(sent.client, 'gateway');
      assert.deepEqual(sent.body, {
        subject_token: bearer,
        tool: 'transfer',
        arguments_hash: await actionHash('transfer', { amount: 250, to: 'Bob' }, ['amount', 'to']),
        summary: 'Transfer 250 EUR to Bob',
        details: { amount: 250, to: 'Bob' },
        lifetime_seconds: 300,
      });
      assert.deepEqual([tx.sub, tx.client_id, tx.act, tx.resource], ['alice', 'sample-agent', ['sample-agent'], resource]);
      const event = await eventOf(res);
      assert.equal(event.decision, 'deny');
      assert.equal(event.rejection, 'approval_required');
      assert.equal(event.reason, `approval required: transaction ${tx.id} created`);
      assert.equal(event.approval, 'required');
      assert.equal(event.approval_id, tx.id);
      assert.equal(event.status, 200);
      assert.equal(event.tool, 'transfer');
    });

    it('2026-07-28: HTTP 200, result input_required with one URL elicitation and a requestState', async () => {
      const res = await call({ amount: 300, to: 'Carol' }, V2026('transfer'), { id: 'a' as never });
      assert.equal(res.status, 200, res.text);
      const result = res.json!.result as { resultType: string; inputRequests: Record<string, { method: string; params: Elicitation }>; requestState: string };
      assert.deepEqual(Object.keys(res.json!).sort(), ['id', 'jsonrpc', 'result']);
      assert.equal(result.resultType, 'input_required');
      assert.deepEqual(Object.keys(result.inputRequests), ['approval']);
      const { method, params } = result.inputRequests.approval!;
      assert.equal(method, 'elicitation/create');
      assert.deepEqual(params, { mode: 'url', elicitationId: params.elicitationId, url: `${as.issuer}/approve/${params.elicitationId}`, message: 'Transfer 300 EUR to Carol' });
      assert.ok(as.transactions.has(params.elicitationId));
      assert.match(result.requestState, /^mgw1\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
      assert.equal(forwarded().length, 0);
      const event = await eventOf(res);
      assert.deepEqual([event.decision, event.rejection, event.approval, event.approval_id], ['deny', 'approval_required', 'required', params.elicitationId]);
    });

    it('other revisions and plain HTTP: 403 with WWW-Authenticate insufficient_authorization and approval_uri, and a JSON-RPC error saying what to do', async () => {
      for (const [i, headers] of ([{ 'mcp-protocol-version': '2025-06-18' }, {}] as Record<string, string>[]).entries()) {
        const res = await call({ amount: 400 + i, to: 'Dan' }, headers, { id: 3 });
        assert.equal(res.status, 403, res.text);
        const error = res.json!.error as { code: number; message: string; data: { approval_uri: string } };
        const url = error.data.approval_uri;
        const id = url.split('/').at(-1)!;
        assert.equal(url, `${as.issuer}/approve/${id}`);
        assert.equal(res.headers.get('www-authenticate'), `Bearer error="insufficient_authorization", approval_uri="${url}"`);
        assert.equal(error.code, -32003);
        assert.equal(error.message, `This call needs your approval: open ${url}, approve, then make the same call again`);
        const event = await eventOf(res);
        assert.deepEqual([event.decision, event.rejection, event.approval, event.approval_id, event.status], ['deny', 'approval_required', 'required', id, 403]);
      }
      assert.equal(forwarded().length, 0);
    });

    it('`approval: required` holds every call of the tool, with the default summary over all arguments', async () => {
      const { elicitation } = await held({ text: 'hello\u202Eevil\nline' }, { tool: 'echo' });
      assert.equal(elicitation.message, 'Call echo with text=hello\\u{202E}evil line', 'the bidi override shown, not obeyed nor deleted');
    });
  });

  describe('the retried call', () => {
    it('before the decision: the same answer again, the same URL, no new transaction; audited as pending', async () => {
      const first = await held({ amount: 500, to: 'Erin' });
      const creates = as.callsTo('create').length;
      const again = await held({ to: 'Erin', amount: 500 });
      assert.deepEqual(again.elicitation, first.elicitation);
      assert.equal(as.callsTo('create').length, creates);
      assert.equal(as.callsTo('use').at(-1)!.path, `/transactions/${first.elicitation.elicitationId}/use`);
      const event = await eventOf(again.res);
      assert.deepEqual([event.approval, event.approval_id, event.reason], ['pending', first.elicitation.elicitationId, `approval required: transaction ${first.elicitation.elicitationId} still pending`]);
    });

    it('approved: the retry is forwarded exactly once, with the approval id in the audit; the same call again needs a new approval', async () => {
      const { elicitation } = await held({ amount: 250.5, to: 'Frank' });
      as.approve(elicitation.elicitationId);
      const res = await call({ amount: 250.5, to: 'Frank' });
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json!.result, { content: [{ type: 'text', text: JSON.stringify({ amount: 250.5, to: 'Frank' }) }] });
      assert.equal(forwarded().length, 1, 'exactly one call reached the upstream');
      assert.equal(as.status(elicitation.elicitationId), 'used');
      const use = as.callsTo('use').at(-1)!;
      assert.equal(use.client, 'gateway');
      assert.deepEqual(Object.keys(use.body).sort(), ['arguments_hash', 'subject_token']);
      assert.equal(use.body.arguments_hash, await actionHash('transfer', { amount: 250.5, to: 'Frank' }, ['amount', 'to']));
      const event = await eventOf(res);
      assert.deepEqual([event.decision, event.approval, event.approval_id, event.status, event.rejection], ['allow', 'granted', elicitation.elicitationId, 200, undefined]);

      const replay = await held({ amount: 250.5, to: 'Frank' });
      assert.notEqual(replay.elicitation.elicitationId, elicitation.elicitationId, 'a new transaction');
      assert.equal(forwarded().length, 1, 'the replay was not forwarded');
      assert.equal((await eventOf(replay.res)).approval, 'required');
    });

    it('another amount is another action: a new approval, not the approved one', async () => {
      const { elicitation } = await held({ amount: 600, to: 'Gina' });
      as.approve(elicitation.elicitationId);
      const other = await held({ amount: 601, to: 'Gina' });
      assert.notEqual(other.elicitation.elicitationId, elicitation.elicitationId);
      assert.equal(as.status(elicitation.elicitationId), 'approved', 'the approval is still unspent');
      // Unbound arguments may differ (binds: amount, to).
      const res = await call({ amount: 600, to: 'Gina', memo: 'changed' });
      assert.equal(res.status, 200, res.text);
      assert.equal((await eventOf(res)).approval_id, elicitation.elicitationId);
    });

    it('denied: 403, the audit says approval_denied; the next call starts a new transaction', async () => {
      const { elicitation } = await held({ amount: 700, to: 'Hank' });
      as.deny(elicitation.elicitationId);
      const res = await call({ amount: 700, to: 'Hank' });
      assert.equal(res.status, 403, res.text);
      assert.deepEqual(res.json!.error, { code: -32003, message: 'the approval of this call was denied: the call was not made; make it again to ask for a new approval' });
      const event = await eventOf(res);
      assert.deepEqual([event.decision, event.rejection, event.approval, event.approval_id], ['deny', 'approval_denied', 'refused', elicitation.elicitationId]);
      assert.match(event.reason as string, new RegExp(`^transaction ${elicitation.elicitationId}: transaction_denied`));
      const next = await held({ amount: 700, to: 'Hank' });
      assert.notEqual(next.elicitation.elicitationId, elicitation.elicitationId);
      assert.equal(forwarded().filter((r) => r.body.includes('Hank')).length, 0);
    });

    it('expired: 403 approval_expired, even if it was approved', async () => {
      const { elicitation } = await held({ amount: 800, to: 'Ivy' });
      as.approve(elicitation.elicitationId);
      as.expire(elicitation.elicitationId);
      const res = await call({ amount: 800, to: 'Ivy' });
      assert.equal(res.status, 403, res.text);
      assert.equal((res.json!.error as { code: number }).code, -32003);
      assert.match((res.json!.error as { message: string }).message, /expired/);
      const event = await eventOf(res);
      assert.deepEqual([event.rejection, event.approval], ['approval_expired', 'refused']);
      assert.equal(forwarded().filter((r) => r.body.includes('Ivy')).length, 0);
    });

    it('through another agent chain: not the approved call (a new transaction); with its requestState, refused by the AS as a mismatch', async () => {
      const first = await call({ amount: 900, to: 'Jack' }, V2026('transfer'));
      const result = first.json!.result as { inputRequests: { approval: { params: Elicitation } }; requestState: string };
      const id = result.inputRequests.approval.params.elicitationId;
      as.approve(id);
      const otherChain = await token({ act: { sub: 'other-agent', client_id: 'other-agent', act: { sub: 'sample-agent' } } });
      const fresh = await held({ amount: 900, to: 'Jack' }, { bearer: otherChain });
      assert.notEqual(fresh.elicitation.elicitationId, id);
      const withState = await call({ amount: 900, to: 'Jack' }, V2026('transfer'), { bearer: otherChain, extra: { requestState: result.requestState, inputResponses: { approval: { action: 'accept' } } } });
      assert.equal(withState.status, 403, withState.text);
      const event = await eventOf(withState);
      assert.deepEqual([event.rejection, event.approval, event.approval_id], ['approval_mismatch', 'refused', id]);
      assert.equal(forwarded().filter((r) => r.body.includes('Jack')).length, 0);
    });

    it('another user\'s approval: a new transaction for Bob, and Alice\'s requestState is refused as invalid for him', async () => {
      const first = await call({ amount: 950, to: 'Kim' }, V2026('transfer'));
      const result = first.json!.result as { inputRequests: { approval: { params: Elicitation } }; requestState: string };
      as.approve(result.inputRequests.approval.params.elicitationId);
      const bob = await token({ sub: 'bob' });
      const res = await call({ amount: 950, to: 'Kim' }, V2026('transfer'), { bearer: bob, extra: { requestState: result.requestState } });
      assert.equal(res.status, 403, res.text);
      assert.equal((await eventOf(res)).rejection, 'approval_state_invalid');
      const fresh = await held({ amount: 950, to: 'Kim' }, { bearer: bob });
      assert.notEqual(fresh.elicitation.elicitationId, result.inputRequests.approval.params.elicitationId);
      assert.equal(as.status(result.inputRequests.approval.params.elicitationId), 'approved', 'still Alice\'s to use');
    });

    it('two identical first calls at once: both are sent to the same approval page (the first remembered), so approving it lets the retry through', async () => {
      const args = { amount: 640, to: 'Twin' };
      const [one, two] = await Promise.all([held(args), held(args)]);
      assert.equal(one.elicitation.url, two.elicitation.url, 'one page for the one call');
      as.approve(one.elicitation.elicitationId);
      const retry = await call(args);
      assert.equal(retry.status, 200, retry.text);
      assert.ok(retry.json!.result, retry.text);
      assert.equal(forwarded().filter((r) => JSON.parse(r.body).params.arguments.to === 'Twin').length, 1);
    });
  });

  describe('2026-07-28: the retry echoes requestState', () => {
    const first = async (args: Record<string, unknown>) => {
      const res = await call(args, V2026('transfer'));
      const result = res.json!.result as { inputRequests: { approval: { params: Elicitation } }; requestState: string };
      return { id: result.inputRequests.approval.params.elicitationId, state: result.requestState };
    };

    it('approved: forwarded once, without the gateway\'s requestState and input response (other input responses pass)', async () => {
      const { id, state } = await first({ amount: 1000, to: 'Lea' });
      const pending = await call({ amount: 1000, to: 'Lea' }, V2026('transfer'), { extra: { requestState: state, inputResponses: { approval: { action: 'accept' } } } });
      assert.equal((pending.json!.result as { resultType: string }).resultType, 'input_required', 'still pending: asked again');
      assert.equal((pending.json!.result as { inputRequests: { approval: { params: Elicitation } } }).inputRequests.approval.params.elicitationId, id);
      as.approve(id);
      const res = await call({ amount: 1000, to: 'Lea' }, V2026('transfer'), { extra: { requestState: state, inputResponses: { approval: { action: 'accept' }, other: { x: 1 } } } });
      assert.equal(res.status, 200, res.text);
      const sent = forwarded().filter((r) => r.body.includes('Lea'));
      assert.equal(sent.length, 1);
      const params = JSON.parse(sent[0]!.body).params as Record<string, unknown>;
      assert.deepEqual(params, { name: 'transfer', arguments: { amount: 1000, to: 'Lea' }, inputResponses: { other: { x: 1 } } });
      const event = await eventOf(res);
      assert.deepEqual([event.approval, event.approval_id], ['granted', id]);
      const replay = await call({ amount: 1000, to: 'Lea' }, V2026('transfer'), { extra: { requestState: state } });
      assert.equal(replay.status, 403);
      assert.equal((await eventOf(replay)).rejection, 'approval_used');
    });

    it('a different amount with the approved call\'s state: refused as a mismatch (the hash is the AS\'s to compare)', async () => {
      const { id, state } = await first({ amount: 1100, to: 'Max' });
      as.approve(id);
      const res = await call({ amount: 1, to: 'Max' }, V2026('transfer'), { extra: { requestState: state } });
      // amount 1 needs no approval at all: the state is then not looked at, and the call goes through unheld.
      assert.equal(res.status, 200);
      const bigger = await call({ amount: 1101, to: 'Max' }, V2026('transfer'), { extra: { requestState: state } });
      assert.equal(bigger.status, 403, bigger.text);
      const event = await eventOf(bigger);
      assert.deepEqual([event.rejection, event.approval_id], ['approval_mismatch', id]);
      assert.equal(as.status(id), 'approved');
    });

    it('a tampered requestState is refused: 403, approval_state_invalid, nothing asked of the AS or forwarded', async () => {
      const { id, state } = await first({ amount: 1200, to: 'Ned' });
      as.approve(id);
      const uses = as.callsTo('use').length;
      const [prefix, payload, mac] = state.split('.');
      const forged = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
      const tampered = [
        `${prefix}.${payload}.${mac!.slice(0, -2)}${mac!.endsWith('AA') ? 'BB' : 'AA'}`,
        `${prefix}.${Buffer.from(JSON.stringify({ ...forged, t: 'other' })).toString('base64url')}.${mac}`,
        `${prefix}.${payload}`,
        `${prefix}.${payload}.${mac}.x`,
      ];
      for (const requestState of tampered) {
        const res = await call({ amount: 1200, to: 'Ned' }, V2026('transfer'), { extra: { requestState } });
        assert.equal(res.status, 403, res.text);
        assert.deepEqual(res.json!.error, { code: -32003, message: 'the requestState of this call is not valid: make the call again without it' });
        const event = await eventOf(res);
        assert.deepEqual([event.decision, event.rejection, event.approval], ['deny', 'approval_state_invalid', 'refused']);
      }
      assert.equal(as.callsTo('use').length, uses);
      assert.equal(forwarded().filter((r) => r.body.includes('Ned')).length, 0);
      assert.equal(as.status(id), 'approved');
    });
  });

  it('`when` false (amount ≤ 100): forwarded without approval, no transaction', async () => {
    const creates = as.callsTo('create').length;
    const res = await call({ amount: 100, to: 'Olga' });
    assert.equal(res.status, 200, res.text);
    assert.equal(forwarded().filter((r) => r.body.includes('Olga')).length, 1);
    assert.equal(as.callsTo('create').length, creates);
    const event = await eventOf(res);
    assert.equal(event.approval, undefined);
    assert.equal(event.decision, 'allow');
  });

  it('`when` that fails (no amount): approval required (fail closed)', async () => {
    const { elicitation } = await held({ to: 'Pia' });
    assert.equal(elicitation.message, 'Transfer (none) EUR to Pia');
  });

  it('retry_check off: an approved retry is not let through by the gateway; it starts a new transaction', async () => {
    const first = await held({ amount: 250, to: 'Quinn' }, { path: '/nocheck' });
    as.approve(first.elicitation.elicitationId);
    const uses = as.callsTo('use').length;
    const again = await held({ amount: 250, to: 'Quinn' }, { path: '/nocheck' });
    assert.notEqual(again.elicitation.elicitationId, first.elicitation.elicitationId);
    assert.equal(as.callsTo('use').length, uses, '/use is not called');
  });

  it('hidden characters in the arguments are shown as \\u{…} in the summary and the details sent to the AS; the hash is of the arguments as sent', async () => {
    const args = { amount: 270, to: '\u200bBob\u2060' };
    const { elicitation } = await held(args);
    assert.equal(elicitation.message, 'Transfer 270 EUR to \\u{200B}Bob\\u{2060}');
    const sent = as.callsTo('create').at(-1)!.body;
    assert.equal(sent.summary, 'Transfer 270 EUR to \\u{200B}Bob\\u{2060}');
    assert.deepEqual(sent.details, { amount: 270, to: '\\u{200B}Bob\\u{2060}' });
    assert.equal(sent.arguments_hash, await actionHash('transfer', args, ['amount', 'to']));
    assert.notEqual(sent.arguments_hash, await actionHash('transfer', { amount: 270, to: 'Bob' }, ['amount', 'to']));
  });

  describe('the AS unreachable or failing: 503 with Retry-After, nothing forwarded (fail closed)', () => {
    const told = { reset: 'connection dropped', error: '500', html: 'a 200 HTML page', redirect: 'a redirect to a 200 HTML page', 'other-id': 'an approval_uri on another origin' } as const;
    for (const mode of ['reset', 'error', 'html', 'redirect', 'other-id'] as const) {
      it(`${told[mode]}: creating the transaction`, async () => {
        as.setMode(mode);
        try {
          const before = forwarded().length;
          const res = await call({ amount: 5000, to: `Rita-${mode}` });
          assert.equal(res.status, 503, res.text);
          assert.equal(res.headers.get('retry-after'), '5');
          assert.equal((res.json!.error as { code: number }).code, -32603);
          assert.equal(forwarded().length, before);
          const event = await eventOf(res);
          assert.deepEqual([event.decision, event.rejection], ['error', 'approval_unavailable']);
        } finally {
          as.setMode('up');
        }
      });
    }
    for (const mode of ['html', 'redirect', 'other-id'] as const) {
      it(`checking an approved retry, /use answering ${mode === 'other-id' ? '200 "used" for another transaction' : told[mode]}: 503, nothing forwarded, the approval unspent`, async () => {
        const to = `Uma-${mode}`;
        const { elicitation } = await held({ amount: 5200, to });
        as.approve(elicitation.elicitationId);
        as.setMode(mode);
        try {
          const res = await call({ amount: 5200, to });
          assert.equal(res.status, 503, res.text);
          assert.equal(res.headers.get('retry-after'), '5');
          assert.equal((res.json!.error as { code: number }).code, -32603);
          const event = await eventOf(res);
          assert.deepEqual([event.decision, event.rejection], ['error', 'approval_unavailable']);
          assert.match(event.reason as string, mode === 'redirect' ? /\/use: fetch failed \(unexpected redirect\)/ : new RegExp(`/use answered 200 without the used transaction ${elicitation.elicitationId} for this arguments_hash`));
        } finally {
          as.setMode('up');
        }
        assert.equal(forwarded().filter((r) => r.body.includes(to)).length, 0, 'nothing forwarded');
        assert.equal(as.status(elicitation.elicitationId), 'approved', 'the approval is not spent');
      });
    }
    it('checking an approved retry: 503, and the approval stays unspent for the next retry', async () => {
      const { elicitation } = await held({ amount: 5100, to: 'Sam' });
      as.approve(elicitation.elicitationId);
      as.setMode('reset');
      try {
        const res = await call({ amount: 5100, to: 'Sam' });
        assert.equal(res.status, 503, res.text);
        assert.equal((await eventOf(res)).rejection, 'approval_unavailable');
      } finally {
        as.setMode('up');
      }
      assert.equal(forwarded().filter((r) => r.body.includes('Sam')).length, 0);
      const res = await call({ amount: 5100, to: 'Sam' });
      assert.equal(res.status, 200, res.text);
      assert.equal(forwarded().filter((r) => r.body.includes('Sam')).length, 1);
    });
  });

  it("the AS refusing to create one (here: the gateway client's secret is wrong): 403 approval_not_started, nothing forwarded", async () => {
    const before = forwarded().length;
    const res = await call({ amount: 260, to: 'Tom' }, V2025, { path: '/badclient' });
    assert.equal(res.status, 403, res.text);
    assert.deepEqual(res.json!.error, { code: -32003, message: 'this call needs an approval, and the authorization server refused to start one' });
    const event = await eventOf(res);
    assert.deepEqual([event.decision, event.rejection], ['deny', 'approval_not_started']);
    assert.match(event.reason as string, /401 invalid_client/);
    assert.equal(forwarded().length, before);
  });

  it('counts approvals in the metrics: required, pending, granted, refused', async () => {
    const text = await gateway.metrics.registry.metrics();
    for (const outcome of ['required', 'pending', 'granted', 'refused']) {
      assert.match(text, new RegExp(`mandate_gateway_approvals_total\\{route="/mcp",outcome="${outcome}"\\} [1-9]`));
    }
    assert.match(text, /mandate_gateway_rejections_total\{route="\/mcp",rejection="approval_required"\} [1-9]/);
  });
});

describe('gateway configuration: approvals', () => {
  const route = (extra: Record<string, unknown>) => ({ path: '/mcp', upstream: 'http://localhost:8000/', resource: 'http://localhost:8080/mcp', authorization_servers: ['http://localhost:9000'], ...extra });

  it('a tool that needs approval on a route without an approvals block is refused at load, with a clear message', () => {
    assert.throws(
      () => parseConfig(gatewayConfigSchema, { routes: [route({ tools: { transfer: { approval: 'required' } } })] }, 'gateway.yaml'),
      /routes\.0\.approvals: tool transfer needs approval \(tools\.transfer\.approval\) but the route has no approvals block: add approvals\.client_id and approvals\.client_secret_env/,
    );
  });

  it('defaults: when true, 300 s, all arguments, retry_check off; lifetime at most 900 s; CEL compiled at load', () => {
    const config = gatewayConfigSchema.parse({ routes: [route({ tools: { t: { approval: {} } }, approvals: { client_id: 'gateway', client_secret_env: 'S' } })] });
    assert.deepEqual(mcpRoute(config.routes[0]!).tools.t!.approval, { when: 'true', lifetime_seconds: 300 });
    assert.equal(mcpRoute(config.routes[0]!).approvals!.retry_check, false);
    assert.equal(gatewayConfigSchema.safeParse({ routes: [route({ tools: { t: { approval: { lifetime_seconds: 901 } } }, approvals: { client_id: 'g', client_secret_env: 'S' } })] }).success, false);
    assert.equal(gatewayConfigSchema.safeParse({ routes: [route({ tools: { t: { approval: { summary: 'x'.repeat(201) } } }, approvals: { client_id: 'g', client_secret_env: 'S' } })] }).success, false);
    const bad = gatewayConfigSchema.parse({ routes: [route({ tools: { t: { approval: { when: 'args.amount >' } } }, approvals: { client_id: 'g', client_secret_env: 'S' } })] });
    assert.throws(() => compileRoute(bad.routes[0]!, 0, { env: { S: 'x' } }), /routes\[0\] \(\/mcp\) tools\.t\.approval\.when: invalid CEL expression/);
    assert.throws(() => compileRoute(config.routes[0]!, 0, { env: {} }), /routes\[0\] \(\/mcp\) approvals: environment variable S is not set/);
  });
});
