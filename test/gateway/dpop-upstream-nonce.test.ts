/**
 * The upstream's DPoP nonces with token mediation (`mediation.dpop`, RFC 9449 §9, issue 17), on the
 * Node gateway and on the Worker in workerd: an upstream resource server that requires nonces (the
 * resource server helper, `resourceServer({ dpop: { mode: 'require', require_nonce: true } })`)
 * answers the gateway's first proof with 401 `use_dpop_nonce` + `DPoP-Nonce`; the gateway sends the
 * request once more with a proof carrying that nonce (same body: MCP bodies are buffered), remembers
 * it for its next proofs to that upstream, and audits `upstream_dpop_nonce: retried`. An upstream
 * that asks again after the retry gets no third request: 502 `upstream_dpop_nonce`. An upstream's
 * `DPoP-Nonce` never reaches the caller.
 */
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { decodeJwt } from 'jose';
import { verifyDpopProof } from '../../src/core/dpop.ts';
import { resourceServer, type ResourceServer } from '../../src/gateway/resource-server.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type TargetGateway } from '../helpers/gateway-targets.ts';
import { listedTools, mcpPost, startFakeIssuer, toolCall } from '../helpers/gateway.ts';

const SECRET = 'gateway-secret-for-the-upstream-nonce-test';

interface Seen {
  proof: string;
  nonce?: string;
  body: string;
  status: number;
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((done) => {
    let body = '';
    req.on('data', (chunk: Buffer) => (body += chunk));
    req.on('end', () => done(body));
  });
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

const close = (server: Server | undefined) =>
  new Promise<void>((done) => {
    if (!server) return done();
    server.closeAllConnections();
    server.close(() => done());
  });

for (const target of targets) {
  describe(`the upstream's DPoP nonces with mediation.dpop [${target}] (RFC 9449 §9)`, onTarget(target), () => {
    let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
    let gateway: TargetGateway;
    let tokenServer: Server;
    let tokenUrl: string;
    // The resource server helper with nonces required, in front of a one-tool MCP answer.
    let rsServer: Server;
    let rsOrigin: string;
    let rs: ResourceServer;
    const rsSeen: Seen[] = [];
    const newResourceServer = () =>
      resourceServer({ resource: `${rsOrigin}/mcp`, issuer: issuer.issuer, dpop: { mode: 'require', require_nonce: true }, dpopNonceKey: crypto.getRandomValues(new Uint8Array(32)) });
    // An upstream that asks for a new nonce every time, whatever the proof says.
    let stubborn: Server;
    let stubbornOrigin: string;
    const stubbornSeen: Seen[] = [];

    const nonceOf = (proof: string) => (proof ? (decodeJwt(proof).nonce as string | undefined) : undefined);

    before(async () => {
      issuer = await startFakeIssuer();
      // The AS's token endpoint for the exchange: checks the gateway's proof, binds the token to its key.
      tokenServer = createServer((req: IncomingMessage, res: ServerResponse) => {
        void readBody(req).then(async (body) => {
          const proof = await verifyDpopProof(req.headers.dpop, { method: 'POST', url: tokenUrl, algorithms: ['ES256'], maxAgeSeconds: 300, now: Math.floor(Date.now() / 1000) });
          const form = new URLSearchParams(body);
          const token = await issuer.sign({ sub: 'alice', aud: form.get('resource'), client_id: 'agent-1', scope: 'banking:read', cnf: { jkt: proof.jkt }, act: { sub: 'gateway' } });
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: token, token_type: 'DPoP', expires_in: 300, issued_token_type: 'urn:ietf:params:oauth:token-type:access_token' }));
        });
      });
      tokenUrl = `${await listen(tokenServer)}/token`;
      rsServer = createServer((req, res) => {
        void readBody(req).then(async (body) => {
          const proof = String(req.headers.dpop ?? '');
          const checked = await rs.check({ authorization: req.headers.authorization, dpop: req.headers.dpop, method: req.method!, url: `${rsOrigin}${req.url}`, body }, []);
          if (!checked.ok) {
            rsSeen.push({ proof, nonce: nonceOf(proof), body, status: checked.status });
            res.writeHead(checked.status, { 'content-type': 'application/json', ...checked.headers }).end(JSON.stringify(checked.body));
            return;
          }
          rsSeen.push({ proof, nonce: nonceOf(proof), body, status: 200 });
          const message = JSON.parse(body) as { id: number };
          res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', id: message.id, result: { content: [{ type: 'text', text: 'ok' }] } }));
        });
      });
      rsOrigin = await listen(rsServer);
      rs = newResourceServer();
      let counter = 0;
      stubborn = createServer((req, res) => {
        void readBody(req).then((body) => {
          const proof = String(req.headers.dpop ?? '');
          stubbornSeen.push({ proof, nonce: nonceOf(proof), body, status: 401 });
          res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'DPoP algs="ES256", error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"', 'dpop-nonce': `stubborn-nonce-${++counter}` }).end(JSON.stringify({ error: 'use_dpop_nonce' }));
        });
      });
      stubbornOrigin = await listen(stubborn);
      const mediation = (resource: string) => ({ token_endpoint: tokenUrl, client_id: 'gateway', client_secret_env: 'UPSTREAM_NONCE_SECRET', resource, dpop: true });
      const route = (origin: string, path: string, upstream: string, extra: Record<string, unknown>) => ({ path, upstream, resource: `${origin}${path}`, authorization_servers: [issuer.issuer], tools: listedTools(['echo']), ...extra });
      gateway = await startGatewayOn(
        target,
        (origin) => [
          route(origin, '/nonced', `${rsOrigin}/mcp`, { mediation: mediation(`${rsOrigin}/mcp`) }),
          route(origin, '/stubborn', `${stubbornOrigin}/mcp`, { mediation: mediation(`${stubbornOrigin}/mcp`) }),
          route(origin, '/plain', `${stubbornOrigin}/mcp`, {}),
        ],
        { secrets: { UPSTREAM_NONCE_SECRET: SECRET } },
      );
    });
    after(async () => {
      await gateway?.stop();
      await close(tokenServer);
      await close(rsServer);
      await close(stubborn);
      await issuer?.close();
    });

    const caller = (path: string) => issuer.sign({ sub: 'alice', aud: `${gateway.url}${path}`, client_id: 'agent-1', scope: 'banking:read' });
    const call = async (path: string, id: number) => mcpPost(`${gateway.url}${path}`, toolCall('echo', { n: id }, id), { authorization: `Bearer ${await caller(path)}` });
    const eventOf = (res: { headers: Headers }) => gateway.waitForAudit((e) => e.request_id === res.headers.get('x-request-id'));

    it('the upstream asks for a nonce: one retry with it, the same body; the call succeeds, audited upstream_dpop_nonce', async () => {
      const res = await call('/nonced', 1);
      assert.equal(res.status, 200, res.text);
      assert.equal(res.headers.get('dpop-nonce'), null, "the upstream's nonce is the gateway's business");
      assert.deepEqual(rsSeen.map((seen) => seen.status), [401, 200]);
      assert.equal(rsSeen[0]!.nonce, undefined, 'first contact: no nonce yet');
      assert.ok(rsSeen[1]!.nonce, 'the retry carries the nonce the upstream gave');
      assert.equal(rsSeen[1]!.body, rsSeen[0]!.body, 'the same body, sent again');
      assert.notEqual(decodeJwt(rsSeen[1]!.proof).jti, decodeJwt(rsSeen[0]!.proof).jti, 'a new proof');
      const event = await eventOf(res);
      assert.equal(event.decision, 'allow');
      assert.equal(event.status, 200);
      assert.equal(event.upstream_status, 200);
      assert.equal(event.upstream_dpop_nonce, 'retried');
    });

    it("the nonce is remembered for the upstream's origin: the next call carries it, no retry", async () => {
      const before = rsSeen.length;
      const res = await call('/nonced', 2);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(rsSeen.slice(before).map((seen) => seen.status), [200]);
      assert.equal(rsSeen[before]!.nonce, rsSeen[1]!.nonce);
      assert.equal((await eventOf(res)).upstream_dpop_nonce, undefined);
    });

    it("the upstream's nonces change (a new key: the remembered one is stale): retried once again", async () => {
      rs = newResourceServer();
      const before = rsSeen.length;
      const res = await call('/nonced', 3);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(rsSeen.slice(before).map((seen) => seen.status), [401, 200]);
      assert.equal(rsSeen[before]!.nonce, rsSeen[1]!.nonce, 'the remembered nonce first');
      assert.notEqual(rsSeen[before + 1]!.nonce, rsSeen[1]!.nonce);
      assert.equal((await eventOf(res)).upstream_dpop_nonce, 'retried');
    });

    it('an upstream that asks again after the retry: 502 upstream_dpop_nonce, no third request, its challenge not passed on', async () => {
      const res = await call('/stubborn', 4);
      assert.equal(res.headers.get('www-authenticate'), null);
      assert.equal(res.headers.get('dpop-nonce'), null);
      const event = await assertRefused(gateway, res, { status: 502, code: -32603, rejection: 'upstream_dpop_nonce', reason: 'the upstream answered 401 use_dpop_nonce again to the retry with the DPoP nonce it gave' });
      assert.equal(event.upstream_dpop_nonce, 'retried');
      assert.equal(event.upstream_status, 401);
      assert.deepEqual(stubbornSeen.map((seen) => seen.nonce), [undefined, 'stubborn-nonce-1']);
      // Its last nonce is remembered: the next call's first proof carries it.
      const next = await call('/stubborn', 5);
      assert.equal(next.status, 502);
      assert.deepEqual(stubbornSeen.slice(2).map((seen) => seen.nonce), ['stubborn-nonce-2', 'stubborn-nonce-3']);
    });

    it('without mediation.dpop the gateway sends no proof and retries nothing; the upstream\'s DPoP-Nonce is not passed on', async () => {
      const before = stubbornSeen.length;
      const res = await call('/plain', 6);
      assert.equal(res.status, 401, res.text);
      assert.equal(res.headers.get('dpop-nonce'), null);
      assert.deepEqual(stubbornSeen.slice(before).map((seen) => seen.proof), ['']);
      const event = await eventOf(res);
      assert.equal(event.upstream_status, 401);
      assert.equal(event.upstream_dpop_nonce, undefined);
    });
  });
}
