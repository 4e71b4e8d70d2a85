/**
 * The Todo MCP server's Worker with `TODO_MCP_DPOP=allow`, in workerd (the bundle of
 * `npm run edge:build`): a DPoP-bound token with its proof is accepted, the same token sent as
 * Bearer and a proof for another URL are refused with their exact errors, and the Worker logs each
 * refusal with its reason. Loopback only; workerd stopped at the end.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDpopProof, generateDpopKey, type DpopKey } from '../../src/core/dpop.ts';
import { DEMO_PASSWORD_HASH, freePort, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { EDGE_SKIP_REASON, edgeAvailable, startEdgeWorker, type EdgeWorker } from '../helpers/edge-worker.ts';
import { MCP_HEADERS } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

const SECRET = 'todo-mcp-edge-dpop-secret-0123456789ab';
const REDIRECT = 'http://127.0.0.1:3999/callback';
const LOG = 'mandate-todo-mcp';

describe('the Todo MCP Worker with TODO_MCP_DPOP=allow, in workerd', skipUnless(edgeAvailable, EDGE_SKIP_REASON), () => {
  let as: TestAuthServer;
  let worker: EdgeWorker | undefined;
  let dir: string;
  let resource: string;
  let key: DpopKey;
  let bound: string;
  const initialize = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 't', version: '1' } } });
  const post = async (headers: Record<string, string>) => {
    const res = await fetch(resource, { method: 'POST', headers: { ...MCP_HEADERS, ...headers }, body: initialize });
    return { status: res.status, headers: res.headers, json: JSON.parse(await res.text()) as Record<string, unknown> };
  };
  const proof = (htu = resource) => createDpopProof(key, { htm: 'POST', htu, accessToken: bound, body: new TextEncoder().encode(initialize) });

  before(async () => {
    const port = await freePort();
    resource = `http://127.0.0.1:${port}/mcp`;
    process.env.TEST_TODO_MCP_DPOP_SECRET = SECRET;
    as = await startTestAuthServer({
      users: [{ username: 'demo', name: 'Demo User', email: 'demo@example.com', password_hash: DEMO_PASSWORD_HASH }],
      dpop: { enabled: true } as never,
      clients: [
        { client_id: 'todo-mcp', client_secret_env: 'TEST_TODO_MCP_DPOP_SECRET', grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'] as never },
        { client_id: 'app', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT] },
      ] as never,
      resources: [{ id: resource, name: 'Todo MCP server', scopes: [{ name: 'todo_api:read' }], resource_servers: ['todo-mcp'] }] as never,
    });
    dir = mkdtempSync(join(tmpdir(), 'mandate-edge-todo-dpop-'));
    const script = join(dir, 'todo-mcp.js');
    const built = spawnSync(process.execPath, ['scripts/build-edge.mjs', '--entry', 'todo-mcp', '--outfile', script], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(built.status, 0, built.stderr);
    worker = await startEdgeWorker([
      '--entry', 'todo-mcp', '--script', script, '--host', '127.0.0.1', '--port', String(port), '--persist', join(dir, 'state'),
      '--binding', `TODO_MCP_ISSUER=${as.issuer}`,
      '--binding', `TODO_MCP_RESOURCE=${resource}`,
      '--binding', 'TODO_API_URL=http://127.0.0.1:9',
      '--binding', 'TODO_MCP_CLIENT_ID=todo-mcp',
      '--binding', `TODO_MCP_CLIENT_SECRET=${SECRET}`,
      '--binding', 'TODO_MCP_REVOCATION_POLL_SECONDS=1',
      '--binding', 'TODO_MCP_DPOP=allow',
    ]);
    key = await generateDpopKey();
    const { verifier, challenge } = pkcePair();
    const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'app', redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource, scope: 'todo_api:read', state: 's' })}`;
    const back = await new FormBrowser(as.issuer).authorize(url, { username: 'demo', password: 'demo' });
    const token = await postForm(
      `${as.issuer}/token`,
      { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT, client_id: 'app' },
      { dpop: await createDpopProof(key, { htm: 'POST', htu: `${as.issuer}/token` }) },
    );
    assert.equal(token.json.token_type, 'DPoP', token.text);
    bound = token.json.access_token as string;
  });
  after(async () => {
    await worker?.stop();
    await as?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the metadata lists the proof algorithms; a DPoP-bound token with its proof opens a session', async () => {
    const prm = (await (await fetch(`${new URL(resource).origin}/.well-known/oauth-protected-resource/mcp`)).json()) as Record<string, unknown>;
    assert.deepEqual(prm.dpop_signing_alg_values_supported, ['ES256', 'ES384', 'PS256', 'RS256', 'EdDSA']);
    // The first request of an isolate waits for the revocation list: retried until it is loaded.
    let res = await post({ authorization: `DPoP ${bound}`, dpop: await proof() });
    for (let i = 0; i < 100 && res.status === 503; i++) {
      await new Promise((resolve) => setTimeout(resolve, 50));
      res = await post({ authorization: `DPoP ${bound}`, dpop: await proof() });
    }
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.match(res.headers.get('mcp-session-id') ?? '', /^[0-9a-f-]{36}$/);
  });

  it('the same token sent as Bearer → 401 invalid_token, logged with the reason', async () => {
    const res = await post({ authorization: `Bearer ${bound}` });
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_token');
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer resource_metadata="[^"]+", error="invalid_token", error_description="the access token is DPoP-bound/);
    const line = await worker!.waitForLine(LOG, (l) => l.status === 401 && l.error === 'invalid_token');
    assert.equal(line.reason, 'a DPoP-bound access token (cnf.jkt) was presented with the Bearer scheme');
  });

  it('a proof for another URL → 401 invalid_dpop_proof with a DPoP challenge, logged with the reason', async () => {
    const res = await post({ authorization: `DPoP ${bound}`, dpop: await proof('http://127.0.0.1:1/mcp') });
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_dpop_proof');
    assert.match(res.headers.get('www-authenticate') ?? '', /^DPoP algs="ES256 ES384 PS256 RS256 EdDSA", resource_metadata="[^"]+", error="invalid_dpop_proof"/);
    const line = await worker!.waitForLine(LOG, (l) => l.error === 'invalid_dpop_proof');
    assert.equal(line.reason, 'the DPoP proof htu does not match the request URL');
  });
});
