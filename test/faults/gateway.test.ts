import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import { postForm } from '../helpers/auth-server.ts';
import { serviceAuth, startFaultAuthServer, processCrashes, type FaultAuthServer } from '../helpers/fault-servers.ts';
import { listedTools, mcpPost, startScriptedUpstream, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';
import { until } from '../helpers/private-services.ts';

/**
 * Issue 11, item 10: the authorization server stopped while gateways serve. Valid tokens keep
 * working from the keys the gateway has — across a route reload, and across a restart when it has
 * a data dir — and a gateway with no key for a token answers 503, never 401, until the AS is back.
 */
describe('fault suite: the authorization server down behind gateways', () => {
  let as: FaultAuthServer;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  const gateways: TestGateway[] = [];
  const dataDir = mkdtempSync(join(tmpdir(), 'mandate-fault-gw-'));
  let token: string;

  const gateway = async (extra: { data_dir?: string } = {}) => {
    const started = await startTestGateway(() => [{ path: '/mcp', upstream: upstream.url, tools: listedTools(), resource: as.resource, authorization_servers: [as.issuer] }], extra, {});
    gateways.push(started);
    return started;
  };
  const call = (gw: TestGateway, id: number) => mcpPost(`${gw.url}/mcp`, toolCall('echo', { id }, id), { authorization: `Bearer ${token}` });

  before(async () => {
    as = await startFaultAuthServer({ driver: 'sqlite', env: {} });
    upstream = await startScriptedUpstream();
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', scope: 'mcp:read' }, serviceAuth(as));
    assert.equal(res.status, 200, res.text);
    token = res.json.access_token as string;
  });
  after(async () => {
    for (const gw of gateways) await gw.close().catch(() => undefined);
    await upstream?.close();
    await as?.close();
    as?.remove();
    rmSync(dataDir, { recursive: true, force: true });
  });
  // Whatever would have killed a service process fails the test that caused it.
  afterEach(() => assert.deepEqual(processCrashes(), []));

  it('keeps valid tokens working with the AS stopped, across a route reload and a restart', async () => {
    const first = await gateway({ data_dir: dataDir });
    assert.equal((await call(first, 1)).status, 200);
    const saved = join(dataDir, 'signing-keys.json');
    await until(async () => existsSync(saved), 5_000, 'the keys saved');
    const file = readFileSync(saved, 'utf8');
    assert.ok(!/"d"\s*:/.test(file), 'no private key member in the saved file');
    assert.ok((JSON.parse(file) as { keys: Record<string, unknown[]> }).keys[as.issuer]?.length, 'saved under the issuer');

    await as.close();
    assert.equal((await call(first, 2)).status, 200, 'cached keys serve while the AS is down');
    assert.equal(await first.reload(), true);
    const reloaded = await call(first, 3);
    assert.equal(reloaded.status, 200, `after a reload with the AS down: ${reloaded.status} ${reloaded.text}`);

    await first.close();
    const restarted = await gateway({ data_dir: dataDir });
    const res = await call(restarted, 4);
    assert.equal(res.status, 200, `after a restart with the AS down: ${res.status} ${res.text}`);
  });

  it('answers 503 temporarily_unavailable, not 401, when it has no key and the AS is down; recovers when it is back', async () => {
    const empty = await gateway();
    const res = await call(empty, 5);
    assert.equal(res.status, 503, res.text);
    assert.ok(Number(res.headers.get('retry-after')) > 0);
    assert.equal((res.json?.error as { code: number }).code, -32603);
    const event = (await empty.auditEvents()).find((e) => e.jsonrpc_id === 5)!;
    assert.equal(event.rejection, 'validation_unavailable');
    assert.match(event.reason as string, /not among the cached keys, and the JWKS cannot be fetched/);

    as = await startFaultAuthServer({ driver: 'sqlite', env: {}, port: as.port, dataDir: as.dataDir });
    const recovery = await until(async () => (await call(empty, 6)).status === 200, 30_000, 'the gateway validating again');
    console.log(`# AS down behind a gateway: 200 again ${recovery} ms after the AS came back`);
  });
});
