/**
 * The gateway as a black box, on the Node gateway and on the Worker in workerd (issue 16): tool
 * rules (scopes, CEL with a reason, unlisted tools, the filtered tools/list), rate limits (429 with
 * Retry-After) and the fields of each audit event. One gateway per target for the whole file.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { startBlackboxUpstream } from '../../helpers/blackbox-upstream.ts';
import { listedTools, mcpPost, startFakeIssuer, toolCall } from '../../helpers/gateway.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type AuditEvent, type TargetGateway } from '../../helpers/gateway-targets.ts';

const CHAIN_REASON = 'transfers are not allowed through a chain of delegations';
const INITIALIZE = { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'blackbox', version: '1' } } };

for (const target of targets) {
  describe(`black box [${target}]: tool rules, rate limits, audit events`, onTarget(target), () => {
    let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
    let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
    let gateway: TargetGateway;
    let resource: string;
    let metadataUrl: string;

    before(async () => {
      issuer = await startFakeIssuer();
      upstream = await startBlackboxUpstream();
      gateway = await startGatewayOn(target, (origin) => [
        {
          path: '/mcp',
          upstream: upstream.url,
          resource: `${origin}/mcp`,
          authorization_servers: [issuer.issuer],
          scopes: ['banking:read'],
          // `stream` is not listed: unlisted tools are denied (the default).
          tools: {
            ...listedTools(['read_balance', 'echo', 'fails', 'rpc_error']),
            transfer: { scopes: ['banking:transfer'], allow: 'size(act) <= 1', reason: CHAIN_REASON },
          },
          rate_limits: [{ name: 'per-subject', key: ['subject'], limit: 3, window_seconds: 60, tools: ['read_balance'] }],
        },
      ]);
      resource = `${gateway.url}/mcp`;
      metadataUrl = `${gateway.url}/.well-known/oauth-protected-resource/mcp`;
    });
    after(async () => {
      await gateway?.stop();
      await upstream?.close();
      await issuer?.close();
    });

    const bearer = async (claims: Record<string, unknown> = {}) => ({ authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', scope: 'banking:read', ...claims })}` });

    describe('tool rules', () => {
      it('a tool that needs a scope the token lacks: 403 insufficient_scope naming it', async () => {
        const count = upstream.requests.length;
        const res = await mcpPost(resource, toolCall('transfer', { amount: 5 }), await bearer());
        await assertRefused(gateway, res, { status: 403, code: -32003, rejection: 'insufficient_scope', reason: 'missing scope banking:transfer' });
        assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl}", scope="banking:read banking:transfer", error="insufficient_scope"`);
        assert.equal(upstream.requests.length, count);
      });

      it('a CEL rule allows a direct delegation and refuses a chain, with the configured reason', async () => {
        const scope = 'banking:read banking:transfer';
        const direct = await mcpPost(resource, toolCall('transfer', { amount: 5 }), await bearer({ scope, act: { sub: 'agent-1' } }));
        assert.equal(direct.status, 200, direct.text);
        const count = upstream.requests.length;
        const chained = await mcpPost(resource, toolCall('transfer', { amount: 5 }, 9), await bearer({ scope, act: { sub: 'mcp-server', act: { sub: 'agent-1' } } }));
        await assertRefused(gateway, chained, { status: 403, code: -32003, rejection: 'tool_denied', reason: CHAIN_REASON });
        assert.equal(chained.json!.id, 9);
        assert.equal(upstream.requests.length, count);
      });

      it('an unlisted tool is refused as not offered (listed: false)', async () => {
        const res = await mcpPost(resource, toolCall('stream'), await bearer());
        await assertRefused(gateway, res, { status: 403, code: -32003, rejection: 'tool_denied', reason: 'tool stream has no rule and unlisted tools are denied' });
        assert.deepEqual((res.json!.error as { data?: unknown }).data, { tool: 'stream', listed: false });
      });

      it('a tool name that imitates a listed one is refused as such', async () => {
        const res = await mcpPost(resource, toolCall('Transfer'), await bearer());
        await assertRefused(gateway, res, { status: 403, code: -32003, rejection: 'tool_spelling', reason: /differs from the configured tool transfer/ });
      });

      it('tools/list shows only the tools this caller may call, in a JSON answer or in SSE', async () => {
        const res = await mcpPost(resource, { jsonrpc: '2.0', id: 4, method: 'tools/list' }, await bearer());
        assert.equal(res.status, 200, res.text);
        const names = (res.json!.result as { tools: { name: string }[] }).tools.map((tool) => tool.name).sort();
        assert.deepEqual(names, ['echo', 'fails', 'read_balance', 'rpc_error'], 'unlisted tools and transfer (missing scope) are hidden');
        const sse = await mcpPost(resource, { jsonrpc: '2.0', id: 5, method: 'tools/list' }, { ...(await bearer()), 'x-answer': 'sse' });
        assert.equal(sse.status, 200, sse.text);
        const data = /^data: (.*)$/m.exec(sse.text)?.[1];
        assert.ok(data, sse.text);
        const listed = (JSON.parse(data) as { result: { tools: { name: string }[] } }).result.tools.map((tool) => tool.name).sort();
        assert.deepEqual(listed, ['echo', 'fails', 'read_balance', 'rpc_error']);
      });
    });

    describe('rate limits', () => {
      it('past 3 calls a minute for one subject: 429 with Retry-After, audited; another subject and another tool are not counted', async () => {
        const carol = await bearer({ sub: 'carol' });
        for (let i = 1; i <= 3; i++) assert.equal((await mcpPost(resource, toolCall('read_balance', {}, i), carol)).status, 200);
        const count = upstream.requests.length;
        const res = await mcpPost(resource, toolCall('read_balance', {}, 4), carol);
        await assertRefused(gateway, res, { status: 429, code: -32029, rejection: 'rate_limited', reason: 'limit per-subject: 3 per 60 s' });
        const retryAfter = Number(res.headers.get('retry-after'));
        assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After ${res.headers.get('retry-after')}`);
        assert.equal(upstream.requests.length, count);
        assert.equal((await mcpPost(resource, toolCall('echo', {}, 5), carol)).status, 200, 'the limit counts read_balance only');
        assert.equal((await mcpPost(resource, toolCall('read_balance', {}, 6), await bearer({ sub: 'dave' }))).status, 200, 'another subject has its own budget');
      });
    });

    describe('audit events', () => {
      let headers: Record<string, string>;
      let session: string;
      before(async () => {
        const token = await issuer.sign({ sub: 'erin', aud: resource, client_id: 'sample-agent', scope: 'banking:read', act: { sub: 'sample-agent', client_id: 'sample-agent' } });
        const opened = await mcpPost(resource, INITIALIZE, { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-11-25' });
        assert.equal(opened.status, 200, opened.text);
        session = opened.headers.get('mcp-session-id')!;
        headers = { authorization: `Bearer ${token}`, 'mcp-protocol-version': '2025-11-25', 'mcp-session-id': session };
      });

      const eventOf = (res: { headers: Headers }) => gateway.waitForAudit((e) => e.request_id === res.headers.get('x-request-id'));
      const common = (event: AuditEvent) => {
        assert.match(event.time as string, /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
        assert.match(event.request_id as string, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
        assert.equal(event.route, '/mcp');
        assert.equal(event.http_method, 'POST');
        assert.equal(event.protocol_version, '2025-11-25');
        assert.equal(event.session, session);
        assert.equal(event.kind, 'request');
        assert.equal(event.method, 'tools/call');
        assert.equal(event.sub, 'erin');
        assert.equal(event.client_id, 'sample-agent');
        assert.deepEqual(event.act, [{ sub: 'sample-agent', client_id: 'sample-agent' }]);
        assert.equal(event.scope, 'banking:read');
        assert.equal(typeof event.latency_ms, 'number');
        assert.ok((event.latency_ms as number) >= 0);
        assert.equal(event.arguments, undefined, 'arguments are never written');
      };

      it('an allowed call: who, which tool, for whom, the arguments hash (never the arguments), the outcome', async () => {
        const args = { to: 'bob', note: 'lunch' };
        const res = await mcpPost(resource, toolCall('echo', args, 101), headers);
        assert.equal(res.status, 200, res.text);
        const event = await eventOf(res);
        common(event);
        assert.deepEqual(Object.keys(event).sort(), ['act', 'args_sha256', 'client_id', 'decision', 'http_method', 'jsonrpc_id', 'kind', 'latency_ms', 'method', 'outcome', 'protocol_version', 'request_id', 'route', 'scope', 'session', 'status', 'sub', 'time', 'tool', 'upstream_latency_ms', 'upstream_status']);
        assert.equal(event.jsonrpc_id, 101);
        assert.equal(event.tool, 'echo');
        assert.equal(event.args_sha256, createHash('sha256').update(JSON.stringify(args)).digest('hex'));
        assert.equal(event.decision, 'allow');
        assert.equal(event.status, 200);
        assert.equal(event.upstream_status, 200);
        assert.equal(event.outcome, 'result');
        assert.equal(typeof event.upstream_latency_ms, 'number');
      });

      it('a refused call: the decision, the rejection and the reason, no upstream fields', async () => {
        const res = await mcpPost(resource, toolCall('transfer', { amount: 1 }, 102), headers);
        const event = await assertRefused(gateway, res, { status: 403, code: -32003, rejection: 'insufficient_scope', reason: 'missing scope banking:transfer' });
        common(event);
        assert.equal(event.tool, 'transfer');
        assert.equal(event.args_sha256, createHash('sha256').update(JSON.stringify({ amount: 1 })).digest('hex'));
        assert.equal(event.upstream_status, undefined);
        assert.equal(event.outcome, undefined);
      });

      it('a tool result with isError, and a JSON-RPC error with its code', async () => {
        const failed = await eventOf(await mcpPost(resource, toolCall('fails', {}, 103), headers));
        common(failed);
        assert.equal(failed.decision, 'allow');
        assert.equal(failed.outcome, 'result');
        assert.equal(failed.is_error, true);
        const rpcError = await eventOf(await mcpPost(resource, toolCall('rpc_error', {}, 104), headers));
        common(rpcError);
        assert.equal(rpcError.outcome, 'error');
        assert.equal(rpcError.jsonrpc_error, -32602);
      });

      it('a refusal before authentication: no caller fields', async () => {
        const res = await mcpPost(resource, toolCall('echo', {}, 105), { 'mcp-protocol-version': '2025-11-25' });
        const event = await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'no_token', reason: 'no Authorization header' });
        assert.equal(event.sub, undefined);
        assert.equal(event.client_id, undefined);
        assert.equal(event.tool, 'echo');
      });

      it('a notification: kind notification, 202 from the upstream', async () => {
        const res = await mcpPost(resource, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers);
        assert.equal(res.status, 202, res.text);
        const event = await eventOf(res);
        assert.equal(event.kind, 'notification');
        assert.equal(event.method, 'notifications/initialized');
        assert.equal(event.status, 202);
        assert.equal(event.decision, 'allow');
      });
    });
  });
}
