import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { startTodoMcpServer, type TodoMcpServer } from '../../examples/todo-mcp/server.ts';
import { freePort } from '../helpers/auth-server.ts';
import { AGENT_REDIRECT, R, SECRETS, auth, startDelegationServer, userToken } from '../helpers/delegation-server.ts';

/**
 * Issue 12: when the Todo MCP server's own token exchange (for the Todo API) was refused, its tool
 * said "the gateway could not obtain a token" — the mediator's words, about another component.
 */
describe('Todo MCP server: a refused exchange for the Todo API says whose exchange it was', () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  let todo: TodoMcpServer;
  before(async () => {
    as = await startDelegationServer();
    todo = await startTodoMcpServer({ issuer: as.issuer, resource: R.mcp, todoApi: R.api, clientId: 'mcp-server', clientSecret: SECRETS.mcp, host: '127.0.0.1', port: await freePort() });
  });
  after(async () => {
    await todo.close();
    await as.close();
  });

  it('a write tool with a read-only token: the authorization server refused the Todo MCP server\'s exchange, with the reason', async () => {
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.mcp, scope: 'todo_api:read', clientAuth: auth.agent });
    const client = new Client({ name: 't', version: '1' });
    await client.connect(new StreamableHTTPClientTransport(new URL(todo.url), { requestInit: { headers: { authorization: `Bearer ${token.access_token}` } } }));
    try {
      const result = await client.callTool({ name: 'add_todo', arguments: { title: 'milk' } });
      assert.equal(result.isError, true);
      const text = (result.content as { text: string }[])[0]!.text;
      assert.equal(text, "the authorization server refused the Todo MCP server's token exchange for a Todo API token (invalid_scope scope todo_api:write is not in the subject token)");
      assert.doesNotMatch(text, /gateway/);
    } finally {
      await client.close();
    }
  });
});
