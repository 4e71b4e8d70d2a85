import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { parse, stringify } from 'yaml';
import { freePort, postForm } from '../helpers/auth-server.ts';
import { R, SECRETS, auth, startDelegationServer } from '../helpers/delegation-server.ts';
import { listedTools, mcpPost, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';
import { until } from '../helpers/private-services.ts';

/**
 * Issue 11 item 5 at one gateway: the revocation feed fails closed (503) until its first load,
 * and a route reload keeps it — a revoked token stays refused even when the AS cannot be read
 * at the moment of the reload, and the reload reads no full list again.
 */
describe('gateway revocation feed: fail closed, kept across reloads', () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let relay: Server;
  let reachable = false;
  const reads: string[] = [];

  before(async () => {
    as = await startDelegationServer();
    upstream = await startScriptedUpstream();
    // Stands between the gateway and the AS's list: down until the test says otherwise.
    relay = createServer((req, res) => {
      reads.push(req.url!);
      if (!reachable) return void res.writeHead(503).end();
      void fetch(`${as.issuer}${req.url}`, { headers: { authorization: req.headers.authorization ?? '', 'if-none-match': req.headers['if-none-match'] ?? '' } }).then(async (answer) => {
        res.writeHead(answer.status, { 'content-type': 'application/json', etag: answer.headers.get('etag') ?? '' }).end(await answer.text());
      });
    });
    const port = await freePort();
    await new Promise<void>((resolve) => relay.listen(port, '127.0.0.1', resolve));
    gateway = await startTestGateway(
      () => [
        {
          path: '/mcp',
          upstream: upstream.url,
          tools: listedTools(),
          resource: R.gateway,
          authorization_servers: [as.issuer],
          token: { revocation_list: { endpoint: `http://127.0.0.1:${port}/revocations`, client_id: 'mcp-server', client_secret_env: 'TEST_MCP_SECRET', poll_seconds: 1 } },
        },
      ],
      {},
      // Polling only: this test is about the list, not the push.
      { TEST_MCP_SECRET: SECRETS.mcp },
    );
  });
  after(async () => {
    await gateway.close();
    relay.close();
    await upstream.close();
    await as.close();
  });

  const agentToken = async () => {
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.gateway, scope: 'banking:read' }, auth.other);
    assert.equal(res.status, 200, res.text);
    return res.json.access_token as string;
  };
  const call = (token: string) => mcpPost(`${gateway.url}/mcp`, toolCall('read_balance'), { authorization: `Bearer ${token}` });

  it('a valid token gets 503 temporarily_unavailable until the list is loaded, then 200', async () => {
    const token = await agentToken();
    const res = await call(token);
    assert.equal(res.status, 503);
    assert.equal(res.headers.get('retry-after'), '1');
    assert.deepEqual(res.json?.error, { code: -32603, message: 'temporarily_unavailable: the revocation list is not loaded yet; retry shortly' });
    const event = (await gateway.auditEvents()).at(-1)!;
    assert.equal(event.decision, 'error');
    assert.equal(event.rejection, 'revocation_list_unavailable');
    // With the poll's own error once one has failed (here the AS is not reachable yet).
    assert.match(event.reason as string, /^the revocation list has not been loaded yet( \(last poll: .+\))?$/);
    assert.equal(upstream.requests.length, 0, 'nothing reached the upstream');
    reachable = true;
    await until(async () => (await call(token)).status === 200, 5_000, 'the gateway loading the list', 50);
  });

  it('a reload keeps the feed: a revoked token stays refused while the AS cannot be read, and no full list is read again', async () => {
    const token = await agentToken();
    assert.equal((await call(token)).status, 200);
    assert.equal((await postForm(`${as.issuer}/revoke`, { token }, auth.other)).status, 200);
    await until(async () => (await call(token)).status === 401, 5_000, 'the revocation reaching the gateway', 50);
    reachable = false;
    const fullReads = reads.filter((url) => !url.includes('since=')).length;
    const config = parse(readFileSync(gateway.configFile, 'utf8')) as { routes: { resource_name?: string }[] };
    config.routes[0]!.resource_name = 'Banking, reloaded';
    writeFileSync(gateway.configFile, stringify(config));
    assert.equal(await gateway.reload(), true);
    const res = await call(token);
    assert.equal(res.status, 401, 'the revoked token is still refused after the reload');
    const event = (await gateway.auditEvents()).at(-1)!;
    assert.equal(event.rejection, 'invalid_token');
    assert.equal(event.reason, 'the token was revoked');
    assert.equal((await call(await agentToken())).status, 200, 'and good tokens still pass: the list stays loaded');
    assert.equal(reads.filter((url) => !url.includes('since=')).length, fullReads, 'polls after the first are incremental');
    reachable = true;
  });
});
