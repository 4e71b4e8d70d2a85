import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { adminAccess, signInAdmin, staticAdminToken, type AdminAccess } from '../helpers/admin.ts';
import { postForm, registerClient, type TestAuthServer } from '../helpers/auth-server.ts';
import { clientAuth, freshTokens, startSuiteServer } from './fixture.ts';
import { asAudit, oauth, runCases, type AttackCase } from './runner.ts';

const API = 'https://api.example.test';
const READER_PASSWORD = 'reader-password-0123';

/**
 * The admin API (`/admin/api/v1`): an access token of an admin's own sign-in for the admin
 * resource, in the Authorization header, and nothing else — not the static admin token (which only
 * creates the first admin), not a token in the query, not another credential of this server, not
 * a user's token for another resource. A read-only admin cannot write; changes are validated even
 * for an admin. The legacy static-token endpoints (`/admin/api/…` without v1) are gone.
 */
describe('security: admin API', () => {
  let as: TestAuthServer;
  let staticToken: string;
  let admin: AdminAccess;
  let readerToken: string;
  let clientToken: string;
  let userToken: string;
  let registrationToken: string;
  before(async () => {
    as = await startSuiteServer({
      agents: [{ client_id: 'helper-agent', client_secret_env: 'SECURITY_MACHINE_SECRET' }],
    });
    staticToken = staticAdminToken(as);
    admin = await adminAccess(as);
    const reader = await admin.api('POST', '/users', { username: 'reader', password: READER_PASSWORD, roles: ['admin:read'] });
    assert.equal(reader.status, 201, reader.text);
    readerToken = (await signInAdmin(as.issuer, 'reader', READER_PASSWORD, 'admin:read')).accessToken;
    clientToken = (await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: as.resource }, clientAuth.machine)).json.access_token as string;
    userToken = (await freshTokens(as)).access_token;
    registrationToken = (await registerClient(as.issuer, { redirect_uris: ['https://client.example/cb'] })).registration_access_token as string;
  });
  after(async () => as.close());

  const request = (method: string, path: string | (() => string), headers: () => Record<string, string>, body?: unknown) => async () =>
    oauth(await fetch(`${as.issuer}/admin/api/v1${typeof path === 'string' ? path : path()}`, { method, headers: { 'content-type': 'application/json', ...headers() }, body: body === undefined ? undefined : JSON.stringify(body) }));
  const bearer = (token: () => string) => () => ({ authorization: `Bearer ${token()}` });
  const asAdmin = () => admin.headers;
  const otherAudience = () => `token audience ${as.resource} is not ${as.issuer}/admin`;
  const denied = (name: string, method: string, path: string | (() => string), headers: () => Record<string, string>, reason: string | (() => string), body?: unknown): AttackCase => ({
    name,
    attack: request(method, path, headers, body),
    status: 401,
    error: 'invalid_token',
    get auditReason() {
      return typeof reason === 'string' ? reason : reason();
    },
    auditKind: 'admin.refused',
  });
  const INVALID = 'token invalid, expired or revoked';
  const configured = `/resources/${encodeURIComponent(API)}`;

  const cases: AttackCase[] = [
    denied('list agents without a token', 'GET', '/agents', () => ({}), 'no bearer token'),
    denied('read the audit log without a token', 'GET', '/audit', () => ({}), 'no bearer token'),
    denied('disable an agent without a token', 'PATCH', '/agents/helper-agent', () => ({}), 'no bearer token', { enabled: false }),
    denied('add a resource without a token', 'POST', '/resources', () => ({}), 'no bearer token', { definition: { id: 'https://attacker.test', name: 'x' } }),
    denied('delete a resource without a token', 'DELETE', configured, () => ({}), 'no bearer token'),
    denied('a wrong token', 'GET', '/agents', () => ({ authorization: 'Bearer not-an-admin-token' }), INVALID),
    denied('the static admin token: it only bootstraps', 'GET', '/agents', bearer(() => staticToken), INVALID),
    denied('the static admin token, writing', 'PATCH', '/agents/helper-agent', bearer(() => staticToken), INVALID, { enabled: false }),
    denied('the static admin token, reading the audit log', 'GET', '/audit', bearer(() => staticToken), INVALID),
    denied("an admin's token with a character appended", 'GET', '/agents', bearer(() => `${admin.accessToken}x`), INVALID),
    denied("an admin's token with its signature cut short", 'GET', '/agents', bearer(() => admin.accessToken.slice(0, -2)), INVALID),
    denied("an admin's token in the query string", 'GET', () => `/agents?access_token=${admin.accessToken}`, () => ({}), 'no bearer token'),
    denied("an admin's token as Basic credentials", 'GET', '/agents', () => ({ authorization: `Basic ${Buffer.from(`root:${admin.accessToken}`).toString('base64')}` }), 'no bearer token'),
    denied("an admin's token in a cookie", 'GET', '/agents', () => ({ cookie: `admin_token=${admin.accessToken}` }), 'no bearer token'),
    denied("a client's access token of this server", 'GET', '/agents', bearer(() => clientToken), otherAudience),
    denied("a user's access token for another resource (the user is no admin)", 'GET', '/agents', bearer(() => userToken), otherAudience),
    denied('a registration access token', 'PATCH', '/agents/helper-agent', bearer(() => registrationToken), INVALID, { enabled: false }),
    {
      name: 'a read-only admin disabling an agent',
      attack: request('PATCH', '/agents/helper-agent', bearer(() => readerToken), { enabled: false }),
      status: 403,
      error: 'insufficient_scope',
      auditReason: 'reader holds admin:read; agents.update needs one of admin:write admin:agents:write',
      auditKind: 'admin.agents.update',
    },
    {
      name: 'a read-only admin adding a resource',
      attack: request('POST', '/resources', bearer(() => readerToken), { definition: { id: 'https://attacker.test', name: 'x' } }),
      status: 403,
      error: 'insufficient_scope',
      auditReason: 'reader holds admin:read; resources.create needs one of admin:write admin:resources:write',
      auditKind: 'admin.resources.create',
    },
    { name: 'an unknown change to an agent', attack: request('PATCH', '/agents/helper-agent', asAdmin, { enabled: false, tokens_valid_after: 0 }), status: 400, error: 'invalid_request', auditReason: /^invalid input: / },
    { name: 'a client that is not an agent', attack: request('PATCH', '/agents/web', asAdmin, { enabled: false }), status: 404, error: 'not_found', auditReason: 'no such agent' },
    {
      name: 'replacing a configured resource',
      attack: request('PUT', configured, asAdmin, { definition: { id: API, name: 'Hijacked', scopes: [{ name: 'api:read' }] } }),
      status: 409,
      error: 'conflict',
      auditReason: 'resource is defined in the configuration file',
    },
    { name: 'deleting a configured resource', attack: request('DELETE', configured, asAdmin), status: 409, error: 'conflict', auditReason: 'resource is defined in the configuration file' },
  ];
  runCases(cases, asAudit(() => as));

  it('the static token still creates no second admin: 409 conflict, audited with the admins that exist', async () => {
    const res = await request('POST', '/bootstrap', bearer(() => staticToken), { username: 'intruder', password: 'intruder-password-0123' })();
    assert.deepEqual(res, { status: 409, error: 'conflict' });
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'admin.bootstrap', limit: 1 });
    assert.equal(event?.outcome, 'failure');
    assert.equal(event?.reason, 'admins exist: reader, root');
  });

  it('the legacy static-token endpoints are gone: 404 with the static token, and nothing changes', async () => {
    for (const [method, path, body] of [
      ['GET', '/admin/api/agents'],
      ['GET', '/admin/api/agents/helper-agent'],
      ['PATCH', '/admin/api/agents/helper-agent', { enabled: false }],
      ['GET', '/admin/api/resources'],
      ['PUT', '/admin/api/resources', { id: API, name: 'Hijacked' }],
      ['DELETE', `/admin/api/resources?id=${encodeURIComponent(API)}`],
      ['GET', '/admin/api/audit'],
    ] as const) {
      const res = await fetch(`${as.issuer}${path}`, { method, headers: { authorization: `Bearer ${staticToken}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
      assert.deepEqual(await oauth(res), { status: 404, error: 'not_found' }, `${method} ${path}`);
    }
    assert.equal((await as.store.clients.find('helper-agent'))?.disabledAt, undefined);
    assert.equal((await as.store.resources.list()).find((r) => r.id === API)?.definition.name, 'Test API');
  });
});
