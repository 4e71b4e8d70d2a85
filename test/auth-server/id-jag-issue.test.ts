import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT, createLocalJWKSet, decodeProtectedHeader, generateKeyPair, jwtVerify } from 'jose';
import { basic, decodeJwt, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { userToken } from '../helpers/delegation-server.ts';
import { createDpopProof, generateDpopKey, jwkThumbprint, type DpopKey } from '../../src/core/dpop.ts';

/**
 * Mandate as the enterprise IdP: token exchange of the user's ID token (or access token) for an
 * ID-JAG (draft-ietf-oauth-identity-assertion-authz-grant §4.3), under the `id_jag` policy. Every
 * refusal: status, `error`, and the reason in the `token.exchange_refused` audit event.
 */
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ID_JAG = 'urn:ietf:params:oauth:token-type:id-jag';
const ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const MCP_AS = 'https://mcp-as.example.test';
const SINGLE_AS = 'https://single-as.example.test';
const TODO_MCP = 'https://todo.example.test/mcp';
const TODO_API = 'https://todo.example.test/api';
const PORTAL = 'https://portal.example.test';
const CB = 'http://127.0.0.1:7777/cb';
const SECRETS = { one: 'idjag-agent-1-secret-0123456789abcdef0123', two: 'idjag-agent-2-secret-0123456789abcdef0123' };

describe('ID-JAG issued by Mandate as the enterprise IdP (token exchange)', () => {
  let as: TestAuthServer;
  let idToken: string; // agent-1's, for demo
  let idToken2: string; // agent-2's
  let accessToken: string; // agent-1's, for the portal, scope todo:read
  let demoSub: string;
  const auth = { one: { authorization: basic('agent-1', SECRETS.one) }, two: { authorization: basic('agent-2', SECRETS.two) } };

  before(async () => {
    process.env.IDJAG_AGENT1_SECRET = SECRETS.one;
    process.env.IDJAG_AGENT2_SECRET = SECRETS.two;
    as = await startTestAuthServer({
      dpop: { enabled: true },
      clients: [
        { client_id: 'agent-1', client_secret_env: 'IDJAG_AGENT1_SECRET', redirect_uris: [CB], first_party: true, grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE] },
        { client_id: 'agent-2', client_secret_env: 'IDJAG_AGENT2_SECRET', redirect_uris: [CB], first_party: true, grant_types: ['authorization_code', TOKEN_EXCHANGE] },
        { client_id: 'public-agent', token_endpoint_auth_method: 'none', redirect_uris: [CB], grant_types: ['authorization_code', TOKEN_EXCHANGE] },
      ],
      resources: [{ id: PORTAL, name: 'Portal', scopes: [{ name: 'todo:read' }, { name: 'todo:write' }] }],
      id_jag: {
        lifetime_seconds: 240,
        audiences: [
          { audience: MCP_AS, resources: [TODO_MCP, TODO_API], clients: ['agent-1', 'public-agent'], client_id: { 'agent-1': 'agent-1-at-mcp-as' }, scopes: ['todo:read', 'todo:write'], include_email: true },
          { audience: SINGLE_AS, resources: [TODO_MCP], clients: ['agent-1', 'agent-2'], scopes: ['x:read'] },
        ],
      },
    });
    const browser = new FormBrowser(as.issuer);
    const first = await userToken(as, { clientId: 'agent-1', redirectUri: CB, resource: PORTAL, scope: 'openid email todo:read', clientAuth: auth.one, browser });
    idToken = (first.token as unknown as { id_token: string }).id_token;
    accessToken = first.token.access_token;
    const second = await userToken(as, { clientId: 'agent-2', redirectUri: CB, resource: PORTAL, scope: 'openid', clientAuth: auth.two, browser });
    idToken2 = (second.token as unknown as { id_token: string }).id_token;
    assert.ok(idToken && idToken2);
    demoSub = (await as.store.users.findByUsername('demo'))!.sub;
  });
  after(async () => as?.close());

  /** demo's access token for the portal, issued to agent-1 and bound to `key` (code redemption with a proof). */
  const boundAccessToken = async (key: DpopKey) => {
    const { verifier, challenge } = pkcePair();
    const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'agent-1', redirect_uri: CB, code_challenge: challenge, code_challenge_method: 'S256', resource: PORTAL, scope: 'todo:read', state: 's' })}`;
    const back = await new FormBrowser(as.issuer).authorize(url);
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: CB }, { ...auth.one, dpop: await createDpopProof(key, { htm: 'POST', htu: `${as.issuer}/token` }) });
    assert.equal(res.status, 200, res.text);
    return res.json.access_token as string;
  };
  const exchange = (form: Record<string, string | undefined>, headers: Record<string, string> = auth.one) => {
    const body: Record<string, string> = { grant_type: TOKEN_EXCHANGE, requested_token_type: ID_JAG, subject_token: idToken, subject_token_type: ID_TOKEN, audience: MCP_AS, resource: TODO_MCP };
    for (const [k, v] of Object.entries(form)) {
      if (v === undefined) delete body[k];
      else body[k] = v;
    }
    return postForm(`${as.issuer}/token`, body, headers);
  };
  const lastEvent = async (type: string) => {
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type, limit: 1 });
    return event;
  };
  const refused = async (res: Awaited<ReturnType<typeof exchange>>, status: number, error: string, reason: RegExp, type = 'token.exchange_refused') => {
    assert.equal(res.status, status, res.text);
    assert.equal(res.json.error, error, res.text);
    assert.equal(res.json.access_token, undefined);
    const event = await lastEvent(type);
    assert.equal(event?.error, error);
    assert.match(String(event?.reason), reason);
  };

  describe('issued', () => {
    it('an ID token becomes an ID-JAG: response, header, claims exact, signed by our key; audited', async () => {
      const res = await exchange({ scope: 'todo:read todo:admin' });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.issued_token_type, ID_JAG);
      assert.equal(res.json.token_type, 'N_A');
      assert.equal(res.json.expires_in, 240);
      assert.equal(res.json.scope, 'todo:read');
      assert.equal(res.json.refresh_token, undefined);
      const jag = res.json.access_token as string;
      const header = decodeProtectedHeader(jag);
      assert.equal(header.typ, 'oauth-id-jag+jwt');
      assert.equal(header.alg, 'ES256');
      const jwks = (await (await fetch(`${as.issuer}/jwks`)).json()) as { keys: never[] };
      const { payload } = await jwtVerify(jag, createLocalJWKSet(jwks), { typ: 'oauth-id-jag+jwt', issuer: as.issuer, audience: MCP_AS });
      assert.deepEqual(Object.keys(payload).sort(), ['aud', 'auth_time', 'client_id', 'email', 'email_verified', 'exp', 'iat', 'iss', 'jti', 'resource', 'scope', 'sub']);
      assert.equal(payload.sub, demoSub);
      assert.equal(payload.client_id, 'agent-1-at-mcp-as');
      assert.equal(payload.resource, TODO_MCP);
      assert.equal(payload.scope, 'todo:read');
      assert.equal(payload.email, 'demo@example.com');
      assert.equal(payload.email_verified, true, 'a configured user: the email is admin-managed');
      assert.equal(payload.exp! - payload.iat!, 240);
      assert.equal(payload.auth_time, decodeJwt(idToken).auth_time);
      const issued = await lastEvent('token.issued');
      assert.equal(issued?.clientId, 'agent-1');
      assert.equal(issued?.sub, demoSub);
      assert.equal(issued?.data?.grant_type, TOKEN_EXCHANGE);
      assert.equal(issued?.data?.issued_token_type, ID_JAG);
      assert.equal(issued?.data?.audience, MCP_AS);
      assert.equal(issued?.data?.resource, TODO_MCP);
      assert.equal(issued?.data?.jti, payload.jti);
      assert.equal(issued?.data?.id_jag_client_id, 'agent-1-at-mcp-as');
    });

    it('no scope asked → every scope the audience allows; no client_id mapping → the same id; no email unless include_email', async () => {
      const all = await exchange({});
      assert.equal(all.json.scope, 'todo:read todo:write');
      const single = await exchange({ subject_token: idToken2, audience: SINGLE_AS, resource: undefined }, auth.two);
      assert.equal(single.status, 200, single.text);
      const claims = decodeJwt(single.json.access_token as string);
      assert.equal(claims.client_id, 'agent-2');
      assert.equal(claims.resource, TODO_MCP, "the audience's only resource");
      assert.equal(claims.email, undefined);
      assert.equal(claims.scope, 'x:read');
    });

    it("the client's own access token as subject: scopes ∩ the token's", async () => {
      const res = await exchange({ subject_token: accessToken, subject_token_type: ACCESS_TOKEN });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.scope, 'todo:read');
      assert.equal(decodeJwt(res.json.access_token as string).sub, demoSub);
    });

    it('a DPoP proof at the exchange binds the ID-JAG (cnf.jkt, §8.6.1.1)', async () => {
      const key = await generateDpopKey();
      const res = await exchange({}, { ...auth.one, dpop: await createDpopProof(key, { htm: 'POST', htu: `${as.issuer}/token` }) });
      assert.equal(res.status, 200, res.text);
      assert.equal(res.json.token_type, 'N_A');
      assert.deepEqual(decodeJwt(res.json.access_token as string).cnf, { jkt: await jwkThumbprint(key.publicJwk) });
    });

    it('a DPoP-bound subject access token: exchanged with a proof of its key only', async () => {
      const key = await generateDpopKey();
      const bound = await boundAccessToken(key);
      assert.deepEqual(decodeJwt(bound).cnf, { jkt: await jwkThumbprint(key.publicJwk) });
      const form = { subject_token: bound, subject_token_type: ACCESS_TOKEN };
      const proof = async (k: DpopKey) => ({ ...auth.one, dpop: await createDpopProof(k, { htm: 'POST', htu: `${as.issuer}/token` }) });
      await refused(await exchange(form), 400, 'invalid_request', /subject token bound to jkt .*; no proof/);
      await refused(await exchange(form, await proof(await generateDpopKey())), 400, 'invalid_request', /subject token bound to jkt .*; proof of /);
      const ok = await exchange(form, await proof(key));
      assert.equal(ok.status, 200, ok.text);
    });

    it('metadata advertises the ID-JAG token type', async () => {
      const metadata = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
      assert.deepEqual(metadata.identity_chaining_requested_token_types_supported, [ID_JAG]);
      assert.ok(!JSON.stringify(metadata).includes(MCP_AS), 'audiences are not published');
    });
  });

  describe('refused', () => {
    it('a misspelt requested_token_type → 400 invalid_request (as any unsupported type)', async () =>
      refused(await exchange({ requested_token_type: 'urn:ietf:params:oauth:token-type:id_jag' }), 400, 'invalid_request', /requested_token_type urn:ietf:params:oauth:token-type:id_jag is not supported/));
    it('a public client → 400 unauthorized_client', async () =>
      refused(await exchange({ client_id: 'public-agent' }, {}), 400, 'unauthorized_client', /public client asked for an ID-JAG/));
    it('an unknown audience → 400 invalid_target', async () => refused(await exchange({ audience: 'https://unknown-as.example.test' }), 400, 'invalid_target', /audience=https:\/\/unknown-as\.example\.test/));
    it('no audience → 400 invalid_target', async () => refused(await exchange({ audience: undefined }), 400, 'invalid_target', /0 audience values/));
    it('a client the audience does not list → 400 unauthorized_client', async () =>
      refused(await exchange({ subject_token: idToken2 }, auth.two), 400, 'unauthorized_client', /agent-2 is not in id_jag\.audiences\[https:\/\/mcp-as\.example\.test\]\.clients/));
    it('a resource not paired with the audience → 400 invalid_target', async () =>
      refused(await exchange({ resource: 'https://elsewhere.example.test/mcp' }), 400, 'invalid_target', /not paired with https:\/\/mcp-as\.example\.test/));
    it('no resource where the audience has several → 400 invalid_request', async () => refused(await exchange({ resource: undefined }), 400, 'invalid_request', /has 2/));
    it('the ID token of another client → 400 invalid_request', async () => refused(await exchange({ subject_token: idToken2 }), 400, 'invalid_request', /subject ID token/));
    it('an expired ID token → 400 invalid_request', async () => {
      const key = await as.ctx.keys.current();
      const expired = await new SignJWT({ ...decodeJwt(idToken), exp: Math.floor(Date.now() / 1000) - 60 }).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: key.kid }).sign(key.privateKey);
      await refused(await exchange({ subject_token: expired }), 400, 'invalid_request', /subject ID token/);
    });
    it('an ID token of another issuer → 400 invalid_request', async () => {
      const { privateKey } = await generateKeyPair('ES256');
      const forged = await new SignJWT({ ...decodeJwt(idToken), iss: 'https://evil.example' }).setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: 'evil' }).sign(privateKey);
      await refused(await exchange({ subject_token: forged }), 400, 'invalid_request', /subject ID token/);
    });
    it('our own ID-JAG as subject token → 400 invalid_request (never accepted back, §8.3)', async () => {
      const jag = (await exchange({})).json.access_token as string;
      await refused(await exchange({ subject_token: jag }), 400, 'invalid_request', /subject ID token/);
      await refused(await exchange({ subject_token: jag, subject_token_type: ACCESS_TOKEN }), 400, 'invalid_request', /invalid, expired or revoked/);
    });
    it('an access token of another client → 400 invalid_request', async () => {
      await refused(await exchange({ subject_token: accessToken, subject_token_type: ACCESS_TOKEN, audience: SINGLE_AS, resource: undefined }, auth.two), 400, 'invalid_request', /subject token client_id=agent-1/);
    });
    it('a refresh token as subject → 400 invalid_request', async () =>
      refused(await exchange({ subject_token_type: 'urn:ietf:params:oauth:token-type:refresh_token' }), 400, 'invalid_request', /subject_token_type .* is not supported with id-jag/));
    it('an actor_token → 400 invalid_request', async () =>
      refused(await exchange({ actor_token: accessToken, actor_token_type: ACCESS_TOKEN }), 400, 'invalid_request', /actor_token with requested_token_type id-jag/));
    it('authorization_details → 400 invalid_authorization_details', async () =>
      refused(await exchange({ authorization_details: JSON.stringify([{ type: 'mcp_tool_call' }]) }), 400, 'invalid_authorization_details', /authorization_details with requested_token_type id-jag/));
    it('no requested scope allowed → 400 invalid_scope', async () =>
      refused(await exchange({ scope: 'todo:admin' }), 400, 'invalid_scope', /requested todo:admin, allowed todo:read todo:write/));
    it('scopes beyond the subject access token → 400 invalid_scope', async () =>
      refused(await exchange({ subject_token: accessToken, subject_token_type: ACCESS_TOKEN, scope: 'todo:write' }), 400, 'invalid_scope', /requested todo:write/));
  });
});

describe('ID-JAG not configured at the IdP', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startTestAuthServer();
  });
  after(async () => as?.close());
  it('metadata has no identity_chaining_requested_token_types_supported', async () => {
    const metadata = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
    assert.equal(metadata.identity_chaining_requested_token_types_supported, undefined);
  });
});
