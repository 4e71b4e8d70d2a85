/**
 * Several authorization servers behind one route (issue 18 part 3), on the Node gateway and on
 * the Worker in workerd: each trusted issuer with its own audience and validation mode (two JWT
 * issuers, one introspection issuer), the token's `iss` choosing, an unknown issuer refused before
 * anything is fetched, subjects kept apart per issuer, and mediation at one issuer only.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, toolCall } from '../../helpers/gateway.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type TargetGateway } from '../../helpers/gateway-targets.ts';

type FakeIssuer = Awaited<ReturnType<typeof startFakeIssuer>>;

const B_AUDIENCE = 'https://b.example/banking';

for (const target of targets) {
  describe(`black box [${target}]: several authorization servers per route`, onTarget(target), () => {
    let a: FakeIssuer;
    let b: FakeIssuer;
    let c: FakeIssuer;
    let stranger: FakeIssuer;
    let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
    let gateway: TargetGateway;
    let resource: string;
    let metadataUrl: string;
    const hits = () => [a.jwksHits, b.jwksHits, c.introspectionHits, stranger.jwksHits, stranger.introspectionHits];

    before(async () => {
      [a, b, c, stranger] = await Promise.all([startFakeIssuer(), startFakeIssuer(), startFakeIssuer(), startFakeIssuer()]);
      upstream = await startScriptedUpstream();
      gateway = await startGatewayOn(
        target,
        (origin) => [
          {
            path: '/mcp',
            upstream: upstream.url,
            resource: `${origin}/mcp`,
            issuers: [
              // A's users keep their plain sub (the issuer everyone used before B and C were added).
              { issuer: a.issuer, subject_prefix: '' },
              { issuer: b.issuer, audience: B_AUDIENCE },
              { issuer: c.issuer, mode: 'introspection', introspection: { client_id: 'gateway', client_secret_env: 'C_INTROSPECTION_SECRET' } },
            ],
            identity_headers: true,
            tools: listedTools(),
          },
          {
            path: '/mediated',
            upstream: upstream.url,
            resource: `${origin}/mediated`,
            issuers: [{ issuer: a.issuer }, { issuer: b.issuer }],
            tools: listedTools(),
            // Exchanged at A (the first issuer, by default): A's fake issuer has no /token, so A's tokens get mediation_failed.
            mediation: { client_id: 'gateway', client_secret_env: 'C_INTROSPECTION_SECRET', resource: 'https://upstream.example/' },
          },
          {
            path: '/approved',
            upstream: upstream.url,
            resource: `${origin}/approved`,
            issuers: [{ issuer: a.issuer }, { issuer: b.issuer }],
            tools: { ...listedTools(), transfer: { approval: 'required' } },
            approvals: { client_id: 'gateway', client_secret_env: 'C_INTROSPECTION_SECRET' },
          },
          {
            path: '/ruled',
            upstream: upstream.url,
            resource: `${origin}/ruled`,
            // A's client banking-app is trusted to move money; B is a partner whose clients are not.
            issuers: [{ issuer: a.issuer, subject_prefix: '' }, { issuer: b.issuer }],
            identity_headers: true,
            tools: { ...listedTools(['echo']), transfer: { allow: "client_id == 'banking-app' && act.all(x, x.client_id != 'rogue')", reason: 'only the banking app moves money' } },
            rate_limits: [{ name: 'per-client', key: ['client'], limit: 2, window_seconds: 60 }],
          },
          {
            path: '/revocable',
            upstream: upstream.url,
            resource: `${origin}/revocable`,
            // A's revocation feed never loads (its fake has no /revocations): A's tokens fail closed, B's are unaffected.
            issuers: [{ issuer: a.issuer, revocation_list: { client_id: 'gateway', client_secret_env: 'C_INTROSPECTION_SECRET', poll_seconds: 1 } }, { issuer: b.issuer }],
            tools: listedTools(),
          },
        ],
        { secrets: { C_INTROSPECTION_SECRET: 'introspection-secret' } },
      );
      resource = `${gateway.url}/mcp`;
      metadataUrl = `${gateway.url}/.well-known/oauth-protected-resource/mcp`;
    });
    after(async () => {
      await gateway?.stop();
      await upstream?.close();
      await Promise.all([a, b, c, stranger].map((issuer) => issuer?.close()));
    });

    const call = (token: string, url = resource) => mcpPost(url, toolCall('echo', { n: 1 }), { authorization: `Bearer ${token}` });

    it('an unknown issuer: 401 invalid_token, audited unknown_issuer, before any key fetch or introspection call', async () => {
      const count = upstream.requests.length;
      // First of the file: no key set fetched yet, so any fetch would show.
      assert.deepEqual(hits(), [0, 0, 0, 0, 0]);
      const res = await call(await stranger.sign({ sub: 'mallory', aud: resource, client_id: 'x' }));
      await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'unknown_issuer', reason: `iss "${stranger.issuer}" is not a trusted issuer of this route` });
      assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl}", error="invalid_token"`);
      // An unknown issuer claimed in a token signed with A's key is no better.
      const forged = await a.sign({ iss: 'https://evil.example', sub: 'mallory', aud: resource, client_id: 'x' });
      await assertRefused(gateway, await call(forged), { status: 401, code: -32001, rejection: 'unknown_issuer', reason: 'iss "https://evil.example" is not a trusted issuer of this route' });
      assert.deepEqual(hits(), [0, 0, 0, 0, 0], 'no JWKS or introspection endpoint got a request');
      assert.equal(upstream.requests.length, count);
    });

    it('the protected resource metadata lists every issuer, in order of preference; the challenge is unchanged', async () => {
      const res = await fetch(metadataUrl);
      assert.equal(res.status, 200);
      const metadata = (await res.json()) as Record<string, unknown>;
      assert.deepEqual(metadata.authorization_servers, [a.issuer, b.issuer, c.issuer]);
      assert.equal(metadata.resource, resource);
      const challenge = await mcpPost(resource, toolCall('echo'));
      await assertRefused(gateway, challenge, { status: 401, code: -32001, rejection: 'no_token', reason: 'no Authorization header' });
      assert.equal(challenge.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl}"`);
    });

    it("issuer A's token with the route's resource as audience goes through; its sub is kept as it is", async () => {
      const res = await call(await a.sign({ sub: 'alice', aud: resource, client_id: 'agent-a' }));
      assert.equal(res.status, 200, res.text);
      assert.equal(upstream.requests.at(-1)!.headers['x-mandate-sub'], 'alice');
      const event = await gateway.waitForAudit((e) => e.request_id === res.headers.get('x-request-id'));
      assert.equal(event.sub, 'alice');
      assert.equal(event.decision, 'allow');
      assert.equal(b.jwksHits, 0, "B's keys were not needed");
    });

    it("issuer B's token with B's own audience goes through; its subject is B-qualified (no collision with A's alice)", async () => {
      const res = await call(await b.sign({ sub: 'alice', aud: B_AUDIENCE, client_id: 'agent-b' }));
      assert.equal(res.status, 200, res.text);
      assert.equal(upstream.requests.at(-1)!.headers['x-mandate-sub'], `${b.issuer}#alice`);
      const event = await gateway.waitForAudit((e) => e.request_id === res.headers.get('x-request-id'));
      assert.equal(event.sub, `${b.issuer}#alice`);
    });

    it("B's alice cannot use the MCP session A's alice opened (same sub, same client id): 404, audited session_mismatch", async () => {
      // The scripted upstream names every answer's session upstream-session: A's alice got it bound first (above).
      const opened = await call(await a.sign({ sub: 'alice', aud: resource, client_id: 'agent-a' }));
      const session = opened.headers.get('mcp-session-id');
      assert.ok(session, opened.text);
      const own = await mcpPost(resource, toolCall('echo'), { authorization: `Bearer ${await a.sign({ sub: 'alice', aud: resource, client_id: 'agent-a' })}`, 'mcp-session-id': session });
      assert.equal(own.status, 200, own.text);
      const count = upstream.requests.length;
      const res = await mcpPost(resource, toolCall('echo'), { authorization: `Bearer ${await b.sign({ sub: 'alice', aud: B_AUDIENCE, client_id: 'agent-a' })}`, 'mcp-session-id': session });
      await assertRefused(gateway, res, { status: 404, code: -32001, rejection: 'session_mismatch', reason: 'session opened by another subject' });
      assert.equal(upstream.requests.length, count);
    });

    it("issuer A's token with B's audience: 401 invalid_token (each issuer has its own audience)", async () => {
      const res = await call(await a.sign({ sub: 'alice', aud: B_AUDIENCE, client_id: 'agent-a' }));
      await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'invalid_token', reason: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
    });

    it("issuer B's token with the route's resource (A's audience): 401 invalid_token", async () => {
      const res = await call(await b.sign({ sub: 'alice', aud: resource, client_id: 'agent-b' }));
      await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'invalid_token', reason: 'ERR_JWT_CLAIM_VALIDATION_FAILED' });
    });

    it("a token claiming A's iss but signed by B's key: 401 invalid_token (verified with A's keys only)", async () => {
      const forged = await b.sign({ iss: a.issuer, sub: 'alice', aud: resource, client_id: 'agent-b' }, { kid: 'k1' });
      const res = await call(forged);
      await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'invalid_token', reason: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    });

    it("an opaque token goes to the introspection issuer C (and only there), with C's audience", async () => {
      const [aKeys, bKeys] = [a.jwksHits, b.jwksHits];
      c.introspection.set('opaque-c', { active: true, iss: c.issuer, sub: 'bob', aud: resource, client_id: 'agent-c', scope: '', exp: Math.floor(Date.now() / 1000) + 60 });
      const before = c.introspectionHits;
      const res = await call('opaque-c');
      assert.equal(res.status, 200, res.text);
      assert.equal(c.introspectionHits, before + 1);
      assert.equal(upstream.requests.at(-1)!.headers['x-mandate-sub'], `${c.issuer}#bob`);
      assert.deepEqual([a.introspectionHits, b.introspectionHits, a.jwksHits, b.jwksHits], [0, 0, aKeys, bKeys]);
    });

    it('an opaque token C knows for another audience: 401 invalid_token, audited with the audience', async () => {
      c.introspection.set('opaque-elsewhere', { active: true, iss: c.issuer, sub: 'bob', aud: 'https://elsewhere.example', exp: Math.floor(Date.now() / 1000) + 60 });
      await assertRefused(gateway, await call('opaque-elsewhere'), { status: 401, code: -32001, rejection: 'invalid_token', reason: 'aud "https://elsewhere.example"' });
    });

    it('mediation exchanges at one issuer: a token of another issuer is refused 403 mediation_issuer, never sent to that AS', async () => {
      const url = `${gateway.url}/mediated`;
      const count = upstream.requests.length;
      const res = await call(await b.sign({ sub: 'alice', aud: url, client_id: 'agent-b' }), url);
      await assertRefused(gateway, res, { status: 403, code: -32003, rejection: 'mediation_issuer', reason: `the token's issuer ${b.issuer} is not the mediation issuer ${a.issuer}` });
      // A's token is exchanged at A (whose fake has no token endpoint: the exchange is refused there).
      const fromA = await call(await a.sign({ sub: 'alice', aud: url, client_id: 'agent-a' }), url);
      await assertRefused(gateway, fromA, { status: 403, code: -32003, rejection: 'mediation_failed', reason: /^token exchange refused: 404/ });
      assert.equal(upstream.requests.length, count);
    });

    it("approvals are asked of the first issuer only: a tool needing approval, called with another issuer's token, is refused 403 approval_issuer", async () => {
      const url = `${gateway.url}/approved`;
      const count = upstream.requests.length;
      const res = await mcpPost(url, toolCall('transfer', { amount: 5 }), { authorization: `Bearer ${await b.sign({ sub: 'alice', aud: url, client_id: 'agent-b' })}` });
      await assertRefused(gateway, res, { status: 403, code: -32003, rejection: 'approval_issuer', reason: `the token's issuer ${b.issuer} is not the approvals issuer ${a.issuer}` });
      // Tools without approval work for both issuers.
      assert.equal((await mcpPost(url, toolCall('echo'), { authorization: `Bearer ${await b.sign({ sub: 'alice', aud: url, client_id: 'agent-b' })}` })).status, 200);
      assert.equal(upstream.requests.length, count + 1);
    });

    it("client and actor identities are qualified by issuer too: B's token naming A's trusted client is not that client (tool rule, rate-limit bucket, identity headers, audit)", async () => {
      const url = `${gateway.url}/ruled`;
      const actor = { sub: 'helper-agent', client_id: 'helper-agent' };
      const forged = await b.sign({ sub: 'mallory', aud: url, client_id: 'banking-app', act: actor });
      const count = upstream.requests.length;
      const transfer = await mcpPost(url, toolCall('transfer', { amount: 5 }), { authorization: `Bearer ${forged}` });
      await assertRefused(gateway, transfer, { status: 403, code: -32003, rejection: 'tool_denied', reason: 'only the banking app moves money' });
      assert.equal(upstream.requests.length, count, 'nothing reached the upstream');
      // B's calls spend B's bucket, not the one of A's banking-app.
      for (let i = 0; i < 2; i++) {
        const res = await mcpPost(url, toolCall('echo'), { authorization: `Bearer ${forged}` });
        assert.equal(res.status, 200, res.text);
        const seen = upstream.requests.at(-1)!.headers;
        assert.equal(seen['x-mandate-client-id'], `${b.issuer}#banking-app`);
        assert.deepEqual(JSON.parse(String(seen['x-mandate-act'])), [{ sub: `${b.issuer}#helper-agent`, client_id: `${b.issuer}#helper-agent`, sub_profile: '', iss: '' }]);
        const event = await gateway.waitForAudit((e) => e.request_id === res.headers.get('x-request-id'));
        assert.equal(event.client_id, `${b.issuer}#banking-app`);
        assert.deepEqual(event.act, [{ sub: `${b.issuer}#helper-agent`, client_id: `${b.issuer}#helper-agent` }]);
      }
      await assertRefused(gateway, await mcpPost(url, toolCall('echo'), { authorization: `Bearer ${forged}` }), { status: 429, code: -32029, rejection: 'rate_limited', reason: 'limit per-client: 2 per 60 s' });
      const own = await a.sign({ sub: 'alice', aud: url, client_id: 'banking-app' });
      for (let i = 0; i < 2; i++) assert.equal((await mcpPost(url, toolCall('echo'), { authorization: `Bearer ${own}` })).status, 200, "A's banking-app still has its whole budget");
      const allowed = await mcpPost(url, toolCall('transfer', { amount: 5 }), { authorization: `Bearer ${await a.sign({ sub: 'bob', aud: url, client_id: 'banking-app' })}` });
      await assertRefused(gateway, allowed, { status: 429, code: -32029, rejection: 'rate_limited', reason: 'limit per-client: 2 per 60 s' });
      assert.equal(upstream.requests.at(-1)!.headers['x-mandate-client-id'], 'banking-app', "A's client keeps its plain id (subject_prefix: '')");
    });

    it("an identity of the unprefixed issuer that would read as B's (subject_prefix \"\" next to \"<B>#\"): 401 invalid_token, audited issuer_prefix_collision", async () => {
      const url = `${gateway.url}/ruled`;
      const count = upstream.requests.length;
      const posing = await a.sign({ sub: `${b.issuer}#alice`, aud: url, client_id: 'agent-a' });
      await assertRefused(gateway, await call(posing, url), { status: 401, code: -32001, rejection: 'issuer_prefix_collision', reason: `"${b.issuer}#alice" would read as an identity of the issuer with subject_prefix "${b.issuer}#"` });
      const posingClient = await a.sign({ sub: 'alice', aud: url, client_id: `${b.issuer}#banking-app` });
      await assertRefused(gateway, await call(posingClient, url), { status: 401, code: -32001, rejection: 'issuer_prefix_collision', reason: `"${b.issuer}#banking-app" would read as an identity of the issuer with subject_prefix "${b.issuer}#"` });
      assert.equal(upstream.requests.length, count);
    });

    it("revocation lists are per issuer: A's list not loaded refuses A's tokens (503, fail closed), B's tokens are unaffected", async () => {
      const url = `${gateway.url}/revocable`;
      const res = await call(await a.sign({ sub: 'alice', aud: url, client_id: 'agent-a' }), url);
      await assertRefused(gateway, res, { status: 503, code: -32603, rejection: 'revocation_list_unavailable', reason: /.+/ });
      const fromB = await call(await b.sign({ sub: 'alice', aud: url, client_id: 'agent-b' }), url);
      assert.equal(fromB.status, 200, fromB.text);
    });
  });
}
