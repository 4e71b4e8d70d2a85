/**
 * Several MCP servers behind one route: resource URIs inside results (MCP 2025-06-18+ resource
 * links and embedded resources) are renamed `mandate+<upstream>:<uri>` like listed resources, so
 * the client's read of one reaches the upstream that gave it. Two SDK servers with the same URIs
 * (they collide), one answering JSON and one SSE, on both targets, driven by the MCP SDK client.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { z } from 'zod';
import { startStatefulSdkUpstream } from '../helpers/sdk-upstream.ts';
import { mcpPost, startFakeIssuer, toolCall } from '../helpers/gateway.ts';
import { onTarget, startGatewayOn, targets, type TargetGateway } from '../helpers/gateway-targets.ts';

/**
 * The SDK's McpServer with sessions, answering JSON (`enableJsonResponse`) or SSE: a tool whose
 * result links one note and embeds another (and names the first in its structured content too), a
 * prompt embedding a note, and the notes themselves, each saying which server it comes from.
 */
async function startNotesServer(name: string, json: boolean) {
  const note = (file: string) => ({ uri: `file:///notes/${file}`, mimeType: 'text/plain', text: `${name}: ${file}` });
  const upstream = await startStatefulSdkUpstream({
    name,
    json,
    register: (mcp) => {
      mcp.registerTool('links', { description: 'links a note, embeds another', outputSchema: { first: z.string() } }, () => ({
        content: [
          { type: 'text', text: 'two notes' },
          { type: 'resource_link', uri: note('a.txt').uri, name: 'a.txt', mimeType: 'text/plain' },
          { type: 'resource', resource: note('b.txt') },
        ],
        structuredContent: { first: note('a.txt').uri },
      }));
      mcp.registerTool('big', { description: 'a result over the rewrite limit' }, () => ({ content: [{ type: 'text', text: 'x'.repeat(9 * 1024 * 1024) }] }));
      mcp.registerPrompt('quote', { description: 'quotes a note' }, () => ({ messages: [{ role: 'user', content: { type: 'resource', resource: note('b.txt') } }] }));
      for (const file of ['a.txt', 'b.txt']) mcp.registerResource(file, note(file).uri, { mimeType: 'text/plain' }, () => ({ contents: [note(file)] }));
    },
  });
  return { url: `${upstream.url}/mcp`, close: upstream.close };
}

for (const target of targets) {
  describe(`several MCP servers behind one route: resource URIs in results [${target}]`, onTarget(target), () => {
    let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
    let upstreams: Awaited<ReturnType<typeof startNotesServer>>[];
    let gateway: TargetGateway;
    let resource: string;
    let token: string;

    before(async () => {
      issuer = await startFakeIssuer();
      upstreams = [await startNotesServer('json', true), await startNotesServer('sse', false)];
      gateway = await startGatewayOn(target, (origin) => [
        {
          path: '/mcp',
          upstreams: [
            { name: 'json', url: upstreams[0]!.url },
            { name: 'sse', url: upstreams[1]!.url },
          ],
          resource: `${origin}/mcp`,
          authorization_servers: [issuer.issuer],
          tools: { json__links: {}, sse__links: {}, json__big: {} },
        },
      ]);
      resource = `${gateway.url}/mcp`;
      token = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'mux-links' });
    });
    after(async () => {
      await gateway?.stop();
      for (const upstream of upstreams ?? []) await upstream.close();
      await issuer?.close();
    });

    it('the SDK client follows a resource link and an embedded resource of a tool result, JSON and SSE, to the upstream that gave it; structuredContent is the tool’s own', async () => {
      const transport = new StreamableHTTPClientTransport(new URL(resource), { requestInit: { headers: { authorization: `Bearer ${token}` } } });
      const client = new Client({ name: 'mux-links', version: '1.0.0' });
      await client.connect(transport);
      try {
        for (const upstream of ['json', 'sse']) {
          const result = await client.callTool({ name: `${upstream}__links`, arguments: {} });
          const [text, link, embedded] = result.content as [{ text: string }, { type: string; uri: string; name: string }, { type: string; resource: { uri: string; text: string } }];
          assert.equal(text.text, 'two notes');
          assert.deepEqual({ type: link.type, uri: link.uri, name: link.name }, { type: 'resource_link', uri: `mandate+${upstream}:file:///notes/a.txt`, name: 'a.txt' });
          assert.deepEqual({ type: embedded.type, uri: embedded.resource.uri, text: embedded.resource.text }, { type: 'resource', uri: `mandate+${upstream}:file:///notes/b.txt`, text: `${upstream}: b.txt` });
          assert.deepEqual(result.structuredContent, { first: 'file:///notes/a.txt' }, 'structured content is left as the tool wrote it');
          // Both servers have file:///notes/a.txt: the gateway's URI says whose.
          const read = await client.readResource({ uri: link.uri });
          assert.deepEqual(read.contents, [{ uri: link.uri, mimeType: 'text/plain', text: `${upstream}: a.txt` }]);
          const again = await client.readResource({ uri: embedded.resource.uri });
          assert.equal((again.contents[0] as { text: string }).text, `${upstream}: b.txt`);
        }
      } finally {
        await transport.terminateSession().catch(() => undefined);
        await client.close();
      }
      const calls = (await gateway.auditEvents()).filter((event) => event.method === 'tools/call');
      assert.deepEqual(
        calls.map((event) => [event.tool, event.upstream, event.outcome, event.status]),
        [
          ['json__links', 'json', 'result', 200],
          ['sse__links', 'sse', 'result', 200],
        ],
      );
      const reads = (await gateway.auditEvents()).filter((event) => event.method === 'resources/read');
      assert.deepEqual(
        reads.map((event) => event.upstream),
        ['json', 'json', 'sse', 'sse'],
      );
    });

    it("a prompt's embedded resource is renamed, JSON and SSE; on the wire each answer keeps its type (JSON or SSE)", async () => {
      const init = await mcpPost(resource, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }, { authorization: `Bearer ${token}` });
      assert.equal(init.status, 200, init.text);
      const headers = { authorization: `Bearer ${token}`, 'mcp-session-id': init.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-11-25' };
      await mcpPost(resource, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers);
      for (const [upstream, contentType] of [
        ['json', 'application/json'],
        ['sse', 'text/event-stream'],
      ] as const) {
        const prompt = await mcpPost(resource, { jsonrpc: '2.0', id: `p-${upstream}`, method: 'prompts/get', params: { name: `${upstream}__quote` } }, headers);
        assert.equal(prompt.status, 200, prompt.text);
        assert.ok(prompt.headers.get('content-type')!.startsWith(contentType), `${upstream}: ${prompt.headers.get('content-type')}`);
        const message = contentType === 'application/json' ? prompt.json! : (JSON.parse(prompt.text.split('\n').find((line) => line.startsWith('data: {'))!.slice(6)) as Record<string, unknown>);
        assert.deepEqual(message, {
          jsonrpc: '2.0',
          id: `p-${upstream}`,
          result: { messages: [{ role: 'user', content: { type: 'resource', resource: { uri: `mandate+${upstream}:file:///notes/b.txt`, mimeType: 'text/plain', text: `${upstream}: b.txt` } } }] },
        });
        const call = await mcpPost(resource, { ...toolCall(`${upstream}__links`, {}), id: `c-${upstream}` }, headers);
        assert.ok(call.headers.get('content-type')!.startsWith(contentType));
        assert.ok(call.text.includes(`"uri":"mandate+${upstream}:file:///notes/a.txt"`), call.text);
        assert.ok(call.text.includes('"structuredContent":{"first":"file:///notes/a.txt"}'), call.text);
      }
      const ended = await fetch(resource, { method: 'DELETE', headers });
      assert.equal(ended.status, 200);
    });

    it('a JSON result is read whole to be renamed: one over 8 MiB is a 502 (-32603), audited upstream_unavailable', async () => {
      const init = await mcpPost(resource, { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '1' } } }, { authorization: `Bearer ${token}` });
      const headers = { authorization: `Bearer ${token}`, 'mcp-session-id': init.headers.get('mcp-session-id')!, 'mcp-protocol-version': '2025-11-25' };
      const big = await mcpPost(resource, toolCall('json__big', {}, 77), headers);
      assert.equal(big.status, 502);
      assert.equal((big.json!.error as { code: number }).code, -32603);
      const event = await gateway.waitForAudit((e) => e.request_id === big.headers.get('x-request-id'));
      assert.deepEqual([event.rejection, event.reason, event.upstream], ['upstream_unavailable', 'the response to rewrite is too large', 'json']);
      await fetch(resource, { method: 'DELETE', headers });
    });
  });
}
