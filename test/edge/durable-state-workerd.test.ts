/**
 * The Worker's `GatewayState` Durable Object in workerd (issue 16: "Durable Object state survives a
 * Worker restart"): the bundle runs under Miniflare (Node 22 from .cache/edge) with GATEWAY_STATE
 * persisted to a directory, twice (`--instances 2`: two isolates, as Cloudflare runs many, sharing
 * the first one's objects); the calls alternate between them, so a budget and a session are shared
 * only if they really are in the object. workerd is stopped and started again on the same directory,
 * and the spent budget and the session's owner are still there. Loopback only, bounded in time.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { EDGE_SKIP_REASON, edgeAvailable, startPersistedGateway, type PersistedGateway } from '../helpers/edge-worker.ts';
import { listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, toolCall } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

describe('the gateway\'s Durable Object state in workerd, across a restart', skipUnless(edgeAvailable, EDGE_SKIP_REASON), () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: PersistedGateway | undefined;
  let resource: string;
  /** The second isolate's `/mcp` (its own loopback port; the tokens' audience is the first's). */
  let other: string;

  async function start(): Promise<void> {
    await gateway!.start();
    other = `${gateway!.urls()[1]}/mcp`;
  }

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    const route = { upstream: upstream.url, authorization_servers: [issuer.issuer], scopes: ['banking:read'], tools: listedTools() };
    gateway = await startPersistedGateway((origin) => [{ path: '/mcp', resource: `${origin}/mcp`, ...route, rate_limits: [{ name: 'per-subject', key: ['subject'], limit: 3, window_seconds: 600 }] }], { prefix: 'mandate-edge-do-' });
    resource = `${gateway.origin}/mcp`;
    other = `${gateway.urls()[1]}/mcp`;
  });

  after(async () => {
    await gateway?.dispose();
    await upstream?.close();
    await issuer?.close();
  });

  const bearer = async (sub: string, clientId = 'agent-1') => ({ authorization: `Bearer ${await issuer.sign({ sub, aud: resource, client_id: clientId, scope: 'banking:read' })}` });
  const initialize = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } };

  it('a spent budget stays spent, and a session keeps its owner, after workerd restarts', async () => {
    // alice opens a session (the upstream gives out `upstream-session`): bound to her in the object.
    const alice = await bearer('alice');
    const opened = await mcpPost(resource, initialize, alice);
    assert.equal(opened.status, 200, opened.text);
    const session = opened.headers.get('mcp-session-id');
    assert.equal(session, 'upstream-session');
    assert.equal((await mcpPost(other, toolCall('echo', {}, 2), { ...alice, 'mcp-session-id': session })).status, 200, 'bound through one isolate, known to the other');
    assert.equal((await mcpPost(other, toolCall('echo', {}, 2), { ...(await bearer('bob')), 'mcp-session-id': session })).status, 404);
    // (The scripted upstream names every answer `upstream-session`: carol's answers cannot rebind it.)
    const carol = await bearer('carol');
    for (let i = 1; i <= 2; i++) assert.equal((await mcpPost(i === 1 ? resource : other, toolCall('echo', {}, i), carol)).status, 200);

    await gateway!.stop();
    assert.ok(readdirSync(gateway!.persist).length > 0, 'the Durable Object state is on disk');
    await start();

    // Two of carol's three calls were spent before the restart: one left, then 429.
    assert.equal((await mcpPost(resource, toolCall('echo', {}, 3), carol)).status, 200);
    const refused = await mcpPost(resource, toolCall('echo', {}, 4), carol);
    assert.equal(refused.status, 429, refused.text);
    assert.equal((refused.json!.error as { code: number }).code, -32029);
    assert.ok(Number(refused.headers.get('retry-after')) > 500, 'the window started before the restart, 600 s long');

    // The session is still alice's: bob (another subject) gets 404, as for an unknown session.
    const before = upstream.requests.length;
    const hijack = await mcpPost(other, toolCall('echo', {}, 5), { ...(await bearer('bob')), 'mcp-session-id': session });
    assert.equal(hijack.status, 404, hijack.text);
    assert.equal((hijack.json!.error as { code: number }).code, -32001);
    assert.equal(upstream.requests.length, before, 'nothing forwarded');
    // …so is alice through another client, and an id bound nowhere.
    assert.equal((await mcpPost(resource, toolCall('echo', {}, 6), { ...(await bearer('alice', 'agent-2')), 'mcp-session-id': session })).status, 404);
    assert.equal((await mcpPost(resource, toolCall('echo', {}, 7), { ...alice, 'mcp-session-id': 'never-opened' })).status, 404);
    const own = await mcpPost(other, toolCall('echo', { again: true }, 8), { ...alice, 'mcp-session-id': session });
    assert.equal(own.status, 200, own.text);
    assert.equal(upstream.requests.at(-1)!.headers['mcp-session-id'], session);
  });

  it('two isolates share one budget (the session above, opened and refused through either, shows the same for bindings)', async () => {
    const erin = await bearer('erin');
    const statuses = [];
    for (let i = 1; i <= 4; i++) statuses.push((await mcpPost(i % 2 ? resource : other, toolCall('echo', {}, i), erin)).status);
    assert.deepEqual(statuses, [200, 200, 200, 429], 'three calls in all, whichever isolate counts them');
  });
});
