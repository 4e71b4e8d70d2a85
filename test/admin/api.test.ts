import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { basic, decodeJwt, pkcePair, postForm } from '../helpers/auth-server.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { api, auditEvents, signIn, startAdminServer } from './helpers.ts';

type Server = Awaited<ReturnType<typeof startAdminServer>>;
type Json = Record<string, unknown>;

/** Black-box tests of /admin/api/v1 over HTTP, with tokens obtained by signing in (code + PKCE). */
describe('admin API v1', () => {
  let as: Server;
  const tokens: Record<string, string> = {};
  /** Every response seen, checked against the OpenAPI document at the end. */
  const seen: { method: string; template: string; status: number; json: unknown }[] = [];
  const call = async (who: string | undefined, method: string, template: string, path: string, body?: unknown, headers?: Record<string, string>) => {
    const res = await api(as, who === undefined ? undefined : (tokens[who] ?? who), method, path, body, headers);
    seen.push({ method: method.toLowerCase(), template, status: res.status, json: res.json });
    return res;
  };

  before(async () => {
    as = await startAdminServer({
      clients: [
        { client_id: 'admin-test-console', client_name: 'Admin test console', token_endpoint_auth_method: 'none', redirect_uris: ['http://127.0.0.1:5999/callback'] },
        { client_id: 'machine', grant_types: ['client_credentials'] },
      ],
    });
    for (const [user, scope] of [
      ['alice', 'admin:read admin:write'],
      ['reader', 'admin:read'],
      ['agents-admin', 'admin:agents:write'],
    ] as const) {
      const result = await signIn(as, user, { scope });
      assert.ok('accessToken' in result, `${user} signs in`);
      tokens[user] = result.accessToken!;
    }
  });
  after(async () => {
    await as?.close();
  });

  it('signs an admin in with authorization code + PKCE: a token for the admin resource with the admin scopes', () => {
    const claims = decodeJwt(tokens.alice!);
    assert.equal(claims.aud, `${as.issuer}/admin`);
    assert.equal(claims.scope, 'admin:read admin:write');
    assert.equal(claims.client_id, 'admin-test-console');
  });

  it('narrows the scopes to the roles: a finer role gets its own scope only, audited', async () => {
    const result = await signIn(as, 'agents-admin', { scope: 'admin:write admin:agents:write' });
    assert.equal(result.scope, 'admin:agents:write');
    const withheld = (await auditEvents(as)).find((e) => e.type === 'scope.withheld' && e.data?.resource === as.admin);
    assert.equal(withheld?.data?.scope_withheld, 'admin:write');
    assert.equal(withheld?.reason, 'user agents-admin holds no admin role allowing these');
  });

  it('gives a user without an admin role no admin scope: invalid_scope, audited', async () => {
    const result = await signIn(as, 'demo', { scope: 'admin:read' });
    assert.equal(result.error, 'invalid_scope');
    const refused = (await auditEvents(as)).find((e) => e.type === 'authorize.refused' && e.error === 'invalid_scope');
    assert.equal(refused?.reason, 'user demo holds no admin role allowing admin:read');
    // Without naming scopes (all of the resource's) the answer is the same.
    assert.equal((await signIn(as, 'demo', { scope: '' })).error, 'invalid_scope');
  });

  it('issues no admin token to a client acting for itself', async () => {
    const secret = readFileSync(join(as.dataDir, 'secrets', 'machine.secret'), 'utf8').trim();
    const res = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: as.admin, scope: 'admin:read' }, { authorization: basic('machine', secret) });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_target');
  });

  it('answers 401 with the protected resource metadata without a token, and serves that metadata', async () => {
    const res = await call(undefined, 'GET', '/agents', '/agents');
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_token');
    const header = res.headers.get('www-authenticate') ?? '';
    const url = /resource_metadata="([^"]+)"/.exec(header)?.[1];
    assert.equal(url, `${as.issuer}/.well-known/oauth-protected-resource/admin`);
    const metadata = (await (await fetch(url!)).json()) as Json;
    assert.equal(metadata.resource, as.admin);
    assert.deepEqual(metadata.authorization_servers, [as.issuer]);
    assert.ok((metadata.scopes_supported as string[]).includes('admin:agents:write'));
  });

  it('refuses a token for another resource (401), audited with the reason', async () => {
    const other = await signIn(as, 'alice', { scope: 'mcp:read', resource: as.resource });
    const res = await call(other.accessToken!, 'GET', '/agents', '/agents');
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_token');
    assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    const event = (await auditEvents(as)).find((e) => e.type === 'admin.refused' && e.reason?.startsWith('token audience'));
    assert.equal(event?.reason, `token audience ${as.resource} is not ${as.admin}`);
    assert.equal((await call('not-a-token', 'GET', '/agents', '/agents')).status, 401);
  });

  it('answers 403 insufficient_scope per role, naming the scope needed', async () => {
    const cases: [string, string, string, string, unknown, string][] = [
      ['reader', 'PATCH', '/agents/{id}', '/agents/sample-agent', { enabled: false }, 'admin:write admin:agents:write'],
      ['agents-admin', 'GET', '/users', '/users', undefined, 'admin:read admin:write admin:users:read admin:users:write'],
      ['agents-admin', 'POST', '/keys/rotate', '/keys/rotate', {}, 'admin:write admin:keys:write'],
    ];
    for (const [who, method, template, path, body, scope] of cases) {
      const res = await call(who, method, template, path, body);
      assert.equal(res.status, 403, `${who} ${method} ${path}`);
      assert.equal(res.json.error, 'insufficient_scope');
      assert.match(res.headers.get('www-authenticate') ?? '', new RegExp(`error="insufficient_scope", scope="${scope}"`));
    }
    assert.equal((await call('agents-admin', 'PATCH', '/agents/{id}', '/agents/sample-agent', { enabled: true })).status, 200);
    // The configuration file sets this agent's owner: the file is its source of truth.
    const owner = await call('agents-admin', 'PATCH', '/agents/{id}', '/agents/sample-agent', { owner: 'alice' });
    assert.deepEqual([owner.status, owner.json.error, owner.json.error_description], [409, 'conflict', "this agent's owner comes from the configuration file; change it there"]);
    assert.equal((await call('reader', 'GET', '/users', '/users')).status, 200);
  });

  it('reads roles on every call: a role taken away refuses the next call', async () => {
    const user = (await as.store.users.findByUsername('reader'))!;
    await as.store.users.upsert({ ...user, roles: [] });
    try {
      const res = await call('reader', 'GET', '/agents', '/agents');
      assert.equal(res.status, 403);
      assert.equal(res.json.error, 'insufficient_scope');
    } finally {
      await as.store.users.upsert(user);
    }
  });

  it('pages a list across pages with limit and cursor', async () => {
    for (const n of [1, 2, 3]) assert.equal((await call('alice', 'POST', '/users', '/users', { username: `api-user-${n}` })).status, 201);
    const names: string[] = [];
    let path = '/users?limit=2';
    for (let pages = 0; pages < 10; pages++) {
      const res = await call('alice', 'GET', '/users', path);
      assert.equal(res.status, 200);
      assert.ok(res.json.items!.length <= 2);
      names.push(...res.json.items!.map((u) => u.username as string));
      if (!res.json.next_cursor) break;
      path = `/users?limit=2&cursor=${encodeURIComponent(res.json.next_cursor)}`;
    }
    assert.deepEqual(names, ['agents-admin', 'alice', 'api-user-1', 'api-user-2', 'api-user-3', 'demo', 'reader']);
    const bad = await call('alice', 'GET', '/users', '/users?limit=0');
    assert.deepEqual([bad.status, bad.json.error], [400, 'invalid_request']);
  });

  it('sends an ETag and refuses a change made on an older version with 412', async () => {
    const read = await call('alice', 'GET', '/agents/{id}', '/agents/sample-agent');
    const etag = read.headers.get('etag')!;
    assert.match(etag, /^"[A-Za-z0-9_-]+"$/);
    const changed = await call('alice', 'PATCH', '/agents/{id}', '/agents/sample-agent', { enabled: false }, { 'if-match': etag });
    assert.equal(changed.status, 200);
    assert.equal(changed.json.enabled, false);
    assert.notEqual(changed.headers.get('etag'), etag);
    const stale = await call('alice', 'PATCH', '/agents/{id}', '/agents/sample-agent', { enabled: true }, { 'if-match': etag });
    assert.deepEqual([stale.status, stale.json.error], [412, 'precondition_failed']);
    const fresh = await call('alice', 'PATCH', '/agents/{id}', '/agents/sample-agent', { enabled: true }, { 'if-match': changed.headers.get('etag')! });
    assert.deepEqual([fresh.status, fresh.json.enabled], [200, true]);
    // The admin's write is in the audit log, with who made it.
    const query = await call('reader', 'GET', '/audit', `/audit?type=admin.agents.update&actor=alice&decision=success&limit=5`);
    assert.equal(query.status, 200);
    assert.ok(query.json.items!.length >= 2);
    assert.ok(query.json.items!.every((e) => e.sub === (decodeJwt(tokens.alice!).sub as string) && (e.data as Json).front_end === 'api'));
  });

  it('serves every area, with resource identifiers URL-encoded in the path', async () => {
    const gets: [string, string][] = [
      ['/clients', '/clients?kind=client'],
      ['/clients/{id}', '/clients/machine'],
      ['/users/{username}', '/users/alice'],
      ['/users/{username}/grants', '/users/alice/grants'],
      ['/users/{username}/consents', '/users/alice/consents'],
      ['/resources', '/resources'],
      ['/resources/{id}', `/resources/${encodeURIComponent(as.resource)}`],
      ['/keys', '/keys'],
      ['/agreements', '/agreements'],
      ['/policies', '/policies'],
      ['/registration', '/registration'],
      ['/reports/usage', '/reports/usage'],
      ['/audit', '/audit?limit=3'],
    ];
    for (const [template, path] of gets) {
      const res = await call('alice', 'GET', template, path);
      assert.equal(res.status, 200, `${path}: ${JSON.stringify(res.json)}`);
    }
    const created = await call('alice', 'POST', '/resources', '/resources', { definition: { id: 'https://new.example.test/api', name: 'New API', scopes: [{ name: 'new:read' }] } });
    assert.equal(created.status, 201);
    const path = `/resources/${encodeURIComponent('https://new.example.test/api')}`;
    const replaced = await call('alice', 'PUT', '/resources/{id}', path, { definition: { id: 'https://new.example.test/api', name: 'Renamed API' } });
    assert.deepEqual([replaced.status, (replaced.json.definition as Json).name], [200, 'Renamed API']);
    assert.ok(as.ctx.resource('https://new.example.test/api'));
    const configured = await call('alice', 'DELETE', '/resources/{id}', `/resources/${encodeURIComponent(as.resource)}`);
    assert.deepEqual([configured.status, configured.json.error], [409, 'conflict']);
    assert.equal((await call('alice', 'DELETE', '/resources/{id}', path)).status, 200);
    const missing = await call('alice', 'GET', '/agents/{id}', '/agents/nobody');
    assert.deepEqual([missing.status, missing.json.error], [404, 'not_found']);
  });

  it('adds an agreement and a policy asking for it, which a client created through the API then enforces', async () => {
    const agreement = await call('alice', 'POST', '/agreements', '/agreements', { id: 'house-rules', name: 'House rules', version: 1, text: 'Be kind.' });
    assert.deepEqual([agreement.status, agreement.json.source], [201, 'admin']);
    const policy = await call('alice', 'POST', '/policies', '/policies', { name: 'Rules-Login', steps: ['login', { agreement: 'house-rules' }] });
    assert.equal(policy.status, 201);
    const unknown = await call('alice', 'POST', '/policies', '/policies', { name: 'Broken', steps: ['login', { agreement: 'nope' }] });
    assert.deepEqual([unknown.status, unknown.json.error_description], [400, 'invalid input: steps: unknown agreement nope']);
    const client = await call('alice', 'POST', '/clients', '/clients', { client_id: 'ruled-console', token_endpoint_auth_method: 'none', redirect_uris: ['http://127.0.0.1:5999/callback'], authentication_policy: 'Rules-Login' });
    assert.deepEqual([client.status, client.json.authentication_policy, client.json.client_secret], [201, 'Rules-Login', null]);
    // Signing in through that client asks for the agreement; the token says which policy ran.
    const { verifier, challenge } = pkcePair();
    const url = `${as.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'ruled-console', redirect_uri: 'http://127.0.0.1:5999/callback', code_challenge: challenge, code_challenge_method: 'S256', scope: 'mcp:read', resource: as.resource })}`;
    const browser = new FormBrowser(as.issuer);
    const back = await browser.authorize(url, { username: 'demo', password: 'demo' });
    assert.ok(browser.pages.some((p) => p.html.includes('Be kind.')), 'the agreement page was shown');
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, redirect_uri: 'http://127.0.0.1:5999/callback', client_id: 'ruled-console', code_verifier: verifier });
    assert.equal(decodeJwt(token.json.access_token as string).acr, 'Rules-Login');
    // Nothing in use can be removed; a new version is kept.
    const inUse = await call('alice', 'DELETE', '/agreements/{id}', '/agreements/house-rules');
    assert.deepEqual([inUse.status, inUse.json.error_description], [409, 'authentication policies ask for this agreement: Rules-Login']);
    const named = await call('alice', 'DELETE', '/policies/{name}', '/policies/Rules-Login');
    assert.deepEqual([named.status, named.json.error_description], [409, 'clients name this policy: ruled-console']);
    const read = await call('reader', 'GET', '/agreements/{id}', '/agreements/house-rules');
    const bumped = await call('alice', 'PUT', '/agreements/{id}', '/agreements/house-rules', { name: 'House rules', version: 2, text: 'Be kinder.' }, { 'if-match': read.headers.get('etag')! });
    assert.deepEqual([bumped.status, bumped.json.version], [200, 2]);
    assert.equal(as.ctx.agreement('house-rules')?.text, 'Be kinder.');
    const older = await call('alice', 'PUT', '/agreements/{id}', '/agreements/house-rules', { name: 'House rules', version: 1, text: 'x' });
    assert.equal(older.status, 400);
    assert.equal((await call('alice', 'DELETE', '/clients/{id}', '/clients/ruled-console')).status, 200);
    assert.equal((await call('alice', 'DELETE', '/policies/{name}', '/policies/Rules-Login')).status, 200);
    assert.equal((await call('alice', 'DELETE', '/agreements/{id}', '/agreements/house-rules')).status, 200);
    assert.deepEqual((await call('reader', 'GET', '/agreements', '/agreements')).json.items, []);
  });

  it("lists a user's sessions and signs one out: its grants and their tokens die, other sessions stay", async () => {
    const second = await signIn(as, 'alice', { scope: 'admin:read' });
    const sid = decodeJwt(second.accessToken!).sid as string;
    assert.equal((await call(second.accessToken!, 'GET', '/agents', '/agents')).status, 200);
    const listed = await call('reader', 'GET', '/users/{username}/sessions', '/users/alice/sessions');
    assert.equal(listed.status, 200);
    const sids = listed.json.items!.map((s) => s.sid);
    assert.ok(sids.includes(sid) && sids.includes(decodeJwt(tokens.alice!).sid), 'both of alice\'s sign-ins are listed');
    const refused = await call('reader', 'DELETE', '/users/{username}/sessions', `/users/alice/sessions?sid=${sid}`);
    assert.deepEqual([refused.status, refused.json.error], [403, 'insufficient_scope']);
    const out = await call('alice', 'DELETE', '/users/{username}/sessions', `/users/alice/sessions?sid=${sid}`);
    assert.equal(out.status, 200);
    assert.deepEqual(out.json, { signed_out: 1, revoked_grants: 1 });
    assert.equal((await call(second.accessToken!, 'GET', '/agents', '/agents')).status, 401);
    assert.equal((await call('alice', 'GET', '/agents', '/agents')).status, 200);
    const after = await call('reader', 'GET', '/users/{username}/sessions', '/users/alice/sessions');
    assert.ok(!after.json.items!.some((s) => s.sid === sid));
    const again = await call('alice', 'DELETE', '/users/{username}/sessions', `/users/alice/sessions?sid=${sid}`);
    assert.deepEqual([again.status, again.json.error], [404, 'not_found']);
  });

  it('publishes an OpenAPI 3.1 document that the responses match', async () => {
    const res = await fetch(`${as.issuer}/admin/api/v1/openapi.json`);
    assert.equal(res.status, 200);
    const doc = (await res.json()) as Json & { paths: Record<string, Record<string, { responses: Record<string, { content?: { 'application/json': { schema: Json } } }> }>>; components: { schemas: Record<string, Json> } };
    assert.equal(doc.openapi, '3.1.0');
    const resolve = (schema: Json): Json => (typeof schema.$ref === 'string' ? doc.components.schemas[schema.$ref.split('/').pop()!]! : schema);
    assert.ok(seen.length > 30);
    const statuses = new Set<number>();
    for (const response of seen) {
      const declared = doc.paths[response.template]?.[response.method]?.responses[String(response.status)];
      assert.ok(declared, `the document declares ${response.method.toUpperCase()} ${response.template} → ${response.status}`);
      const schema = z.fromJSONSchema(resolve(declared.content!['application/json'].schema) as never);
      const parsed = schema.safeParse(response.json);
      assert.ok(parsed.success, `${response.method.toUpperCase()} ${response.template} ${response.status}: ${parsed.error?.message}`);
      statuses.add(response.status);
    }
    assert.deepEqual([...statuses].sort(), [200, 201, 400, 401, 403, 404, 409, 412]);
    // The schemas are strict: a response with a field the document does not name would fail.
    const agent = doc.paths['/agents/{id}']!.get!.responses['200']!.content!['application/json'].schema;
    assert.equal(z.fromJSONSchema(agent as never).safeParse({ ...(seen.find((s) => s.template === '/agents/{id}' && s.status === 200)!.json as Json), extra: 1 }).success, false);
  });
});

describe('admin API v1: bootstrap', () => {
  it('creates the first admin with the static token, then refuses; the admin signs in', async () => {
    const as = await startAdminServer({ users: [{ username: 'demo', password_hash: 'scrypt$x' }] });
    try {
      const staticToken = readFileSync(join(as.dataDir, 'secrets', 'admin.token'), 'utf8').trim();
      const body = { username: 'first-admin', password: 'demo-password-long' };
      const wrong = await api(as, 'x'.repeat(43), 'POST', '/bootstrap', body);
      assert.deepEqual([wrong.status, wrong.json.error], [401, 'invalid_token']);
      const first = await api(as, staticToken, 'POST', '/bootstrap', body);
      assert.equal(first.status, 201);
      assert.deepEqual(first.json.roles, ['admin:write']);
      const doc = (await (await fetch(`${as.issuer}/admin/api/v1/openapi.json`)).json()) as { paths: Record<string, { post: { responses: Record<string, { content: { 'application/json': { schema: Json } } }> } }> };
      assert.ok(z.fromJSONSchema(doc.paths['/bootstrap']!.post.responses['201']!.content['application/json'].schema as never).safeParse(first.json).success, 'the document describes the answer');
      const again = await api(as, staticToken, 'POST', '/bootstrap', { ...body, username: 'second-admin' });
      assert.deepEqual([again.status, again.json.error], [409, 'conflict']);
      // The static token is no admin token for the API itself: it only bootstraps.
      for (const [method, path, input] of [
        ['GET', '/agents'],
        ['PATCH', '/agents/sample-agent', { enabled: false }],
        ['POST', '/resources', { definition: { id: 'https://static.example', name: 'static' } }],
        ['GET', '/audit'],
      ] as const) {
        const refused = await api(as, staticToken, method, path, input);
        assert.deepEqual([refused.status, refused.json.error], [401, 'invalid_token'], `${method} ${path}`);
      }
      const refusals = (await auditEvents(as)).filter((e) => e.type === 'admin.refused');
      assert.equal(refusals.length, 4);
      for (const event of refusals) assert.equal(event.reason, 'token invalid, expired or revoked');
      // The legacy static-token API is gone: its paths answer 404, with the token or without.
      for (const [method, path] of [
        ['GET', '/admin/api/agents'],
        ['GET', '/admin/api/agents/sample-agent'],
        ['PATCH', '/admin/api/agents/sample-agent'],
        ['GET', '/admin/api/resources'],
        ['PUT', '/admin/api/resources'],
        ['DELETE', '/admin/api/resources?id=https%3A%2F%2Fmcp.example.test%2Fmcp'],
        ['GET', '/admin/api/audit'],
      ]) {
        const legacy = await fetch(`${as.issuer}${path}`, { method, headers: { authorization: `Bearer ${staticToken}`, 'content-type': 'application/json' }, body: method === 'GET' || method === 'DELETE' ? undefined : '{"enabled":false}' });
        assert.equal(legacy.status, 404, `${method} ${path}`);
        assert.equal(((await legacy.json()) as { error: string }).error, 'not_found');
      }
      assert.equal((await as.store.clients.find('sample-agent'))?.disabledAt, undefined, 'nothing was changed');
      const events = (await auditEvents(as)).filter((e) => e.type === 'admin.bootstrap').map((e) => [e.outcome, e.error ?? null]);
      assert.deepEqual(events, [['failure', 'conflict'], ['success', null], ['failure', 'invalid_token']]);
    } finally {
      await as.close();
    }
  });

  it('with admin.bootstrap_token: false, there is no bootstrap; admins of the configuration file sign in', async () => {
    const as = await startAdminServer({ admin: { bootstrap_token: false } });
    try {
      const bootstrap = await api(as, 'x'.repeat(43), 'POST', '/bootstrap', { username: 'x', password: 'demo-password-long' });
      assert.deepEqual([bootstrap.status, bootstrap.json.error], [404, 'not_found']);
      const token = await signIn(as, 'alice');
      assert.equal((await api(as, token.accessToken, 'GET', '/agents')).status, 200);
    } finally {
      await as.close();
    }
  });
});
