import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import { startApprovalGateway, startFakeTransactionsAs } from '../helpers/fake-transactions.ts';
import type { TestGateway } from '../helpers/gateway.ts';

/** A stateless 2026-07-28 MCP server reduced to one tool: it records each call and answers `resultType: complete`. */
async function startStatelessUpstream() {
  const requests: { body: string }[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', () => {
      requests.push({ body });
      const message = JSON.parse(body) as { id: number; method: string; params: { arguments?: unknown } };
      res.writeHead(200, { 'content-type': 'application/json' });
      const result = message.method === 'tools/call' ? { content: [{ type: 'text', text: JSON.stringify(message.params.arguments) }] } : {};
      res.end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { resultType: 'complete', ...result } }));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/**
 * Issue 14, the 2026-07-28 form, with a client this project did not write: the MCP SDK v2 client
 * (`@modelcontextprotocol/client`) on the stateless revision fulfils the gateway's `input_required`
 * answer through its own `elicitation/create` handler (URL mode: here the "user" approves at the
 * fake AS), then retries with the echoed `requestState`; the retry is let through once.
 */
describe('gateway approvals with the MCP SDK v2 client (2026-07-28, input_required)', () => {
  let as: Awaited<ReturnType<typeof startFakeTransactionsAs>>;
  let upstream: Awaited<ReturnType<typeof startStatelessUpstream>>;
  let gateway: TestGateway;

  before(async () => {
    as = await startFakeTransactionsAs();
    upstream = await startStatelessUpstream();
    gateway = await startApprovalGateway(as, upstream.url, {
      tools: { transfer: { approval: { when: 'args.amount > 100', summary: 'Transfer {amount} EUR to {to}' } } },
    });
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await as.close();
  });

  it('the SDK fulfils the URL elicitation, retries with requestState, and gets the tool result; the upstream sees one call without the state', async () => {
    const resource = `${gateway.url}/mcp`;
    const token = await as.sign({ aud: resource, sub: 'alice', client_id: 'sample-agent', act: { sub: 'sample-agent' } });
    const client = new Client({ name: 'sdk-v2', version: '1.0.0' }, { capabilities: { elicitation: { url: {} } } });
    const asked: { mode?: string; url?: string; message?: string; elicitationId?: string }[] = [];
    client.setRequestHandler('elicitation/create', async (request) => {
      const params = request.params as { mode?: string; url?: string; message?: string; elicitationId?: string };
      asked.push(params);
      // The user opens the URL and approves there.
      as.approve(params.url!.split('/').at(-1)!);
      return { action: 'accept' };
    });
    await client.connect(new StreamableHTTPClientTransport(new URL(resource), { requestInit: { headers: { authorization: `Bearer ${token}` } } }), {
      prior: { kind: 'modern', discover: { ttlMs: 0, cacheScope: 'private', supportedVersions: ['2026-07-28'], capabilities: { tools: {} } } },
    });
    try {
      const result = await client.callTool({ name: 'transfer', arguments: { amount: 250, to: 'Bob' } });
      assert.deepEqual(result.content, [{ type: 'text', text: JSON.stringify({ amount: 250, to: 'Bob' }) }]);
      assert.equal(asked.length, 1);
      // The SDK's 2026-07-28 URL-mode schema has no elicitationId: it drops the one the gateway sends.
      const id = [...as.transactions.keys()].at(-1)!;
      assert.deepEqual(asked[0], { mode: 'url', url: `${as.issuer}/approve/${id}`, message: 'Transfer 250 EUR to Bob' });
      assert.equal(as.status(id), 'used');
      const calls = upstream.requests.filter((request) => request.body.includes('"tools/call"'));
      assert.equal(calls.length, 1, 'one call reached the upstream');
      const params = JSON.parse(calls[0]!.body).params as Record<string, unknown>;
      assert.equal(params.requestState, undefined, "the gateway's state is not forwarded");
      assert.equal((params.inputResponses as Record<string, unknown> | undefined)?.approval, undefined);
      const events = await gateway.auditEvents();
      assert.deepEqual(events.filter((event) => event.tool === 'transfer').map((event) => event.approval), ['required', 'granted']);
    } finally {
      await client.close();
    }
  });
});
