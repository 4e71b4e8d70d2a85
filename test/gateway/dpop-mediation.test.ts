/**
 * Token mediation keeping the upstream token DPoP-bound (`mediation.dpop`, RFC 9449; Node gateway):
 * the exchange at the AS carries the gateway's proof (retried once on `use_dpop_nonce`), the
 * answer must be `token_type: DPoP`, and the upstream gets `Authorization: DPoP` with a fresh
 * proof for its own URL (after rewrite), with `ath` and `content_digest` over the body it receives.
 * The gateway's key is kept in the data dir (0600). A caller's own proof never reaches the upstream.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { DpopNonces, createDpopProof, generateDpopKey, jwkThumbprint, verifyDpopProof } from '../../src/core/dpop.ts';
import { startBlackboxUpstream } from '../helpers/blackbox-upstream.ts';
import { freePort, postForm } from '../helpers/auth-server.ts';
import { ACCESS_TOKEN_TYPE, AGENT_REDIRECT, R, SECRETS, auth, exchange, startDelegationServer, userToken } from '../helpers/delegation-server.ts';
import { listedTools, mcpPost, startFakeIssuer, startTestGateway, toolCall, type TestGateway } from '../helpers/gateway.ts';

const UPSTREAM_RESOURCE = 'https://upstream.example.test/mcp';

describe('token mediation with DPoP (mediation.dpop, Node gateway)', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
  let gateway: TestGateway;
  let dataDir: string;
  let tokenUrl: string;
  let tokenType = 'DPoP';
  const exchanges: { status: number; jkt?: string; nonce?: string; error?: string }[] = [];
  const nonces = new DpopNonces(new TextEncoder().encode('the-fake-as-nonce-key-0123456789'), 300);
  let server: ReturnType<typeof createServer>;
  // An upstream that hands out a new DPoP-Nonce with every answer (RFC 9449 §9) and records the proofs.
  let noncedUpstream: ReturnType<typeof createServer>;
  let noncedUrl: string;
  const noncedProofs: string[] = [];
  let nonceCounter = 0;

  before(async () => {
    const noncedPort = await freePort();
    noncedUrl = `http://127.0.0.1:${noncedPort}`;
    noncedUpstream = createServer((req, res) => {
      noncedProofs.push(String(req.headers.dpop));
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json', 'DPoP-Nonce': `upstream-nonce-${++nonceCounter}` });
        res.end(JSON.stringify({ jsonrpc: '2.0', id: 1, result: { content: [] } }));
      });
    });
    await new Promise<void>((resolve) => noncedUpstream.listen(noncedPort, '127.0.0.1', resolve));
    issuer = await startFakeIssuer();
    upstream = await startBlackboxUpstream();
    dataDir = mkdtempSync(join(tmpdir(), 'mandate-gw-dpop-'));
    // A token endpoint that checks the proof as an AS does (RFC 9449 §4.3, §8: nonce required).
    const port = await freePort();
    tokenUrl = `http://127.0.0.1:${port}/token`;
    server = createServer((req: IncomingMessage, res: ServerResponse) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk));
      req.on('end', () => {
        void (async () => {
          const send = (status: number, json: unknown, headers: Record<string, string> = {}) => {
            res.writeHead(status, { 'content-type': 'application/json', ...headers });
            res.end(JSON.stringify(json));
          };
          const now = Math.floor(Date.now() / 1000);
          try {
            const proof = await verifyDpopProof(req.headers.dpop, { method: 'POST', url: tokenUrl, algorithms: ['ES256'], maxAgeSeconds: 300, now, nonces });
            const form = new URLSearchParams(body);
            exchanges.push({ status: 200, jkt: proof.jkt });
            const token = await issuer.sign({ sub: 'alice', aud: form.get('resource'), client_id: 'sample-agent', scope: 'banking:read', cnf: { jkt: proof.jkt }, act: { sub: 'gateway' } });
            send(200, { access_token: token, token_type: tokenType, expires_in: 300, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' }, { 'DPoP-Nonce': await nonces.issue(now) });
          } catch (error) {
            const code = (error as { code?: string }).code ?? 'invalid_dpop_proof';
            exchanges.push({ status: 400, error: code });
            send(400, { error: code }, code === 'use_dpop_nonce' ? { 'DPoP-Nonce': await nonces.issue(now) } : {});
          }
        })();
      });
    });
    await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    process.env.TEST_GW_MEDIATION_SECRET = 'gateway-secret';
    gateway = await startTestGateway(
      (url) => [
        {
          path: '/mediated',
          upstream: `${upstream.url}/mcp`,
          resource: `${url}/mediated`,
          authorization_servers: [issuer.issuer],
          tools: listedTools(['echo']),
          mediation: { token_endpoint: tokenUrl, client_id: 'gateway', client_secret_env: 'TEST_GW_MEDIATION_SECRET', resource: UPSTREAM_RESOURCE, dpop: true },
        },
        {
          path: '/nonced',
          upstream: noncedUrl,
          resource: `${url}/nonced`,
          authorization_servers: [issuer.issuer],
          tools: listedTools(['echo']),
          mediation: { token_endpoint: tokenUrl, client_id: 'gateway', client_secret_env: 'TEST_GW_MEDIATION_SECRET', resource: UPSTREAM_RESOURCE, dpop: true },
        },
        { path: '/plain', upstream: upstream.url, resource: `${url}/plain`, authorization_servers: [issuer.issuer], tools: listedTools(['echo']), dpop: { mode: 'allow' } },
      ],
      { data_dir: dataDir },
    );
  });
  after(async () => {
    await gateway?.close();
    await new Promise<void>((resolve) => server?.close(() => resolve()));
    await new Promise<void>((resolve) => noncedUpstream?.close(() => resolve()));
    await upstream?.close();
    await issuer?.close();
  });

  const callerToken = (path: string, extra: Record<string, unknown> = {}) => issuer.sign({ sub: 'alice', aud: `${gateway.url}${path}`, client_id: 'sample-agent', scope: 'banking:read', ...extra });

  it('the upstream gets a DPoP-bound token and a proof for its own URL over the body it receives', async () => {
    const res = await mcpPost(`${gateway.url}/mediated`, toolCall('echo', { text: 'hi' }, 7), { authorization: `Bearer ${await callerToken('/mediated')}` });
    assert.equal(res.status, 200, res.text);
    // The AS asked for a nonce first: exactly one retry, which carried it.
    assert.deepEqual(exchanges.map((e) => e.status), [400, 200]);
    assert.equal(exchanges[0]!.error, 'use_dpop_nonce');
    const seen = upstream.requests.findLast((r) => r.body.includes('"echo"'))!;
    const authorization = String(seen.headers.authorization);
    assert.match(authorization, /^DPoP /);
    const token = authorization.slice('DPoP '.length);
    const proof = await verifyDpopProof(seen.headers.dpop, {
      method: 'POST',
      url: `${upstream.url}/mcp`,
      accessToken: token,
      algorithms: ['ES256'],
      maxAgeSeconds: 60,
      now: Math.floor(Date.now() / 1000),
      body: new TextEncoder().encode(seen.body),
      contentDigest: 'require',
    });
    assert.equal((decodeJwt(token).cnf as { jkt: string }).jkt, proof.jkt, 'the upstream token is bound to the key that signed the proof');
    assert.equal(proof.jkt, exchanges[1]!.jkt);
    // The key is the gateway's, kept in the data dir, owner-only.
    const file = join(dataDir, 'gateway-dpop-key.json');
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const saved = JSON.parse(readFileSync(file, 'utf8')) as Record<string, string>;
    assert.ok(saved.d, 'a private JWK');
    assert.equal(await jwkThumbprint({ kty: saved.kty!, crv: saved.crv!, x: saved.x!, y: saved.y! }), proof.jkt);
  });

  it('the cached upstream token is sent again with a new proof (new jti), no new exchange', async () => {
    const before = exchanges.length;
    const caller = await callerToken('/mediated', { jti: 'fixed-caller-token' });
    const first = await mcpPost(`${gateway.url}/mediated`, toolCall('echo', { n: 1 }, 8), { authorization: `Bearer ${caller}` });
    const second = await mcpPost(`${gateway.url}/mediated`, toolCall('echo', { n: 2 }, 9), { authorization: `Bearer ${caller}` });
    assert.equal(first.status, 200, first.text);
    assert.equal(second.status, 200, second.text);
    assert.equal(exchanges.length, before + 1, 'one exchange for one caller token');
    const proofs = upstream.requests.slice(-2).map((r) => decodeJwt(String(r.headers.dpop)).jti);
    assert.notEqual(proofs[0], proofs[1]);
  });

  it('an AS that answers token_type Bearer: 403 mediation_failed, nothing forwarded', async () => {
    tokenType = 'Bearer';
    try {
      const count = upstream.requests.length;
      const res = await mcpPost(`${gateway.url}/mediated`, toolCall('echo', {}, 10), { authorization: `Bearer ${await callerToken('/mediated')}` });
      assert.equal(res.status, 403, res.text);
      assert.equal((res.json!.error as { code: number }).code, -32003);
      const event = (await gateway.auditEvents()).find((e) => e.request_id === res.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'mediation_failed');
      assert.equal(event?.reason, 'token exchange: the authorization server answered token_type Bearer, not a DPoP-bound token');
      assert.equal(upstream.requests.length, count);
    } finally {
      tokenType = 'DPoP';
    }
  });

  it("the upstream's DPoP-Nonce goes into the gateway's next proof to it (§9)", async () => {
    const caller = await callerToken('/nonced');
    for (const id of [31, 32]) {
      const res = await mcpPost(`${gateway.url}/nonced`, toolCall('echo', {}, id), { authorization: `Bearer ${caller}` });
      assert.equal(res.status, 200, res.text);
    }
    assert.equal(decodeJwt(noncedProofs[0]!).nonce, undefined);
    assert.equal(decodeJwt(noncedProofs[1]!).nonce, 'upstream-nonce-1');
  });

  it("a caller's own DPoP proof never reaches the upstream (no mediation)", async () => {
    const key = await generateDpopKey();
    const jkt = await jwkThumbprint(key.publicJwk);
    const token = await callerToken('/plain', { cnf: { jkt } });
    const body = JSON.stringify(toolCall('echo', {}, 11));
    const proof = await createDpopProof(key, { htm: 'POST', htu: `${gateway.url}/plain`, accessToken: token, body: new TextEncoder().encode(body) });
    const res = await mcpPost(`${gateway.url}/plain`, body, { authorization: `DPoP ${token}`, dpop: proof });
    assert.equal(res.status, 200, res.text);
    const seen = upstream.requests.findLast((r) => r.body.includes('"id":11'))!;
    assert.equal(seen.headers.dpop, undefined);
    assert.equal(seen.headers.authorization, undefined);
  });
});

describe('token mediation with DPoP against the Mandate AS (Node gateway)', () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
  let gateway: TestGateway;
  let delegated: string;

  before(async () => {
    as = await startDelegationServer({ dpop: { enabled: true } });
    upstream = await startBlackboxUpstream();
    process.env.TEST_MCP_SECRET = SECRETS.mcp;
    gateway = await startTestGateway(() => [
      {
        path: '/mediated',
        upstream: upstream.url,
        resource: R.gateway,
        authorization_servers: [as.issuer],
        tools: listedTools(['echo']),
        mediation: { client_id: 'mcp-server', client_secret_env: 'TEST_MCP_SECRET', resource: R.api, scope: 'banking:read', dpop: true },
      },
    ]);
    const actor = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: R.agent, scope: 'banking:read' }, auth.agent);
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: R.agent, scope: 'banking:read', clientAuth: auth.agent });
    const res = await exchange(as, { subject_token: token.access_token, actor_token: actor.json.access_token as string, actor_token_type: ACCESS_TOKEN_TYPE, resource: R.gateway, scope: 'banking:read' }, auth.agent);
    assert.equal(res.status, 200, res.text);
    delegated = res.json.access_token as string;
  });
  after(async () => {
    await gateway?.close();
    await upstream?.close();
    await as?.close();
  });

  it("the AS binds the exchanged token to the gateway's key; the upstream gets it as DPoP with a valid proof", async () => {
    const res = await mcpPost(`${gateway.url}/mediated`, toolCall('echo', { x: 1 }, 21), { authorization: `Bearer ${delegated}` });
    const event = (await gateway.auditEvents()).find((e) => e.request_id === res.headers.get('x-request-id'));
    assert.equal(res.status, 200, `${res.text} ${JSON.stringify(event)}`);
    const seen = upstream.requests.findLast((r) => r.body.includes('"id":21'))!;
    const authorization = String(seen.headers.authorization);
    assert.match(authorization, /^DPoP /);
    const token = authorization.slice('DPoP '.length);
    const claims = decodeJwt(token);
    assert.equal(claims.aud, R.api);
    const proof = await verifyDpopProof(seen.headers.dpop, { method: 'POST', url: `${upstream.url}/`, accessToken: token, algorithms: ['ES256'], maxAgeSeconds: 60, now: Math.floor(Date.now() / 1000), body: new TextEncoder().encode(seen.body), contentDigest: 'require' });
    assert.equal((claims.cnf as { jkt: string }).jkt, proof.jkt);
  });
});
