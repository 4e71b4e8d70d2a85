/**
 * Tool pinning on the Workers gateway (issue 18 follow-up), in workerd: a Worker has no file
 * system, so the reviewed snapshot is given inline in the route config (`tool_pins.snapshot` as
 * the object `mandate gateway pin` writes). The tools it pins pass; one listed with another hash
 * than the reviewed one (changed) and one it does not name (new) are hidden and their calls
 * refused (403, -32003, the audit reason). A snapshot named by a file path cannot be read there:
 * the routes do not build (500, the reason in the Worker's log).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pinnedDefinition, toolHash } from '../../src/core/tool-hash.ts';
import { callWorker, EDGE_SKIP_REASON, edgeAvailable, startPersistedGateway, workerEntryBench, type PersistedGateway } from '../helpers/edge-worker.ts';
import { basic, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { listedTools, mcpPost, startScriptedUpstream, toolCall, UPSTREAM_TOOLS } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

const GATEWAY_SECRET = 'edge-pins-gateway-secret-0123456789abcd';
const AGENT_SECRET = 'edge-pins-agent-secret-0123456789abcdef0';
const RESOURCE = 'https://edge.pins.test/mcp';

/** The snapshot of the scripted upstream's tools, as `mandate gateway pin` writes it. */
async function snapshotOf(names: string[]) {
  return {
    resource: RESOURCE,
    tools: await Promise.all(
      names.map(async (name) => {
        const definition = pinnedDefinition({ name, inputSchema: { type: 'object' } })!;
        return { name, hash: await toolHash(definition), definition: definition as Record<string, unknown> };
      }),
    ),
  };
}

describe('tool pins on the Workers gateway, in workerd: the snapshot inline', skipUnless(edgeAvailable, EDGE_SKIP_REASON), () => {
  let as: TestAuthServer;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: PersistedGateway | undefined;
  let token: string;

  before(async () => {
    process.env.TEST_EDGE_PINS_GATEWAY = GATEWAY_SECRET;
    process.env.TEST_EDGE_PINS_AGENT = AGENT_SECRET;
    as = await startTestAuthServer({
      clients: [
        { client_id: 'edge-pins-gateway', client_name: 'Pinning gateway', client_secret_env: 'TEST_EDGE_PINS_GATEWAY', grant_types: ['client_credentials'], tool_pins: 'allowed' },
        { client_id: 'edge-pins-agent', client_name: 'Agent', client_secret_env: 'TEST_EDGE_PINS_AGENT', grant_types: ['client_credentials'] },
      ],
      resources: [{ id: RESOURCE, name: 'Edge pins', scopes: [{ name: 'edge:use' }], resource_servers: ['edge-pins-gateway'] }],
    });
    upstream = await startScriptedUpstream();
    // Reviewed: every tool but `slow` (so it is new), and `transfer` with another definition than it lists now (so it changed).
    const reviewed = await snapshotOf(UPSTREAM_TOOLS.filter((name) => name !== 'slow'));
    reviewed.tools = reviewed.tools.map((tool) => (tool.name === 'transfer' ? { ...tool, hash: 'A'.repeat(43) } : tool));
    gateway = await startPersistedGateway(
      () => [
        {
          path: '/mcp',
          upstream: upstream.url,
          resource: RESOURCE,
          authorization_servers: [as.issuer],
          tools: listedTools(),
          tool_pins: { client_id: 'edge-pins-gateway', client_secret_env: 'PINS_SECRET', negative_cache_seconds: 0, snapshot: reviewed },
        },
      ],
      { instances: 1, bindings: [`PINS_SECRET=${GATEWAY_SECRET}`], prefix: 'mandate-edge-pins-' },
    );
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: RESOURCE }, { authorization: basic('edge-pins-agent', AGENT_SECRET) });
    assert.equal(res.status, 200, res.text);
    token = res.json.access_token as string;
  });
  after(async () => {
    await gateway?.dispose();
    await upstream?.close();
    await as?.close();
  });

  const post = async (message: unknown) => {
    const res = await mcpPost(`${gateway!.origin}/mcp`, message, { authorization: `Bearer ${token}` });
    const requestId = res.headers.get('x-request-id');
    const event = await gateway!.worker().waitForLine('mandate-gateway', (line) => line.request_id === requestId);
    return { ...res, event };
  };

  it('tools/list: the snapshot pins the reviewed tools; the changed and the new one are hidden (pinned to the snapshot at the AS)', async () => {
    const listed = await post({ jsonrpc: '2.0', id: 1, method: 'tools/list' });
    assert.equal(listed.status, 200, listed.text);
    const names = (listed.json!.result as { tools: { name: string }[] }).tools.map((tool) => tool.name);
    assert.deepEqual(names, UPSTREAM_TOOLS.filter((name) => name !== 'slow' && name !== 'transfer'));
    assert.deepEqual(listed.event.tool_pins, { new: ['slow'], changed: ['transfer'], hidden: ['transfer', 'slow'] });
    const pins = new Map((await as.store.toolPins.list({ resource: RESOURCE, limit: 100 })).map((pin) => [pin.tool, pin]));
    assert.deepEqual([pins.get('echo')!.status, pins.get('echo')!.approvedBy], ['pinned', 'snapshot']);
    assert.deepEqual([pins.get('transfer')!.status, pins.get('transfer')!.approvedHash, pins.get('transfer')!.approvedBy], ['changed', 'A'.repeat(43), 'snapshot']);
    assert.equal(pins.get('slow')!.status, 'new');
  });

  it('tools/call: a pinned tool passes; the changed one is refused (403, -32003, tool_pin_changed) and never reaches the upstream', async () => {
    const echo = await post(toolCall('echo', { n: 1 }, 2));
    assert.equal(echo.status, 200, echo.text);
    assert.equal(echo.event.decision, 'allow');
    const forwarded = upstream.requests.length;
    const transfer = await post(toolCall('transfer', { amount: 1 }, 3));
    assert.equal(transfer.status, 403, transfer.text);
    const error = transfer.json!.error as { code: number; data: unknown };
    assert.equal(error.code, -32003);
    assert.deepEqual(error.data, { tool: 'transfer', pin: 'changed' });
    assert.equal(transfer.event.rejection, 'tool_pin_changed');
    assert.match(String(transfer.event.reason), new RegExp(`^tool transfer: definition [A-Za-z0-9_-]{43} is changed, approved ${'A'.repeat(43)}`));
    assert.equal(upstream.requests.length, forwarded, 'the refused call was not forwarded');
  });
});

describe('tool pins on the Workers gateway: a snapshot file path', () => {
  const bench = workerEntryBench(RESOURCE);

  it('cannot be read (no file system): the routes do not build — 500 "gateway not configured", the reason logged', async () => {
    const config = {
      routes: [
        {
          path: '/mcp',
          upstream: 'http://127.0.0.1:9/',
          resource: RESOURCE,
          authorization_servers: [bench.issuer.issuer],
          tool_pins: { client_id: 'edge-pins-gateway', client_secret_env: 'PINS_SECRET', snapshot: 'bank-tools.json' },
        },
      ],
    };
    const { response, body, event } = await callWorker(new Request(`https://edge.test/mcp`, { method: 'POST', body: '{}' }), { MANDATE_GATEWAY_CONFIG: JSON.stringify(config), PINS_SECRET: GATEWAY_SECRET }, bench.lines);
    assert.equal(response.status, 500);
    assert.deepEqual(body.error, { code: -32603, message: 'gateway not configured' });
    assert.equal(event, undefined);
    const logged = bench.errors.map((line) => JSON.parse(line) as { reason: string }).at(-1)!;
    assert.match(logged.reason, /tool_pins: tool_pins\.snapshot bank-tools\.json: this runtime has no file system to read it from; give the snapshot inline/);
  });
});
