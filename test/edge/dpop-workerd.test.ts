/**
 * DPoP proof `jti`s in the Worker's `GatewayState` Durable Object (issue 17), in workerd: the bundle
 * in two isolates (`--instances 2`, sharing the first one's objects) with the objects persisted to a
 * directory. A proof accepted through one isolate is refused as a replay through the other, and
 * still after workerd restarts on the same directory: 401, the DPoP challenge with
 * `invalid_dpop_proof`, and `dpop_replay` in the audit. Loopback only; workerd is stopped at the end.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { createDpopProof, generateDpopKey, jwkThumbprint } from '../../src/core/dpop.ts';
import { EDGE_SKIP_REASON, edgeAvailable, startPersistedGateway, type PersistedGateway } from '../helpers/edge-worker.ts';
import { listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, toolCall } from '../helpers/gateway.ts';
import { skipUnless } from '../helpers/services.ts';

const ALGS = 'ES256 ES384 PS256 RS256 EdDSA';

describe('DPoP proof replay across isolates and restarts, in workerd', skipUnless(edgeAvailable, EDGE_SKIP_REASON), () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
  let gateway: PersistedGateway | undefined;
  /** The route's public URL (the first isolate's origin: the proofs' htu and the tokens' aud). */
  let resource: string;

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startScriptedUpstream();
    gateway = await startPersistedGateway((origin) => [{ path: '/mcp', upstream: upstream.url, resource: `${origin}/mcp`, authorization_servers: [issuer.issuer], tools: listedTools(), dpop: { mode: 'require' } }], { prefix: 'mandate-edge-dpop-' });
    resource = `${gateway.origin}/mcp`;
  });

  after(async () => {
    await gateway?.dispose();
    await upstream?.close();
    await issuer?.close();
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
    assert.equal(res.headers.get('www-authenticate'), `DPoP algs="${ALGS}", resource_metadata="${gateway!.origin}/.well-known/oauth-protected-resource/mcp", error="invalid_dpop_proof"`);
    const requestId = res.headers.get('x-request-id');
    const event = await gateway!.worker().waitForLine('mandate-gateway', (line) => line.request_id === requestId);
    assert.equal(event.decision, 'deny');
    assert.equal(event.status, 401);
    assert.equal(event.rejection, 'dpop_replay');
    assert.equal(event.reason, 'the DPoP proof jti was used before');
  }

  it('a proof accepted by isolate A is refused as a replay by isolate B, and by both after a restart', async () => {
    const [a, b] = gateway!.urls() as [string, string];
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

    await gateway!.stop();
    assert.ok(readdirSync(gateway!.persist).length > 0, 'the Durable Object state is on disk');
    await gateway!.start();
    await assertReplayRefused(await post(gateway!.urls()[1]!, headers));
    await assertReplayRefused(await post(gateway!.urls()[0]!, fresh));
    assert.equal(upstream.requests.length, forwarded + 2, 'no replay reached the upstream');
  });
});
