/**
 * DPoP proof `jti`s in the Worker's `GatewayState` Durable Object (issue 17), in workerd: the bundle
 * in two isolates (`--instances 2`, sharing the first one's objects) with the objects persisted to a
 * directory. A proof accepted through one isolate is refused as a replay through the other, and
 * still after workerd restarts on the same directory: 401, the DPoP challenge with
 * `invalid_dpop_proof`, and `dpop_replay` in the audit. Loopback only; workerd is stopped at the end.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createDpopProof, generateDpopKey, jwkThumbprint } from '../../src/core/dpop.ts';
import { freePort } from '../helpers/auth-server.ts';
import { buildEdgeBundle, EDGE_SKIP_REASON, edgeAvailable, startEdgeWorker, type EdgeWorker } from '../helpers/edge-worker.ts';
import { listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, toolCall } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

const ALGS = 'ES256 ES384 PS256 RS256 EdDSA';

describe('DPoP proof replay across isolates and restarts, in workerd', skipUnless(edgeAvailable, EDGE_SKIP_REASON), () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let worker: EdgeWorker | undefined;
  let dir: string;
  let script: string;
  let configFile: string;
  let persist: string;
  let port: number;
  /** The route's public URL (the first isolate's origin: the proofs' htu and the tokens' aud). */
  let resource: string;

  const start = async () => {
    worker = await startEdgeWorker(['--config', configFile, '--script', script, '--host', '127.0.0.1', '--port', String(port), '--persist', persist, '--instances', '2']);
    assert.equal(worker.urls[0], `http://127.0.0.1:${port}`);
  };
  const stop = async () => {
    await worker?.stop();
    worker = undefined;
  };

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    dir = mkdtempSync(join(tmpdir(), 'mandate-edge-dpop-'));
    script = buildEdgeBundle(join(dir, 'gateway.js'));
    persist = join(dir, 'state');
    port = await freePort();
    resource = `http://127.0.0.1:${port}/mcp`;
    configFile = join(dir, 'gateway.json');
    writeFileSync(configFile, JSON.stringify({ routes: [{ path: '/mcp', upstream: upstream.url, resource, authorization_servers: [issuer.issuer], tools: listedTools(), dpop: { mode: 'require' } }] }));
    await start();
  });

  after(async () => {
    await stop();
    await upstream?.close();
    await issuer?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const body = JSON.stringify(toolCall('echo', { n: 1 }));
  async function proofAndToken() {
    const key = await generateDpopKey();
    const token = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', cnf: { jkt: await jwkThumbprint(key.publicJwk) } });
    const proof = await createDpopProof(key, { htm: 'POST', htu: resource, accessToken: token, body: new TextEncoder().encode(body) });
    return { authorization: `DPoP ${token}`, dpop: proof };
  }
  const post = (origin: string, headers: Record<string, string>) => mcpPost(`${origin}/mcp`, body, headers);

  async function assertReplayRefused(res: Awaited<ReturnType<typeof post>>) {
    assert.equal(res.status, 401, res.text);
    assert.equal((res.json!.error as { code: number }).code, -32001);
    assert.equal(res.headers.get('www-authenticate'), `DPoP algs="${ALGS}", resource_metadata="http://127.0.0.1:${port}/.well-known/oauth-protected-resource/mcp", error="invalid_dpop_proof"`);
    const requestId = res.headers.get('x-request-id');
    const event = await worker!.waitForLine('mandate-gateway', (line) => line.request_id === requestId);
    assert.equal(event.decision, 'deny');
    assert.equal(event.status, 401);
    assert.equal(event.rejection, 'dpop_replay');
    assert.equal(event.reason, 'the DPoP proof jti was used before');
  }

  it('a proof accepted by isolate A is refused as a replay by isolate B, and by both after a restart', async () => {
    const [a, b] = worker!.urls as [string, string];
    const headers = await proofAndToken();
    const forwarded = upstream.requests.length;
    const first = await post(a, headers);
    assert.equal(first.status, 200, first.text);
    assert.equal(upstream.requests.length, forwarded + 1);

    await assertReplayRefused(await post(b, headers));
    await assertReplayRefused(await post(a, headers));

    // Another proof of the same key and token is a new jti: accepted through B.
    const fresh = await proofAndToken();
    assert.equal((await post(b, fresh)).status, 200);

    await stop();
    assert.ok(readdirSync(persist).length > 0, 'the Durable Object state is on disk');
    await start();
    await assertReplayRefused(await post(worker!.urls[1]!, headers));
    await assertReplayRefused(await post(worker!.urls[0]!, fresh));
    assert.equal(upstream.requests.length, forwarded + 2, 'no replay reached the upstream');
  });
});
