import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { Client as ClientV1 } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport as TransportV1 } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { CreateMessageRequestSchema, ElicitRequestSchema } from '@modelcontextprotocol/sdk/types.js';
import { Client as ClientV2, StreamableHTTPClientTransport as TransportV2 } from '@modelcontextprotocol/client';
import { startEverything } from '../helpers/everything.ts';
import { startFakeIssuer, startTestGateway, type TestGateway } from '../helpers/gateway.ts';
import { INSPECTOR_LAUNCHER, INSPECTOR_NODE, needsInspector } from '../helpers/inspector-cli.ts';

const run = promisify(execFile);

/**
 * The gateway in front of the reference MCP server (`server-everything`, unchanged), driven by
 * clients this project did not write: the MCP TypeScript SDK v1 and v2 clients and the MCP
 * Inspector CLI. Covers a stateful session, progress streamed over SSE, elicitation and sampling
 * (server → client requests answered by a later POST), and the session's end (DELETE).
 */
describe('interop: MCP SDK v1/v2 clients and Inspector CLI through the gateway to server-everything', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let everything: Awaited<ReturnType<typeof startEverything>>;
  let gateway: TestGateway;
  let url: string;
  let token: string;

  before(async () => {
    issuer = await startFakeIssuer();
    everything = await startEverything();
    gateway = await startTestGateway((gatewayUrl) => [
      { path: '/mcp', upstream: everything.url, resource: `${gatewayUrl}/mcp`, authorization_servers: [issuer.issuer], scopes: ['mcp:use'], tools: {
          'get-env': { allow: 'false', reason: 'never expose the environment' },
          // unlisted_tools is deny by default: the tools these clients call are listed.
          ...Object.fromEntries(['echo', 'get-sum', 'trigger-long-running-operation', 'trigger-elicitation-request', 'trigger-sampling-request'].map((name) => [name, {}])),
        },
      },
    ]);
    url = `${gateway.url}/mcp`;
    token = await issuer.sign({ sub: 'alice', aud: url, client_id: 'interop', scope: 'mcp:use' });
  });
  after(async () => {
    await gateway.close();
    await everything.close();
    await issuer.close();
  });

  it('SDK v1: tools, progress over SSE, elicitation, sampling, session end', async () => {
    const transport = new TransportV1(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
    const client = new ClientV1({ name: 'interop-v1', version: '1.0.0' }, { capabilities: { elicitation: {}, sampling: {} } });
    client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { name: 'Bob' } }));
    client.setRequestHandler(CreateMessageRequestSchema, async () => ({ model: 'test-model', role: 'assistant', content: { type: 'text', text: 'sampled reply' } }));
    await client.connect(transport);
    try {
      const { tools } = await client.listTools();
      const names = tools.map((tool) => tool.name);
      assert.ok(names.includes('echo') && names.includes('trigger-long-running-operation') && names.includes('trigger-elicitation-request'));
      assert.ok(!names.includes('get-env'), 'tools/list is filtered by the gateway policy');

      const echo = await client.callTool({ name: 'echo', arguments: { message: 'through the gateway' } });
      assert.match(JSON.stringify(echo.content), /through the gateway/);

      const progress: number[] = [];
      const long = await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 3 } }, undefined, { onprogress: (p) => progress.push(p.progress) });
      assert.deepEqual(progress, [1, 2, 3], 'every progress notification arrived through the stream');
      assert.match(JSON.stringify(long.content), /completed/i);

      const elicited = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} });
      assert.match(JSON.stringify(elicited.content), /Bob/);
      const sampled = await client.callTool({ name: 'trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 10 } });
      assert.match(JSON.stringify(sampled.content), /sampled reply/);

      await assert.rejects(client.callTool({ name: 'get-env', arguments: {} }), /refused by the gateway policy/);
      await transport.terminateSession();
    } finally {
      await client.close();
    }
    const events = await gateway.auditEvents();
    const long = events.find((event) => event.tool === 'trigger-long-running-operation')!;
    assert.equal(long.outcome, 'result');
    assert.ok(long.session, 'the session id is audited');
    assert.ok(events.some((event) => event.kind === 'response'), 'the client responses to elicitation/sampling went through');
    assert.ok(events.some((event) => event.http_method === 'DELETE' && event.status === 200));
  });

  it('SDK v2 (@modelcontextprotocol/client): tools, progress, elicitation', async () => {
    const transport = new TransportV2(new URL(url), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
    const client = new ClientV2({ name: 'interop-v2', version: '1.0.0' }, { capabilities: { elicitation: { form: {} } } });
    client.setRequestHandler('elicitation/create', async () => ({ action: 'accept', content: { name: 'Carol' } }));
    await client.connect(transport);
    try {
      const { tools } = await client.listTools();
      assert.ok(tools.some((tool) => tool.name === 'get-sum'));
      const sum = await client.callTool({ name: 'get-sum', arguments: { a: 2, b: 3 } });
      assert.match(JSON.stringify(sum.content), /5/);
      const progress: number[] = [];
      await client.callTool({ name: 'trigger-long-running-operation', arguments: { duration: 1, steps: 2 } }, { onprogress: (p: { progress: number }) => progress.push(p.progress) });
      assert.deepEqual(progress, [1, 2]);
      const elicited = await client.callTool({ name: 'trigger-elicitation-request', arguments: {} });
      assert.match(JSON.stringify(elicited.content), /Carol/);
    } finally {
      await client.close();
    }
  });

  it('an SDK client without a token is refused with 401 before reaching the server', async () => {
    const client = new ClientV1({ name: 'no-token', version: '1.0.0' });
    await assert.rejects(client.connect(new TransportV1(new URL(url))), (error: { code?: number; message: string }) => error.code === 401 && /access token is required/.test(error.message));
  });

  it('MCP Inspector CLI lists and calls tools through the gateway', needsInspector(), async () => {
    const home = mkdtempSync(join(tmpdir(), 'mandate-inspector-'));
    const cli = (args: string[]) =>
      run(INSPECTOR_NODE, [INSPECTOR_LAUNCHER, '--cli', url, '--transport', 'http', '--header', `Authorization: Bearer ${token}`, ...args], {
        env: { ...process.env, HOME: home },
        timeout: 60_000,
      });
    try {
      const list = await cli(['--method', 'tools/list']);
      const tools = (JSON.parse(list.stdout) as { tools: { name: string }[] }).tools.map((tool) => tool.name);
      assert.ok(tools.includes('get-sum'));
      assert.ok(!tools.includes('get-env'));
      const call = await cli(['--method', 'tools/call', '--tool-name', 'get-sum', '--tool-arg', 'a=20', 'b=22']);
      assert.match(call.stdout, /42/);
    } finally {
      rmSync(home, { recursive: true, force: true });
    }
  });
});
