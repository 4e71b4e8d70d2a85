/**
 * Several MCP servers behind one route on both targets (issue 18 part 2): the Node gateway and the
 * Worker in workerd (the session's upstream sessions in its Durable Object). The banking example
 * and server-everything behind /mcp, driven by the MCP SDK client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { startBankingServer, type BankingServer } from '../../examples/banking/server.ts';
import { startEverything } from '../helpers/everything.ts';
import { mcpPost, startFakeIssuer, toolCall } from '../helpers/gateway.ts';
import { onTarget, startGatewayOn, targets, type TargetGateway } from '../helpers/gateway-targets.ts';

for (const target of targets) {
  describe(`several MCP servers behind one route [${target}]`, onTarget(target), () => {
    let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
    let everything: Awaited<ReturnType<typeof startEverything>>;
    let bank: BankingServer;
    let gateway: TargetGateway;
    let resource: string;

    before(async () => {
      issuer = await startFakeIssuer();
      everything = await startEverything();
      bank = await startBankingServer({ host: '127.0.0.1', port: 0 });
      gateway = await startGatewayOn(target, (origin) => [
        {
          path: '/mcp',
          upstreams: [
            { name: 'bank', url: bank.url },
            { name: 'every', url: everything.url },
          ],
          resource: `${origin}/mcp`,
          authorization_servers: [issuer.issuer],
          identity_headers: true,
          tools: { bank__read_balance: {}, 'every__get-sum': {}, 'every__trigger-long-running-operation': {}, 'every__trigger-elicitation-request': {}, 'every__trigger-sampling-request': {} },
        },
      ]);
      resource = `${gateway.url}/mcp`;
    });
    after(async () => {
      await gateway?.stop();
      await bank?.close();
      await everything?.close();
      await issuer?.close();
    });

    it('the SDK client lists and calls both servers in one session; progress streams; DELETE ends it', async () => {
      const token = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'mux-targets' });
      const transport = new StreamableHTTPClientTransport(new URL(resource), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
      const client = new Client({ name: 'mux-targets', version: '1.0.0' }, { capabilities: { elicitation: {}, sampling: {} } });
      const asked: unknown[] = [];
      client.setRequestHandler(ElicitRequestSchema, async (_request, extra) => {
        asked.push(extra.requestId);
        return { action: 'accept', content: { name: 'Bob' } };
      });
      client.setRequestHandler(CreateMessageRequestSchema, async () => ({ model: 'test-model', role: 'assistant', content: { type: 'text', text: 'sampled reply' } }));
      await client.connect(transport);
      const session = transport.sessionId!;
      try {
        assert.ok(session);
        const { tools } = await client.listTools();
        assert.deepEqual(tools.map((tool) => tool.name).sort(), ['bank__read_balance', 'every__get-sum', 'every__trigger-elicitation-request', 'every__trigger-long-running-operation', 'every__trigger-sampling-request']);
        assert.match(JSON.stringify((await client.callTool({ name: 'bank__read_balance', arguments: {} })).content), /balance/);
        assert.match(JSON.stringify((await client.callTool({ name: 'every__get-sum', arguments: { a: 20, b: 22 } })).content), /42/);
        const progress: number[] = [];
        await client.callTool({ name: 'every__trigger-long-running-operation', arguments: { duration: 1, steps: 2 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
        assert.deepEqual(progress, [1, 2]);
        // server-everything's own requests in the call's stream: renamed, answered by the client, taken back to it.
        const elicited = await client.callTool({ name: 'every__trigger-elicitation-request', arguments: {} });
        assert.match(JSON.stringify(elicited.content), /Bob/);
        assert.match(String(asked[0]), /^mandate\+every:/, 'the client saw the gateway id of the request');
        const sampled = await client.callTool({ name: 'every__trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 10 } });
        assert.match(JSON.stringify(sampled.content), /sampled reply/);
        await transport.terminateSession();
      } finally {
        await client.close();
      }
      const answered = await gateway.waitForAudit((event) => event.kind === 'response' && event.status === 202);
      assert.equal(answered.upstream, 'every');
      const sum = await gateway.waitForAudit((event) => event.tool === 'every__get-sum');
      assert.equal(sum.upstream, 'every');
      assert.equal(sum.outcome, 'result');
      const ended = await mcpPost(resource, toolCall('every__get-sum', { a: 1, b: 2 }, 9), { authorization: `Bearer ${token}`, 'mcp-session-id': session, 'mcp-protocol-version': '2025-11-25' });
      assert.equal(ended.status, 404, 'the ended session is refused');
      assert.equal((ended.json!.error as { code: number }).code, -32001);
      const refused = await gateway.waitForAudit((event) => event.jsonrpc_id === 9);
      assert.equal(refused.rejection, 'unknown_session');
    });
  });
}
