import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTodoMcpServer, type TodoMcpServer } from '../../examples/todo-mcp/server.ts';
import { freePort, postForm } from '../helpers/auth-server.ts';
import { AGENT_REDIRECT, R, SECRETS, auth, startDelegationServer, userToken } from '../helpers/delegation-server.ts';
import { MCP_HEADERS } from '../helpers/gateway.ts';

/**
 * Issue 11 item 5 at the self-protected Todo MCP server: it reads the same revocation feed as the
 * gateway, so a revoked user token stops there too; until its first load it answers 503.
 */
describe('Todo MCP server checks revocation', () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  let todo: TodoMcpServer;
  let blind: TodoMcpServer;
  const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 't', version: '1' } } };
  const call = async (server: TodoMcpServer, token: string) => {
    const res = await fetch(server.url, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: JSON.stringify(initialize) });
    return { status: res.status, body: (await res.text()) };
  };

  before(async () => {
    as = await startDelegationServer();
    const common = { issuer: as.issuer, resource: R.mcp, todoApi: 'http://127.0.0.1:9', clientId: 'mcp-server', host: '127.0.0.1', revocationPollSeconds: 1 };
    todo = await startTodoMcpServer({ ...common, clientSecret: SECRETS.mcp, port: await freePort() });
    // Its list can never be read (wrong secret): it must refuse rather than guess.
    blind = await startTodoMcpServer({ ...common, clientSecret: 'not-the-secret-0123456789abcdef0123', port: await freePort() });
  });
  after(async () => {
    await todo.close();
    await blind.close();
    await as.close();
  });

  it('503 temporarily_unavailable while the revocation list is not loaded', async () => {
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.mcp, scope: 'todo_api:read', clientAuth: auth.agent });
    const res = await call(blind, token.access_token);
    assert.equal(res.status, 503);
    assert.equal((JSON.parse(res.body) as { error: string }).error, 'temporarily_unavailable');
  });

  it('a revoked user token is refused with 401 invalid_token within the poll interval', async () => {
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.mcp, scope: 'todo_api:read', clientAuth: auth.agent });
    const eventually = async (status: number) => {
      for (let i = 0; i < 60; i++) {
        const res = await call(todo, token.access_token);
        if (res.status === status) return res;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.fail(`never ${status}`);
    };
    await eventually(200);
    assert.equal((await postForm(`${as.issuer}/revoke`, { token: token.access_token }, auth.agent)).status, 200);
    const refused = await eventually(401);
    assert.equal((JSON.parse(refused.body) as { error: string }).error, 'invalid_token');
  });
});
