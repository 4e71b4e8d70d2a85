import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startBankingServer, type BankingServer } from '../../examples/banking/server.ts';
import { startTodoApi, type TodoApi } from '../../examples/todo-api/server.ts';
import { startFakeIssuer, startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const textOf = (result: unknown) => (result as { content: { text: string }[] }).content[0]!.text;

describe('reference resources', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  before(async () => {
    issuer = await startFakeIssuer();
  });
  after(async () => issuer.close());

  describe('Todo API', () => {
    let api: TodoApi;
    const resource = 'http://todo-api.test';
    before(async () => {
      api = await startTodoApi({ issuer: issuer.issuer, resource, host: '127.0.0.1', port: 0 });
    });
    after(async () => api.close());
    const call = async (method: string, path: string, claims: Record<string, unknown> | undefined, body?: unknown) => {
      const headers: Record<string, string> = body ? { 'content-type': 'application/json' } : {};
      if (claims) headers.authorization = `Bearer ${await issuer.sign({ aud: resource, ...claims })}`;
      const res = await fetch(`${api.url}${path}`, { method, headers, body: body ? JSON.stringify(body) : undefined });
      return { status: res.status, headers: res.headers, json: res.status === 204 ? undefined : ((await res.json()) as Record<string, unknown>) };
    };
    const writer = { sub: 'alice', client_id: 'todo-mcp', scope: 'todo_api:read todo_api:write', act: { sub: 'todo-mcp' } };

    it('401 with WWW-Authenticate and resource metadata without a token; 403 insufficient_scope without the scope', async () => {
      const none = await call('GET', '/todos', undefined);
      assert.equal(none.status, 401);
      assert.equal(none.headers.get('www-authenticate'), `Bearer resource_metadata="${resource}/.well-known/oauth-protected-resource", scope="todo_api:read"`);
      const readOnly = await call('POST', '/todos', { sub: 'alice', scope: 'todo_api:read' }, { title: 'x' });
      assert.equal(readOnly.status, 403);
      assert.match(readOnly.headers.get('www-authenticate')!, /error="insufficient_scope"/);
      const otherAudience = await fetch(`${api.url}/todos`, { headers: { authorization: `Bearer ${await issuer.sign({ aud: 'http://elsewhere.test', sub: 'alice', scope: 'todo_api:read' })}` } });
      assert.equal(otherAudience.status, 401);
      const metadata = (await (await fetch(`${api.url}/.well-known/oauth-protected-resource`)).json()) as Record<string, unknown>;
      assert.equal(metadata.resource, resource);
    });

    it("keeps each user's todos apart and records who acted for the user with each change", async () => {
      const created = await call('POST', '/todos', writer, { title: 'buy milk' });
      assert.equal(created.status, 201);
      const id = created.json!.id as number;
      const done = await call('PATCH', `/todos/${id}`, { ...writer, act: { sub: 'todo-mcp', act: { sub: 'sample-agent' } } }, { done: true });
      assert.equal(done.json!.done, true);
      assert.deepEqual((done.json!.history as { action: string; act: unknown; client_id: string }[]).map((h) => [h.action, h.act, h.client_id]), [
        ['created', [{ sub: 'todo-mcp' }], 'todo-mcp'],
        ['completed', [{ sub: 'todo-mcp' }, { sub: 'sample-agent' }], 'todo-mcp'],
      ]);
      assert.equal(((await call('GET', '/todos', { sub: 'bob', scope: 'todo_api:read' })).json!.todos as unknown[]).length, 0, "bob does not see alice's todos");
      assert.equal((await call('PATCH', `/todos/${id}`, { sub: 'bob', scope: 'todo_api:write' }, { done: false })).status, 404);
      assert.equal((await call('POST', '/todos', writer, { title: '' })).status, 400);
      assert.equal((await call('DELETE', `/todos/${id}`, writer)).status, 204);
      assert.equal(((await call('GET', '/todos', writer)).json!.todos as unknown[]).length, 0);
    });
  });

  describe('banking MCP server behind the gateway', () => {
    let bank: BankingServer;
    let gateway: TestGateway;
    before(async () => {
      bank = await startBankingServer({ host: '127.0.0.1', port: 0 });
      gateway = await startTestGateway((url) => [
        {
          path: '/mcp',
          upstream: bank.url,
          rewrite: '/',
          resource: `${url}/mcp`,
          authorization_servers: [issuer.issuer],
          identity_headers: true,
          unlisted_tools: 'deny',
          tools: { read_balance: { scopes: ['banking:read'] }, list_transactions: { scopes: ['banking:read'] }, transfer: { scopes: ['banking:transfer'] } },
        },
      ]);
    });
    after(async () => {
      await gateway.close();
      await bank.close();
    });

    const connect = async (sub: string, scope: string) => {
      const token = await issuer.sign({ sub, aud: `${gateway.url}/mcp`, client_id: 'sample-agent', scope, act: { sub: 'sample-agent' } });
      const client = new Client({ name: 'bank-test', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(`${gateway.url}/mcp`), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
      return client;
    };

    it('one account per user, transfers recorded with the acting agent, insufficient funds refused', async () => {
      const alice = await connect('alice', 'banking:read banking:transfer');
      const bob = await connect('bob', 'banking:read');
      try {
        assert.deepEqual(JSON.parse(textOf(await alice.callTool({ name: 'read_balance', arguments: {} }))), { balance: '1250.00', currency: 'EUR' });
        const moved = JSON.parse(textOf(await alice.callTool({ name: 'transfer', arguments: { to: 'bob', amount: 200.5, memo: 'rent' } })));
        assert.equal(moved.balance, '1049.50');
        assert.equal(moved.performed_by, 'sample-agent');
        const history = JSON.parse(textOf(await alice.callTool({ name: 'list_transactions', arguments: { limit: 1 } })));
        assert.equal(history[0].amount, '-200.50');
        const tooMuch = await alice.callTool({ name: 'transfer', arguments: { to: 'bob', amount: 5000 } });
        assert.equal(tooMuch.isError, true);
        assert.match(textOf(tooMuch), /insufficient funds/);
        assert.deepEqual(JSON.parse(textOf(await bob.callTool({ name: 'read_balance', arguments: {} }))), { balance: '1250.00', currency: 'EUR' }, "bob's own account");
      } finally {
        await alice.close();
        await bob.close();
      }
    });

    it('reached directly (not through the gateway), it knows no caller and refuses', async () => {
      const client = new Client({ name: 'direct', version: '1.0.0' });
      await client.connect(new StreamableHTTPClientTransport(new URL(bank.url)));
      try {
        const result = await client.callTool({ name: 'read_balance', arguments: {} });
        assert.equal(result.isError, true);
        assert.match(textOf(result), /through the Mandate gateway/);
      } finally {
        await client.close();
      }
    });
  });
});
