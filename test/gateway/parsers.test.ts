import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pino from 'pino';
import { gatewayApp } from '../../src/gateway/chain.ts';
import { fetchForwarder } from '../../src/gateway/filters/proxy.ts';
import { auditLine, AuditWriter } from '../../src/gateway/node/audit-writer.ts';
import { compileRoute } from '../../src/gateway/route.ts';
import { gatewayConfigSchema } from '../../src/config/gateway-schema.ts';
import type { GatewayAuditEvent } from '../../src/gateway/types.ts';
import { MCP_HEADERS, listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';

/** `{"a":{"a":…}}` nested `levels` deep, as text (building it as an object would need recursion to serialize). */
const nested = (levels: number, leaf = '1') => `${'{"a":'.repeat(levels)}${leaf}${'}'.repeat(levels)}`;
/** A tools/call whose arguments object holds `levels` more levels. */
const deepCall = (levels: number, id: number) => `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":${nested(levels)}}}`;

/**
 * Issue 11, items 11 and 12: the gateway's MCP parser. Every body is bounded in depth before it
 * is parsed, every message is audited whatever its shape, request methods cannot hide in
 * notifications, and the upstream reads exactly the JSON the gateway validated.
 */
describe('gateway parsers: JSON limits, notifications, duplicate keys, audit', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: TestGateway;
  let resource: string;
  let shallow: string;
  let headers: Record<string, string>;
  let shallowHeaders: Record<string, string>;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    gateway = await startTestGateway((url) => [
      { path: '/mcp', upstream: upstream.url, resource: `${url}/mcp`, authorization_servers: [issuer.issuer], tools: { ...listedTools(), transfer: { scopes: ['banking:transfer'] } } },
      { path: '/shallow', upstream: upstream.url, resource: `${url}/shallow`, authorization_servers: [issuer.issuer], tools: listedTools(), max_json_depth: 5 },
    ]);
    resource = `${gateway.url}/mcp`;
    shallow = `${gateway.url}/shallow`;
    headers = { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: resource, scope: 'banking:read' })}` };
    shallowHeaders = { authorization: `Bearer ${await issuer.sign({ sub: 'alice', aud: shallow, scope: 'banking:read' })}` };
  });
  after(async () => {
    await gateway.close();
    await upstream.close();
    await issuer.close();
  });

  const eventFor = async (id: string | null) => {
    const events = await gateway.auditEvents();
    return events.find((event) => event.request_id === id);
  };
  const reached = (marker: string) => upstream.requests.some((request) => request.body.includes(marker));

  describe('item 11: depth and size limits, an audit event for every message', () => {
    it('a tools/call nested 20k levels deep with a valid token: 400, -32600, audited as json_too_deep, not forwarded', async () => {
      const before = upstream.requests.length;
      const res = await mcpPost(resource, deepCall(20_000, 1101), headers);
      assert.equal(res.status, 400);
      assert.equal((res.json!.error as { code: number }).code, -32600);
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.ok(event, 'the refused message has its audit event');
      assert.equal(event.rejection, 'json_too_deep');
      assert.equal(event.reason, 'JSON nested deeper than 64 levels');
      assert.equal(event.status, 400);
      assert.equal(upstream.requests.length, before, 'nothing reached the upstream');
    });

    it('the same without a token: 400 with an audit event, never 500', async () => {
      const res = await mcpPost(resource, deepCall(20_000, 1102));
      assert.equal(res.status, 400);
      assert.equal((res.json!.error as { code: number }).code, -32600);
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'json_too_deep');
    });

    it('depth inside strings does not count; a message at the limit passes', async () => {
      const brackets = '['.repeat(500);
      const res = await mcpPost(resource, toolCall('echo', { text: brackets }, 1103), headers);
      assert.equal(res.status, 200, res.text);
      // The message is level 1, params 2, and the arguments' 62 nested objects reach 64 exactly.
      const atLimit = await mcpPost(resource, deepCall(62, 1104), headers);
      assert.equal(atLimit.status, 200, atLimit.text);
      const over = await mcpPost(resource, deepCall(63, 1105), headers);
      assert.equal(over.status, 400);
    });

    it('max_json_depth is per route', async () => {
      const ok = await mcpPost(shallow, deepCall(3, 1106), shallowHeaders);
      assert.equal(ok.status, 200, ok.text);
      const refused = await mcpPost(shallow, deepCall(4, 1107), shallowHeaders);
      assert.equal(refused.status, 400);
      assert.equal((refused.json!.error as { code: number }).code, -32600);
      const event = await eventFor(refused.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'json_too_deep');
      assert.equal(event?.reason, 'JSON nested deeper than 5 levels');
    });

    it('a body that is not JSON: 400, -32700, audited with the parser detail', async () => {
      const res = await mcpPost(resource, '{"jsonrpc":"2.0","id":1,', headers);
      assert.equal(res.status, 400);
      assert.equal((res.json!.error as { code: number }).code, -32700);
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'malformed');
      assert.match(String(event?.reason), /^not JSON: /);
    });

    it('a number literal that overflows a double: 400, -32600 (it would reach the upstream as null)', async () => {
      const res = await mcpPost(resource, '{"jsonrpc":"2.0","id":1108,"method":"tools/call","params":{"name":"echo","arguments":{"amount":1e400}}}', headers);
      assert.equal(res.status, 400);
      assert.equal((res.json!.error as { code: number }).code, -32600);
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'malformed');
      assert.equal(event?.reason, 'a number is out of range (RFC 8259 §6)');
    });

    it('a body over max_body_bytes: 413, -32600, audited', async () => {
      const res = await mcpPost(resource, toolCall('echo', { pad: 'x'.repeat(1_100_000) }, 1109), headers);
      assert.equal(res.status, 413);
      assert.equal((res.json!.error as { code: number }).code, -32600);
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'body_too_large');
    });

    it('auditLine never throws: an event whose arguments cannot be serialized is written without them, saying why', () => {
      let args: Record<string, unknown> = {};
      for (let i = 0; i < 20_000; i++) args = { a: args };
      const event: GatewayAuditEvent = { time: 't', request_id: 'deep', route: '/mcp', http_method: 'POST', kind: 'request', method: 'tools/call', tool: 'echo', arguments: args, decision: 'allow', status: 200, latency_ms: 1 };
      const line = JSON.parse(auditLine(event)) as Record<string, unknown>;
      assert.equal(line.request_id, 'deep');
      assert.equal(line.tool, 'echo');
      assert.equal(line.args_sha256, undefined);
      assert.match(String(line.audit_error), /could not be serialized/);
    });

    it('an audit sink with no room refuses the call (503, audit_unavailable) instead of forwarding it unrecorded', async () => {
      const events: GatewayAuditEvent[] = [];
      const config = gatewayConfigSchema.parse({ routes: [{ path: '/mcp', upstream: upstream.url, resource: 'https://full.example/mcp', authorization_servers: [issuer.issuer], tools: listedTools() }] });
      const route = compileRoute(config.routes[0]!, 0, { env: {} });
      const app = gatewayApp([route], { observer: { ready: () => Promise.resolve(false), record: (event) => void events.push(event) }, forwarder: fetchForwarder() });
      try {
        const before = upstream.requests.length;
        const token = await issuer.sign({ sub: 'alice', aud: 'https://full.example/mcp' });
        const res = await app.request('/mcp', { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: JSON.stringify(toolCall('echo', {}, 1110)) });
        assert.equal(res.status, 503);
        assert.equal(((await res.json()) as { error: { code: number } }).error.code, -32603);
        assert.equal(events.length, 1);
        assert.equal(events[0]!.rejection, 'audit_unavailable');
        assert.equal(events[0]!.reason, 'the audit sink had no room in time');
        assert.equal(upstream.requests.length, before, 'nothing reached the upstream');
      } finally {
        route.close();
      }
    });

    it('AuditWriter.ready() resolves false when no room comes within maxWaitMs (a stalled disk)', async () => {
      const writer = new AuditWriter({ file: '/unused', maxBytes: 1 << 30, keep: 1, stdout: false, bufferEvents: 1, maxWaitMs: 20, log: pino({ level: 'silent' }) });
      // A file whose writes never complete, as on a hung disk.
      (writer as unknown as { handle: unknown }).handle = { write: () => new Promise(() => {}), close: async () => {} };
      const event = { time: '', request_id: 'x', route: '/', http_method: 'POST', decision: 'allow' as const, status: 200, latency_ms: 0 };
      writer.record(event);
      await new Promise((resolve) => setImmediate(resolve));
      writer.record(event);
      const wait = writer.ready();
      assert.ok(wait instanceof Promise, 'the buffer is full');
      assert.equal(await wait, false);
    });
  });

  describe('item 12: notifications that carry requests, and what the upstream reads', () => {
    it('a tools/call without an id (a notification) is refused: 400, -32600, audited, not forwarded', async () => {
      const marker = 'notification-transfer-1201';
      const res = await mcpPost(resource, { jsonrpc: '2.0', method: 'tools/call', params: { name: 'transfer', arguments: { memo: marker } } }, headers);
      assert.equal(res.status, 400);
      assert.equal((res.json!.error as { code: number }).code, -32600);
      assert.equal(res.json!.id, null);
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'malformed');
      assert.equal(event?.reason, 'tools/call without an id: only notifications/* may be sent as notifications');
      assert.equal(event?.method, 'tools/call', 'the audit says what was attempted');
      assert.ok(!reached(marker), 'the upstream never saw it');
    });

    it('any request method without an id is refused, and a null id too; notifications/* pass', async () => {
      for (const message of [
        { jsonrpc: '2.0', method: 'tools/list' },
        { jsonrpc: '2.0', method: 'resources/read', params: { uri: 'file:///etc/passwd' } },
        { jsonrpc: '2.0', id: null, method: 'tools/call', params: { name: 'echo', arguments: {} } },
        { jsonrpc: '2.0', id: 2 ** 53 + 2, method: 'tools/call', params: { name: 'echo', arguments: {} } },
      ]) {
        const res = await mcpPost(resource, message, headers);
        assert.equal(res.status, 400, JSON.stringify(message));
        assert.equal((res.json!.error as { code: number }).code, -32600);
        const event = await eventFor(res.headers.get('x-request-id'));
        assert.equal(event?.rejection, 'malformed');
      }
      const ok = await mcpPost(resource, { jsonrpc: '2.0', method: 'notifications/initialized' }, headers);
      assert.equal(ok.status, 202);
    });

    it('a batch carrying a tools/call is refused (MCP 2025-11-25 has no JSON-RPC batching)', async () => {
      const res = await mcpPost(resource, [toolCall('transfer', {}, 1202), { jsonrpc: '2.0', method: 'tools/call', params: { name: 'transfer' } }], headers);
      assert.equal(res.status, 400);
      assert.equal((res.json!.error as { code: number }).code, -32600);
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.equal(event?.reason, 'JSON-RPC batches are not supported by MCP');
    });

    it('duplicate keys: the upstream gets the message the gateway authorized, re-serialized, never the raw body', async () => {
      // The gateway (JSON.parse) reads the last "name"; a first-wins parser upstream would run transfer.
      const raw = '{"jsonrpc":"2.0","id":1203,"method":"tools/call","params":{"name":"transfer","name":"echo","arguments":{"marker":"dup-1203"}}}';
      const res = await mcpPost(resource, raw, headers);
      assert.equal(res.status, 200, res.text);
      const forwarded = upstream.requests.find((request) => request.body.includes('dup-1203'))!;
      assert.equal(forwarded.body, '{"jsonrpc":"2.0","id":1203,"method":"tools/call","params":{"name":"echo","arguments":{"marker":"dup-1203"}}}');
      assert.equal(forwarded.headers['content-length'], String(Buffer.byteLength(forwarded.body)));
      const event = await eventFor(res.headers.get('x-request-id'));
      assert.equal(event?.tool, 'echo');
      assert.equal(event?.decision, 'allow');
      // And the refusal the gateway makes on its reading holds: transfer last is refused for a read-only token.
      const reversed = await mcpPost(resource, '{"jsonrpc":"2.0","id":1204,"method":"tools/call","params":{"name":"echo","name":"transfer","arguments":{"marker":"dup-1204"}}}', headers);
      assert.equal(reversed.status, 403);
      assert.equal((reversed.json!.error as { code: number }).code, -32003);
      assert.equal((await eventFor(reversed.headers.get('x-request-id')))?.rejection, 'insufficient_scope');
      assert.ok(!reached('dup-1204'));
    });
  });
});
