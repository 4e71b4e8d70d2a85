import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { exportJWK, generateKeyPair } from 'jose';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { AGENT_REDIRECT, R, auth, exchange, startDelegationServer, userToken } from '../helpers/delegation-server.ts';
import { adminAccess } from '../helpers/admin.ts';
import { basic, decodeJwt, freePort, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import type { AuthServerConfigInput } from '../../src/config/schema.ts';
import { hashSecret } from '../../src/auth-server/hash.ts';

/**
 * The registration policy (issue 11, items 1, 2, 3, 19, 20): default deny for every client that
 * comes into being without an administrator, on every update. Each refusal asserts the status,
 * the OAuth error and the reason in the audit log.
 */
const GATEWAY = 'https://gateway.example.test/mcp';
const BANK = 'https://bank.example.test';
const BANKING = [{ name: 'banking:read' }, { name: 'banking:transfer' }];
const resources = [
  { id: GATEWAY, name: 'Banking through the gateway', scopes: BANKING },
  { id: BANK, name: 'The bank itself', scopes: BANKING },
  { id: 'https://todo.example.test', name: 'Todo API', scopes: [{ name: 'todo:read' }] },
];
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

const start = (registration: Partial<AuthServerConfigInput['registration']> = {}, more: Partial<AuthServerConfigInput> = {}) =>
  startTestAuthServer({ resources, registration, ...more } as Partial<AuthServerConfigInput>);

async function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> & { client_id: string; client_secret: string } };
}

/** The one audit event of this type for this client (events are written in batches). */
async function audited(as: TestAuthServer, type: string, clientId?: string) {
  await as.ctx.audit.flush();
  const events = await as.store.audit.list({ type, ...(clientId ? { clientId } : {}) });
  assert.ok(events.length > 0, `an audit event ${type}`);
  return events[0]!;
}

const anonymousAgent = (as: TestAuthServer, extra: Record<string, unknown> = {}) =>
  post(`${as.issuer}/aiagent/register`, { client_name: 'anonymous', grant_types: ['client_credentials'], ...extra });

describe('registration policy: default deny (item 1)', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await start();
  });
  after(async () => as.close());

  it('an anonymous agent registers, but with no resource scopes, and the response says so', async () => {
    const agent = await anonymousAgent(as, { scope: 'banking:read banking:transfer' });
    assert.equal(agent.status, 201);
    assert.equal(agent.json.scope, '');
    assert.deepEqual(agent.json.scopes, []);
    assert.deepEqual(agent.json.registration_notes, [
      'scope: no resource scopes; this server grants self-registered clients OpenID Connect scopes only (it has no registration scope allowlist)',
    ]);
    const event = await audited(as, 'agent.registered', agent.json.client_id);
    assert.equal((event.data as Record<string, unknown>).scope_withheld, 'banking:read banking:transfer');
  });

  it('its client_credentials request for the gateway is refused: invalid_scope, with the policy as the reason', async () => {
    const agent = await anonymousAgent(as, { scope: 'banking:read banking:transfer' });
    const auth = { authorization: basic(agent.json.client_id, agent.json.client_secret) };
    const asked = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: GATEWAY, scope: 'banking:read banking:transfer' }, auth);
    assert.equal(asked.status, 400);
    assert.equal(asked.json.error, 'invalid_scope');
    const event = await audited(as, 'token.refused', agent.json.client_id);
    assert.equal(event.error, 'invalid_scope');
    assert.equal(event.reason, 'registration policy withholds banking:read banking:transfer: no registration.allowed_scopes, so self-registered clients get no resource scopes');

    // Asking for nothing gets no default scopes either.
    const other = await anonymousAgent(as);
    const plain = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: GATEWAY }, { authorization: basic(other.json.client_id, other.json.client_secret) });
    assert.equal(plain.status, 400);
    assert.equal(plain.json.error, 'invalid_scope');
    assert.equal((await audited(as, 'token.refused', other.json.client_id)).reason, 'registration policy withholds banking:read banking:transfer: no registration.allowed_scopes, so self-registered clients get no resource scopes');
  });

  it('with an allowlist, the agent reads but never moves money: a partial request is narrowed, a transfer-only one refused', async () => {
    const allow = await start({ allowed_scopes: ['banking:read'] });
    try {
      const agent = await anonymousAgent(allow);
      assert.equal(agent.json.scope, 'banking:read');
      const auth = { authorization: basic(agent.json.client_id, agent.json.client_secret) };
      const both = await postForm(`${allow.issuer}/token`, { grant_type: 'client_credentials', resource: GATEWAY, scope: 'banking:read banking:transfer' }, auth);
      assert.equal(both.status, 200, both.text);
      assert.equal(both.json.scope, 'banking:read', 'RFC 6749 §5.1: the response names the narrower scope');
      assert.equal(decodeJwt(both.json.access_token as string).scope, 'banking:read');
      assert.equal((await audited(allow, 'scope.withheld', agent.json.client_id)).reason, 'registration policy withholds banking:transfer: not in registration.allowed_scopes');

      const transfer = await postForm(`${allow.issuer}/token`, { grant_type: 'client_credentials', resource: GATEWAY, scope: 'banking:transfer' }, auth);
      assert.equal(transfer.status, 400);
      assert.equal(transfer.json.error, 'invalid_scope');
      const event = await audited(allow, 'token.refused', agent.json.client_id);
      assert.equal(event.error, 'invalid_scope');
      assert.equal(event.reason, 'registration policy withholds banking:transfer: not in registration.allowed_scopes');
    } finally {
      await allow.close();
    }
  });

  it('an MCP client asking for every scope of a resource signs in with the allowed ones only (RFC 6749 §3.3)', async () => {
    const allow = await start({ allowed_scopes: ['banking:read'] });
    try {
      // As MCP Inspector does: register, then ask for every scope the resource metadata lists.
      const client = await post(`${allow.issuer}/register`, { client_name: 'Inspector-like', redirect_uris: ['http://127.0.0.1:4000/cb'], token_endpoint_auth_method: 'none', scope: 'banking:read banking:transfer' });
      assert.equal(client.json.scope, 'banking:read');
      const { verifier, challenge } = pkcePair();
      const url = `${allow.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: client.json.client_id, redirect_uri: 'http://127.0.0.1:4000/cb', code_challenge: challenge, code_challenge_method: 'S256', resource: GATEWAY, scope: 'banking:read banking:transfer', state: 's' })}`;
      const browser = new FormBrowser(allow.issuer);
      const back = await browser.authorize(url);
      const consent = browser.pages.find((p) => p.html.includes('name="decision"'))!;
      assert.match(consent.html, /banking:read/);
      assert.doesNotMatch(consent.html, /banking:transfer/, 'the person is not asked for what the client cannot get');
      const token = await postForm(`${allow.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: 'http://127.0.0.1:4000/cb', client_id: client.json.client_id });
      assert.equal(token.status, 200, token.text);
      assert.equal(decodeJwt(token.json.access_token as string).scope, 'banking:read');
      assert.equal((await audited(allow, 'scope.withheld', client.json.client_id)).reason, 'registration policy withholds banking:transfer: not in registration.allowed_scopes');
    } finally {
      await allow.close();
    }
  });

  it('a resource without scopes is never reachable by client_credentials alone for a self-registered agent', async () => {
    const open = await start({ allowed_scopes: ['banking:read'] }, { resources: [...resources, { id: 'https://identity.example.test', name: 'Identity only' }] } as never);
    try {
      const agent = await anonymousAgent(open);
      const res = await postForm(`${open.issuer}/token`, { grant_type: 'client_credentials', resource: 'https://identity.example.test' }, { authorization: basic(agent.json.client_id, agent.json.client_secret) });
      assert.equal(res.status, 400);
      assert.equal(res.json.error, 'invalid_scope');
      assert.equal((await audited(open, 'token.refused', agent.json.client_id)).reason, 'registration policy: a self-registered client gets client_credentials tokens only with a scope of registration.allowed_scopes');
    } finally {
      await open.close();
    }
  });

  it('a client registered before the policy (no scope stored) is held to the policy in force now', async () => {
    const secret = 'a-secret-of-an-old-registration';
    await as.store.clients.upsert({
      clientId: 'mc_legacy',
      source: 'dynamic',
      metadata: { redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], response_types: [] },
      secretHash: hashSecret(secret),
      createdAt: as.ctx.now(),
    });
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: GATEWAY, scope: 'banking:read' }, { authorization: basic('mc_legacy', secret) });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_scope');
    const event = await audited(as, 'token.refused', 'mc_legacy');
    assert.equal(event.reason, 'registration policy withholds banking:read: no registration.allowed_scopes, so self-registered clients get no resource scopes');
  });

  it('a self-registered public client asking /authorize for a withheld scope is refused (invalid_scope) by default', async () => {
    const client = await post(`${as.issuer}/register`, { redirect_uris: ['http://127.0.0.1:4000/cb'], token_endpoint_auth_method: 'none' });
    assert.equal(client.status, 201);
    const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: client.json.client_id, redirect_uri: 'http://127.0.0.1:4000/cb', code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: GATEWAY, scope: 'banking:read', state: 's' })}`;
    const res = await fetch(url, { redirect: 'manual' });
    assert.equal(res.status, 303);
    assert.equal(new URL(res.headers.get('location')!).searchParams.get('error'), 'invalid_scope');
    const event = await audited(as, 'authorize.refused', client.json.client_id);
    assert.equal(event.reason, 'registration policy withholds banking:read: no registration.allowed_scopes, so self-registered clients get no resource scopes');
  });
});

describe('registration policy: a self-registered agent as the actor of a token exchange (item 1)', () => {
  let as: TestAuthServer & { adminToken: string };
  before(async () => {
    as = await startDelegationServer();
  });
  after(async () => as.close());

  it('cannot take a scope the allowlist does not grant, even from a token a person made out to it', async () => {
    const agent = await anonymousAgent(as, { grant_types: ['authorization_code', TOKEN_EXCHANGE], redirect_uris: ['https://agent.example/cb'] });
    assert.equal(agent.status, 201, JSON.stringify(agent.json));
    // A resource whose tokens name the new agent in may_act, so the person's token is made out to it.
    const handoff = 'https://handoff.example.test';
    const created = await (await adminAccess(as)).api('POST', '/resources', { definition: { id: handoff, name: 'Hand-off', scopes: BANKING, may_act: { client_id: agent.json.client_id } } });
    assert.equal(created.status, 201, created.text);
    const { token } = await userToken(as, { clientId: 'sample-agent', redirectUri: AGENT_REDIRECT, resource: handoff, scope: 'banking:read banking:transfer', clientAuth: auth.agent });
    const res = await exchange(as, { subject_token: token.access_token, resource: R.agent, scope: 'banking:transfer' }, { authorization: basic(agent.json.client_id, agent.json.client_secret) });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_scope');
    const event = await audited(as, 'token.exchange_refused', agent.json.client_id);
    assert.equal(event.error, 'invalid_scope');
    assert.equal(event.reason, 'registration policy withholds banking:transfer: no registration.allowed_scopes, so self-registered clients get no resource scopes');
  });
});

describe('registration policy: RFC 7592 updates re-apply it (item 2)', () => {
  let as: TestAuthServer;
  let client: Record<string, unknown> & { client_id: string; registration_client_uri?: unknown; registration_access_token?: unknown };
  before(async () => {
    as = await start({ allowed_scopes: ['todo:read'] });
    client = (await post(`${as.issuer}/register`, { client_name: 'web app', redirect_uris: ['https://app.example/cb'], grant_types: ['authorization_code'] })).json;
  });
  after(async () => as.close());
  const put = (body: Record<string, unknown>) =>
    fetch(client.registration_client_uri as string, {
      method: 'PUT',
      headers: { authorization: `Bearer ${client.registration_access_token as string}`, 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: client.client_id, redirect_uris: ['https://app.example/cb'], ...body }),
    });

  for (const [grant, reason] of [
    ['client_credentials', 'registration.client_credentials is false (dynamic client)'],
    [TOKEN_EXCHANGE, 'registration.token_exchange is false (dynamic client)'],
  ] as const) {
    it(`adding ${grant} is refused: 400 invalid_client_metadata`, async () => {
      const res = await put({ grant_types: ['authorization_code', grant] });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_client_metadata');
      await as.ctx.audit.flush();
      const [event] = await as.store.audit.list({ type: 'register.refused' });
      assert.equal(event?.error, 'invalid_client_metadata');
      assert.equal(event?.reason, reason);
      const stored = await as.store.clients.find(client.client_id);
      assert.deepEqual(stored?.metadata.grant_types, ['authorization_code'], 'the registration is unchanged');
    });
  }

  it('scopes outside the allowlist are withheld on update too, and the response says so', async () => {
    const res = await put({ grant_types: ['authorization_code'], scope: 'todo:read banking:transfer' });
    assert.equal(res.status, 200);
    const body = (await res.json()) as { scope: string; registration_notes: string[] };
    assert.equal(body.scope, 'todo:read');
    assert.deepEqual(body.registration_notes, ["scope: banking:transfer withheld; not in this server's registration scope allowlist"]);
  });

  it('an agent may not turn itself into a public client', async () => {
    const agent = (await anonymousAgent(as)).json as Record<string, string>;
    const res = await fetch(agent.registration_client_uri!, {
      method: 'PUT',
      headers: { authorization: `Bearer ${agent.registration_access_token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: agent.client_id, grant_types: ['authorization_code'], redirect_uris: ['http://127.0.0.1/cb'], token_endpoint_auth_method: 'none' }),
    });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_client_metadata');
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'register.refused' });
    assert.equal(event?.reason, 'an agent is a confidential client: client_secret_basic, client_secret_post or private_key_jwt');
  });
});

describe('registration policy: client ID metadata documents (item 3)', () => {
  let docs: Server;
  let base: string;
  let jwk: Record<string, unknown>;
  before(async () => {
    jwk = { ...(await exportJWK((await generateKeyPair('ES256')).publicKey)), kid: 'k1', alg: 'ES256' };
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const documents: Record<string, Record<string, unknown>> = {
      '/machine.json': { grant_types: ['client_credentials'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk] } },
      '/exchanger.json': { grant_types: ['authorization_code', TOKEN_EXCHANGE], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [jwk] } },
      '/app.json': { grant_types: ['authorization_code'], authentication_policy: 'Strict', scope: 'todo:read banking:transfer' },
    };
    docs = createServer((req, res) => {
      const extra = documents[req.url ?? ''];
      if (!extra) return void res.writeHead(404).end();
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(JSON.stringify({ client_id: `${base}${req.url}`, client_name: 'Doc', redirect_uris: ['http://127.0.0.1:4000/cb'], ...extra }));
    });
    await new Promise<void>((r) => docs.listen(port, '127.0.0.1', r));
  });
  after(() => docs.close());

  const withAs = async (registration: Partial<AuthServerConfigInput['registration']>, run: (as: TestAuthServer) => Promise<void>) => {
    const as = await start(registration, {
      client_id_metadata_documents: { allow_loopback: true },
      agreements: [{ id: 'a', name: 'A', version: 1, text: 'x' }],
      authentication_policies: [{ name: 'Strict', steps: ['login', { agreement: 'a' }] }],
    } as never);
    try {
      await run(as);
    } finally {
      await as.close();
    }
  };
  /** An authorization request for a document client; JSON errors, as the endpoint gives them to API callers. */
  const authorize = (as: TestAuthServer, path: string) =>
    fetch(`${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: `${base}${path}`, redirect_uri: 'http://127.0.0.1:4000/cb', code_challenge: pkcePair().challenge, code_challenge_method: 'S256', scope: 'todo:read' })}`, {
      headers: { accept: 'application/json' },
      redirect: 'manual',
    });
  const refusedWith = async (as: TestAuthServer, path: string, reason: string) => {
    const res = await authorize(as, path);
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_client');
    const event = await audited(as, 'authorize.refused', `${base}${path}`);
    assert.equal(event.error, 'invalid_client');
    assert.equal(event.reason, reason);
  };

  it('a document declaring client_credentials is refused unless the policy allows it', () =>
    withAs({}, (as) => refusedWith(as, '/machine.json', 'registration policy: registration.client_credentials is false (metadata_document client)')));

  it('a document declaring token exchange is refused unless the policy allows it', () =>
    withAs({}, (as) => refusedWith(as, '/exchanger.json', 'registration policy: registration.token_exchange is false (metadata_document client)')));

  it('registration.enabled: false refuses document clients too', () => withAs({ enabled: false }, (as) => refusedWith(as, '/app.json', 'registration policy: registration.enabled is false')));

  it('dynamic_clients: false refuses document clients too, and the metadata stops offering them', () =>
    withAs({ dynamic_clients: false }, async (as) => {
      await refusedWith(as, '/app.json', 'registration policy: registration.dynamic_clients is false');
      const meta = (await (await fetch(`${as.issuer}/.well-known/oauth-authorization-server`)).json()) as Record<string, unknown>;
      assert.equal(meta.client_id_metadata_document_supported, false);
    }));

  it('the allowlist applies and the document\'s authentication_policy is ignored', () =>
    withAs({ allowed_scopes: ['todo:read'] }, async (as) => {
      const client = await as.ctx.findClient(`${base}/app.json`);
      assert.equal(client?.metadata.scope, 'todo:read');
      assert.equal((client?.metadata as Record<string, unknown>).authentication_policy, undefined);
      const res = await authorize(as, '/app.json');
      assert.equal(res.status, 303);
      assert.match(res.headers.get('location')!, /^\/interaction\//);
    }));
});

describe('seed 003 requests (items 19, 20)', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await start({ allowed_scopes: ['banking:read', 'todo:read'], default_resource: GATEWAY });
  });
  after(async () => as.close());

  it('response_types ["token"] with client_credentials only: accepted, none stored, and said so (item 19)', async () => {
    const agent = await anonymousAgent(as, { response_types: ['token'], scopes: ['banking:read'], token_endpoint_auth_method: 'client_secret_post' });
    assert.equal(agent.status, 201, JSON.stringify(agent.json));
    assert.deepEqual(agent.json.response_types, []);
    assert.deepEqual(agent.json.scopes, ['banking:read']);
    assert.equal(agent.json.scope, 'banking:read');
    assert.deepEqual(agent.json.registration_notes, ['response_types: none registered; without the authorization_code grant the client never uses the authorization endpoint']);
  });

  it('response_types other than code with the authorization code grant: 400 invalid_client_metadata', async () => {
    const res = await anonymousAgent(as, { grant_types: ['authorization_code'], redirect_uris: ['https://agent.example/cb'], response_types: ['token'] });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_client_metadata');
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'aiagent.refused' });
    assert.equal(event?.reason, 'only the code response type is supported');
  });

  it('a scopes member that is not an array of scope tokens: 400 invalid_client_metadata', async () => {
    const res = await anonymousAgent(as, { scopes: 'banking:read' });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_client_metadata');
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'aiagent.refused' });
    assert.equal(event?.reason, 'scopes must be an array of scope tokens');
  });

  it('client credentials with a scope and no resource: the agent\'s default resource from the policy (item 20)', async () => {
    const agent = await anonymousAgent(as, { scopes: ['banking:read'] });
    assert.equal(agent.json.default_resource, GATEWAY);
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', scope: 'banking:read' }, { authorization: basic(agent.json.client_id, agent.json.client_secret) });
    assert.equal(token.status, 200, token.text);
    assert.equal(decodeJwt(token.json.access_token as string).aud, GATEWAY);
  });

  it('a scope in the allowlist that the client did not register for is refused, and the audit says which rule', async () => {
    const agent = await anonymousAgent(as, { scopes: ['todo:read'] });
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: GATEWAY, scope: 'banking:read' }, { authorization: basic(agent.json.client_id, agent.json.client_secret) });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_scope');
    assert.equal((await audited(as, 'token.refused', agent.json.client_id)).reason, "banking:read not in the client's registered scope");
  });

  it('without a default resource: the one resource offering every scope; several: invalid_target naming them', async () => {
    const bare = await start({ allowed_scopes: ['banking:read', 'todo:read'] });
    try {
      const agent = await anonymousAgent(bare);
      assert.equal(agent.json.default_resource, undefined);
      const auth = { authorization: basic(agent.json.client_id, agent.json.client_secret) };
      const one = await postForm(`${bare.issuer}/token`, { grant_type: 'client_credentials', scope: 'todo:read' }, auth);
      assert.equal(one.status, 200, one.text);
      assert.equal(decodeJwt(one.json.access_token as string).aud, 'https://todo.example.test');

      const several = await postForm(`${bare.issuer}/token`, { grant_type: 'client_credentials', scope: 'banking:read' }, auth);
      assert.equal(several.status, 400);
      assert.equal(several.json.error, 'invalid_target');
      assert.equal(several.json.error_description, `several resources offer banking:read; name one with the resource parameter: ${BANK} ${GATEWAY}`);
      const event = await audited(bare, 'token.refused', agent.json.client_id);
      assert.equal(event.error, 'invalid_target');
      assert.equal(event.reason, several.json.error_description);
    } finally {
      await bare.close();
    }
  });
});
