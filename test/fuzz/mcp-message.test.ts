import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { gatewayConfigSchema } from '../../src/config/gateway-schema.ts';
import { JsonLimitError, parseJsonWithin } from '../../src/core/json-limits.ts';
import { gatewayApp } from '../../src/gateway/chain.ts';
import type { Forwarder, UpstreamTarget } from '../../src/gateway/filters/proxy.ts';
import { JsonRpcError, parseMcpMessage, type McpMessage } from '../../src/gateway/mcp-message.ts';
import { compileRoute, type CompiledRoute } from '../../src/gateway/route.ts';
import { auditLine } from '../../src/gateway/node/audit-writer.ts';
import type { GatewayAuditEvent } from '../../src/gateway/types.ts';
import { MCP_HEADERS, startFakeIssuer } from '../helpers/gateway.ts';
import { counted } from './count.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const MAX_DEPTH = 64;
const RESOURCE = 'https://fuzz.example/mcp';
/** The tools the fuzzed route lets a `banking:read` token call; `transfer` needs a scope it lacks. */
const CALLABLE = new Set(['echo', 'read_balance']);

/** Nesting depth of a parsed value, without recursion (the top level is 1; scalars are 0). */
function depth(value: unknown): number {
  let deepest = 0;
  const stack: [unknown, number][] = [[value, 1]];
  while (stack.length > 0) {
    const [item, level] = stack.pop()!;
    if (typeof item !== 'object' || item === null) continue;
    deepest = Math.max(deepest, level);
    for (const child of Array.isArray(item) ? item : Object.values(item)) stack.push([child, level + 1]);
  }
  return deepest;
}

/** The gateway's own reading of a body: the message, or undefined when it must be refused. */
function oracle(text: string): McpMessage | undefined {
  try {
    return parseMcpMessage(parseJsonWithin(text, { maxDepth: MAX_DEPTH }));
  } catch (error) {
    if (error instanceof JsonLimitError || error instanceof JsonRpcError) return undefined;
    throw error;
  }
}

const anything = fc.oneof(fc.jsonValue({ maxDepth: 3 }), fc.constant(undefined));
const ids = fc.oneof(fc.integer(), fc.string({ maxLength: 8 }), fc.constant(null), fc.double(), fc.constant(2 ** 53 + 1), fc.constant(undefined), fc.boolean());
const methods = fc.oneof(
  { arbitrary: fc.constantFrom('tools/call', 'tools/list', 'initialize', 'ping', 'resources/read', 'prompts/get', 'notifications/initialized', 'notifications/cancelled', 'notifications/progress'), weight: 6 },
  { arbitrary: fc.string({ maxLength: 20 }), weight: 1 },
  { arbitrary: anything, weight: 1 },
);
const toolNames = fc.oneof(fc.constantFrom('echo', 'read_balance', 'transfer', 'unlisted', ''), fc.string({ maxLength: 10 }), anything);
const params = fc.oneof(
  { arbitrary: fc.record({ name: toolNames, arguments: fc.oneof(fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue({ maxDepth: 4 }), { maxKeys: 4 }), anything) }, { requiredKeys: [] }), weight: 4 },
  { arbitrary: anything, weight: 1 },
);
/** JSON-RPC shaped objects: mostly plausible MCP, often with one member wrong. */
const mcpShaped = fc.record({ jsonrpc: fc.oneof({ arbitrary: fc.constant('2.0'), weight: 6 }, { arbitrary: anything, weight: 1 }), id: ids, method: methods, params, result: anything, error: anything }, { requiredKeys: [] });

/** Text nested `levels` deep at the arguments, with objects or arrays. */
const deepBody = fc.tuple(fc.integer({ min: 1, max: 30_000 }), fc.boolean(), fc.integer({ min: 1, max: 1000 })).map(([levels, arrays, id]) => {
  const open = arrays ? '[' : '{"a":';
  const close = arrays ? ']' : '}';
  return `{"jsonrpc":"2.0","id":${id},"method":"tools/call","params":{"name":"echo","arguments":{"x":${open.repeat(levels)}1${close.repeat(levels)}}}}`;
});

/** A valid message with duplicate members spliced in, so that first-wins and last-wins readings differ. */
const duplicated = fc.tuple(fc.constantFrom('echo', 'transfer', 'unlisted'), fc.constantFrom('echo', 'transfer', 'unlisted'), fc.constantFrom('"id":1', '"id":null', '"jsonrpc":"1.0"', '"method":"notifications/x"')).map(
  ([first, second, extra]) => `{"jsonrpc":"2.0","id":7,${extra},"method":"tools/call","params":{"name":"${first}","arguments":{},"name":"${second}"}}`,
);

/** A valid message with characters inserted or removed. */
const mutated = fc.tuple(mcpShaped.map((m) => JSON.stringify(m) ?? ''), fc.nat(), fc.string({ maxLength: 3 }), fc.nat({ max: 3 })).map(([text, at, insert, remove]) => {
  const i = text.length === 0 ? 0 : at % text.length;
  return text.slice(0, i) + insert + text.slice(i + remove);
});

const bodies = fc.oneof(
  { arbitrary: mcpShaped.map((m) => JSON.stringify(m) ?? ''), weight: 6 },
  { arbitrary: mutated, weight: 3 },
  { arbitrary: duplicated, weight: 2 },
  { arbitrary: deepBody, weight: 1 },
  { arbitrary: fc.json(), weight: 1 },
  { arbitrary: fc.string({ unit: 'binary' }), weight: 1 },
  { arbitrary: fc.uint8Array({ maxLength: 64 }).map((bytes) => Buffer.from(bytes).toString('latin1')), weight: 1 },
);

/**
 * The JSON-RPC/MCP parser (src/core/json-limits.ts, src/gateway/mcp-message.ts) and the gateway
 * app in front of an upstream that records what it is sent: never a crash, never a 500, never a
 * malformed message or a refused tool forwarded, and one audit event for every request.
 */
describe('fuzz: MCP messages at the gateway', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let route: CompiledRoute;
  let app: ReturnType<typeof gatewayApp>;
  let token: string;
  const events: GatewayAuditEvent[] = [];
  const forwarded: UpstreamTarget[] = [];

  before(async () => {
    issuer = await startFakeIssuer();
    const config = gatewayConfigSchema.parse({
      routes: [{ path: '/mcp', upstream: 'http://upstream.invalid/mcp', resource: RESOURCE, authorization_servers: [issuer.issuer], tools: { echo: {}, read_balance: {}, transfer: { scopes: ['banking:transfer'] } } }],
    });
    route = compileRoute(config.routes[0]!, 0, { env: {} });
    // The upstream: records the request, answers one JSON-RPC result. No socket per input.
    const forwarder: Forwarder = {
      async forward(_c, target) {
        forwarded.push(target);
        return new Response('{"jsonrpc":"2.0","id":1,"result":{}}', { status: 200, headers: { 'content-type': 'application/json' } });
      },
      close: async () => {},
    };
    // Each event goes through the audit writer's serializer, as it would to the file: it must
    // come out whole (no audit_error), whatever the message was.
    const record = (event: GatewayAuditEvent) => {
      const line = JSON.parse(auditLine(event)) as Record<string, unknown>;
      assert.equal(line.audit_error, undefined, String(line.audit_error));
      events.push(event);
    };
    app = gatewayApp([route], { observer: { ready: () => undefined, record }, forwarder });
    token = await issuer.sign({ sub: 'fuzz', aud: RESOURCE, scope: 'banking:read' });
  });
  after(async () => {
    route.close();
    await issuer.close();
  });

  it('the parser: only its own errors, and what it accepts is well formed and survives re-serialization', () => {
    fc.assert(
      fc.property(
        bodies,
        counted('mcp-message: parser', (text: string) => {
          const message = oracle(text);
          if (!message) return;
          assert.ok(depth(JSON.parse(text)) <= MAX_DEPTH, 'nothing deeper than the limit is accepted');
          if (message.kind !== 'response') assert.ok(typeof message.method === 'string' && message.method !== '');
          if (message.kind === 'notification') assert.ok(message.method!.startsWith('notifications/'), `notification ${message.method}`);
          if (message.kind === 'request' || message.kind === 'response') assert.ok(typeof message.id === 'string' || Number.isSafeInteger(message.id));
          if (message.method === 'tools/call') {
            assert.equal(message.kind, 'request');
            assert.ok(typeof message.toolName === 'string' && message.toolName !== '');
            assert.ok(typeof message.arguments === 'object' && message.arguments !== null && !Array.isArray(message.arguments));
          }
          // What the gateway forwards reads the same to it again.
          const again = oracle(JSON.stringify(parseJsonWithin(text, { maxDepth: MAX_DEPTH })));
          assert.deepEqual(again, message);
        }),
      ),
      { numRuns: RUNS },
    );
  });

  it('the gateway app: no 500, malformed or refused messages never forwarded, one audit event per request', async () => {
    await fc.assert(
      fc.asyncProperty(
        bodies,
        fc.boolean(),
        counted('mcp-message: gateway app', async (text: string, withToken: boolean) => {
          const eventsBefore = events.length;
          const forwardedBefore = forwarded.length;
          const headers: Record<string, string> = { ...MCP_HEADERS };
          if (withToken) headers.authorization = `Bearer ${token}`;
          const res = await app.request('/mcp', { method: 'POST', headers, body: text });
          const answer = await res.text();
          assert.ok(res.status < 500, `${res.status} ${answer} for ${text.slice(0, 200)}`);
          assert.equal(events.length, eventsBefore + 1, 'exactly one audit event');
          const event = events.at(-1)!;
          assert.equal(event.status, res.status);
          const message = oracle(text);
          const sent = forwarded.slice(forwardedBefore);
          if (!message || !withToken) {
            assert.equal(sent.length, 0, `forwarded ${text.slice(0, 200)}`);
            assert.equal(event.decision, 'deny');
            assert.ok(res.status >= 400);
            return;
          }
          if (message.method === 'tools/call' && !CALLABLE.has(message.toolName!)) {
            assert.equal(sent.length, 0, `tool ${message.toolName} forwarded`);
            assert.equal(res.status, 403);
            return;
          }
          assert.equal(sent.length, 1, `${res.status} ${answer}`);
          // The upstream reads exactly the message the gateway decided on.
          assert.deepEqual(oracle(sent[0]!.body!), message);
          assert.equal(event.decision, 'allow');
        }),
      ),
      { numRuns: RUNS },
    );
  });
});
