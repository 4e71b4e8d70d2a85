import { after, before, describe } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { postForm, registerClient, type TestAuthServer } from '../helpers/auth-server.ts';
import { clientAuth, startSuiteServer } from './fixture.ts';
import { asAudit, oauth, runCases, type AttackCase } from './runner.ts';

/**
 * The admin API (`/admin/api/…`): a bearer admin token from the environment or the data dir, and
 * nothing else — not a token in the query, not another credential of this server. Changes are
 * validated even for the admin.
 */
describe('security: admin API', () => {
  let as: TestAuthServer;
  let adminToken: string;
  let accessToken: string;
  let registrationToken: string;
  before(async () => {
    as = await startSuiteServer({
      agents: [{ client_id: 'helper-agent', client_secret_env: 'SECURITY_MACHINE_SECRET' }],
    });
    adminToken = readFileSync(join(as.dataDir, 'secrets', 'admin.token'), 'utf8').trim();
    accessToken = (await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: as.resource }, clientAuth.machine)).json.access_token as string;
    registrationToken = (await registerClient(as.issuer, { redirect_uris: ['https://client.example/cb'] })).registration_access_token as string;
  });
  after(async () => as.close());

  const request = (method: string, path: string | (() => string), headers: () => Record<string, string>, body?: unknown) => async () =>
    oauth(await fetch(`${as.issuer}${typeof path === 'string' ? path : path()}`, { method, headers: { 'content-type': 'application/json', ...headers() }, body: body === undefined ? undefined : JSON.stringify(body) }));
  const asAdmin = () => ({ authorization: `Bearer ${adminToken}` });
  const denied = (name: string, method: string, path: string | (() => string), headers: () => Record<string, string>, reason: string, body?: unknown): AttackCase => ({
    name,
    attack: request(method, path, headers, body),
    status: 401,
    error: 'invalid_token',
    auditReason: reason,
  });

  const cases: AttackCase[] = [
    denied('list agents without a token', 'GET', '/admin/api/agents', () => ({}), 'no bearer token'),
    denied('read the audit log without a token', 'GET', '/admin/api/audit', () => ({}), 'no bearer token'),
    denied('disable an agent without a token', 'PATCH', '/admin/api/agents/helper-agent', () => ({}), 'no bearer token', { enabled: false }),
    denied('add a resource without a token', 'PUT', '/admin/api/resources', () => ({}), 'no bearer token', { id: 'https://attacker.test', name: 'x' }),
    denied('delete a resource without a token', 'DELETE', '/admin/api/resources?id=https://api.example.test', () => ({}), 'no bearer token'),
    denied('a wrong token', 'GET', '/admin/api/agents', () => ({ authorization: 'Bearer not-the-admin-token' }), 'wrong admin token'),
    denied('the admin token with a character appended', 'GET', '/admin/api/agents', () => ({ authorization: `Bearer ${adminToken}x` }), 'wrong admin token'),
    denied('a prefix of the admin token', 'GET', '/admin/api/agents', () => ({ authorization: `Bearer ${adminToken.slice(0, -1)}` }), 'wrong admin token'),
    denied('the admin token upper-cased', 'GET', '/admin/api/agents', () => ({ authorization: `Bearer ${adminToken.toUpperCase()}` }), 'wrong admin token'),
    denied('the admin token in the query string', 'GET', () => `/admin/api/agents?access_token=${adminToken}`, () => ({}), 'no bearer token'),
    denied('the admin token as Basic credentials', 'GET', '/admin/api/agents', () => ({ authorization: `Basic ${Buffer.from(`admin:${adminToken}`).toString('base64')}` }), 'no bearer token'),
    denied('the admin token in a cookie', 'GET', '/admin/api/agents', () => ({ cookie: `admin_token=${adminToken}` }), 'no bearer token'),
    denied("a client's access token of this server", 'GET', '/admin/api/agents', () => ({ authorization: `Bearer ${accessToken}` }), 'wrong admin token'),
    denied('a registration access token', 'PATCH', '/admin/api/agents/helper-agent', () => ({ authorization: `Bearer ${registrationToken}` }), 'wrong admin token', { enabled: false }),
    { name: 'an unknown change to an agent', attack: request('PATCH', '/admin/api/agents/helper-agent', asAdmin, { enabled: false, tokens_valid_after: 0 }), status: 400, error: 'invalid_request', auditReason: /^invalid change: / },
    { name: 'a client that is not an agent', attack: request('PATCH', '/admin/api/agents/web', asAdmin, { enabled: false }), status: 404, error: 'invalid_request', auditReason: 'no such agent' },
    { name: 'replacing a configured resource', attack: request('PUT', '/admin/api/resources', asAdmin, { id: 'https://api.example.test', name: 'Hijacked', scopes: [{ name: 'api:read' }] }), status: 409, error: 'invalid_request', auditReason: 'this resource comes from the configuration file; change it there' },
    { name: 'deleting a configured resource', attack: request('DELETE', '/admin/api/resources?id=https://api.example.test', asAdmin), status: 409, error: 'invalid_request', auditReason: 'this resource comes from the configuration file; remove it there' },
  ];
  runCases(cases, asAudit(() => as));
});
