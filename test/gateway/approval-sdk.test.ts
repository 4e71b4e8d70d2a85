import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { ErrorCode, McpError, UrlElicitationRequiredError } from '@modelcontextprotocol/sdk/types.js';
import { z } from 'zod';
import { startFakeTransactionsAs } from '../helpers/fake-transactions.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

/**
 * Issue 14 with a client this project did not write: the official MCP SDK (v1) client, speaking
 * 2025-11-25, gets the gateway's -32042 as its own `UrlElicitationRequiredError` carrying the
 * approval URL; once the user has approved at the AS (the fake here), the same `callTool` returns
 * the tool's result. The upstream is the SDK's own McpServer, stateless, with no auth of its own.
 */
async function startBank() {
  const transfers: { amount: number; to: string }[] = [];
  const readJson = (req: IncomingMessage) =>
    new Promise<unknown>((resolve) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk));
      req.on('end', () => resolve(body ? JSON.parse(body) : undefined));
    });
  const server: Server = createServer((req, res) => {
    void (async () => {
      const mcp = new McpServer({ name: 'bank', version: '1.0.0' });
      mcp.registerTool('transfer', { description: 'moves money', inputSchema: { amount: z.number(), to: z.string() } }, ({ amount, to }) => {
        transfers.push({ amount, to });
        return { content: [{ type: 'text', text: `sent ${amount} EUR to ${to}` }] };
      });
      const transport = new StreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
      await mcp.connect(transport);
      await transport.handleRequest(req, res, req.method === 'POST' ? await readJson(req) : undefined);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    transfers,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

describe('gateway approvals with the MCP SDK client (2025-11-25)', () => {
  let as: Awaited<ReturnType<typeof startFakeTransactionsAs>>;
  let bank: Awaited<ReturnType<typeof startBank>>;
  let gateway: TestGateway;

  before(async () => {
    as = await startFakeTransactionsAs();
    bank = await startBank();
    gateway = await startTestGateway(
      (url) => [
        {
          path: '/mcp',
          upstream: bank.url,
          rewrite: '/',
          resource: `${url}/mcp`,
          authorization_servers: [as.issuer],
          tools: { transfer: { approval: { when: 'args.amount > 100', summary: 'Transfer {amount} EUR to {to}' } } },
          approvals: { client_id: 'gateway', client_secret_env: 'TEST_APPROVALS_SECRET', retry_check: true },
        },
      ],
      {},
      { TEST_APPROVALS_SECRET: 'gw-secret' },
    );
  });
  after(async () => {
    await gateway.close();
    await bank.close();
    await as.close();
  });

  it('surfaces -32042 as UrlElicitationRequiredError with the approval URL; after approval the retried callTool returns the result, once', async () => {
    const resource = `${gateway.url}/mcp`;
    const token = await as.sign({ aud: resource, sub: 'alice', client_id: 'sample-agent', act: { sub: 'sample-agent' } });
    const client = new Client({ name: 'sdk-client', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(resource), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    try {
      assert.equal((await client.callTool({ name: 'transfer', arguments: { amount: 50, to: 'Bob' } })).isError, undefined, 'under the threshold: no approval');
      assert.equal(bank.transfers.length, 1);

      let caught: unknown;
      try {
        await client.callTool({ name: 'transfer', arguments: { amount: 250, to: 'Bob' } });
      } catch (error) {
        caught = error;
      }
      assert.ok(caught instanceof McpError, `an McpError, got ${String(caught)}`);
      assert.ok(caught instanceof UrlElicitationRequiredError, 'the SDK\'s own type for -32042');
      assert.equal(caught.code, ErrorCode.UrlElicitationRequired);
      assert.equal(caught.elicitations.length, 1);
      const [elicitation] = caught.elicitations;
      assert.equal(elicitation!.mode, 'url');
      assert.equal(elicitation!.url, `${as.issuer}/approve/${elicitation!.elicitationId}`);
      assert.equal(elicitation!.message, 'Transfer 250 EUR to Bob');
      assert.equal(bank.transfers.length, 1, 'the bank received nothing');

      // The user approves on the page the URL opens (the fake AS stands in for it).
      as.approve(elicitation!.elicitationId);
      const result = await client.callTool({ name: 'transfer', arguments: { amount: 250, to: 'Bob' } });
      assert.deepEqual(result.content, [{ type: 'text', text: 'sent 250 EUR to Bob' }]);
      assert.deepEqual(bank.transfers.at(-1), { amount: 250, to: 'Bob' });
      assert.equal(bank.transfers.length, 2);

      // The same call again: a new approval, the bank untouched.
      await assert.rejects(client.callTool({ name: 'transfer', arguments: { amount: 250, to: 'Bob' } }), (error: unknown) => error instanceof UrlElicitationRequiredError && error.elicitations[0]!.elicitationId !== elicitation!.elicitationId);
      assert.equal(bank.transfers.length, 2);
      const events = await gateway.auditEvents();
      const granted = events.filter((event) => event.approval === 'granted');
      assert.deepEqual(granted.map((event) => event.approval_id), [elicitation!.elicitationId]);
    } finally {
      await client.close();
    }
  });
});
