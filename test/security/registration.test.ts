import { after, before, describe } from 'node:test';
import { registerClient, type TestAuthServer } from '../helpers/auth-server.ts';
import { startSuiteServer } from './fixture.ts';
import { asAudit, oauth, runCases, type AttackCase } from './runner.ts';

/**
 * Dynamic client registration (RFC 7591 §3.2.2) and its management protocol (RFC 7592 §2), as
 * shipped: open registration, no client_credentials for self-registered clients. Every request
 * here comes from one address, so the suite stays under the default 30 registrations a minute.
 */
describe('security: registration', () => {
  let as: TestAuthServer;
  let owned: { client_id: string; registration_access_token: string };
  let other: { client_id: string; registration_access_token: string };
  before(async () => {
    as = await startSuiteServer();
    owned = (await registerClient(as.issuer, { redirect_uris: ['https://owned.example/cb'], client_name: 'owned' })) as never;
    other = (await registerClient(as.issuer, { redirect_uris: ['https://other.example/cb'], client_name: 'other' })) as never;
  });
  after(async () => as.close());

  const post = (path: string, body: unknown) => async () =>
    oauth(await fetch(`${as.issuer}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body) }));
  const register = (name: string, metadata: unknown, error: string, auditReason: string | RegExp): AttackCase => ({ name, attack: post('/register', metadata), status: 400, error, auditReason });
  const badRedirect = (uri: string, why: string): AttackCase =>
    register(`redirect_uri ${uri}`, { redirect_uris: [uri] }, 'invalid_redirect_uri', `redirect_uri ${JSON.stringify(uri)} ${why}`);
  const manage = (method: string, id: () => string, token: () => string | undefined, body?: () => unknown) => async () =>
    oauth(
      await fetch(`${as.issuer}/register/${id()}`, {
        method,
        headers: { 'content-type': 'application/json', ...(token() ? { authorization: `Bearer ${token()}` } : {}) },
        body: body === undefined ? undefined : JSON.stringify(body()),
      }),
    );
  const INVALID_RAT = 'the registration access token is invalid';

  const cases: AttackCase[] = [
    badRedirect('javascript:alert(document.cookie)//', 'uses the forbidden scheme javascript:'),
    badRedirect('data:text/html,<script>alert(1)</script>', 'uses the forbidden scheme data:'),
    badRedirect('file:///etc/passwd', 'uses the forbidden scheme file:'),
    badRedirect('vbscript:msgbox', 'uses the forbidden scheme vbscript:'),
    badRedirect('http://client.example/cb', 'must use https unless it is a loopback address'),
    badRedirect('http://10.0.0.1/cb', 'must use https unless it is a loopback address'),
    badRedirect('https://client.example/cb#frag', 'must not contain a fragment'),
    badRedirect('https://client.example/cb#', 'must not contain a fragment'),
    badRedirect('https://*.example.com/cb', 'must not contain a wildcard'),
    badRedirect('https://client.example/*', 'must not contain a wildcard'),
    badRedirect('/relative/cb', 'is not an absolute URI'),
    badRedirect('myapp:/cb', 'uses a private-use scheme that is not in reverse-domain form'),
    register('redirect_uris as a string', { redirect_uris: 'https://client.example/cb' }, 'invalid_redirect_uri', /^redirect_uris: /),
    register('no redirect_uris for the code grant', { client_name: 'x' }, 'invalid_redirect_uri', 'redirect_uris are required for the authorization code grant'),
    register('client_credentials for a self-registered client (off by default)', { grant_types: ['client_credentials'] }, 'invalid_client_metadata', 'registration.client_credentials is false (dynamic client)'),
    register('an unknown grant type', { redirect_uris: ['https://client.example/cb'], grant_types: ['password'] }, 'invalid_client_metadata', 'grant_type password is not supported'),
    register('the implicit response type', { redirect_uris: ['https://client.example/cb'], response_types: ['token'] }, 'invalid_client_metadata', 'only the code response type is supported'),
    register('an unknown auth method', { redirect_uris: ['https://client.example/cb'], token_endpoint_auth_method: 'client_secret_jwt' }, 'invalid_client_metadata', /^token_endpoint_auth_method: /),
    register('a public client with token exchange', { redirect_uris: ['https://client.example/cb'], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:token-exchange'] }, 'invalid_client_metadata', 'a public client cannot use client_credentials or token exchange'),
    register('private_key_jwt without keys', { redirect_uris: ['https://client.example/cb'], token_endpoint_auth_method: 'private_key_jwt' }, 'invalid_client_metadata', 'private_key_jwt needs jwks or jwks_uri'),
    register('jwks and jwks_uri together', { redirect_uris: ['https://client.example/cb'], token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ kty: 'EC' }] }, jwks_uri: 'https://client.example/jwks' }, 'invalid_client_metadata', 'use jwks or jwks_uri, not both'),
    register('an unknown default_resource', { redirect_uris: ['https://client.example/cb'], default_resource: 'https://attacker.test' }, 'invalid_client_metadata', 'default_resource is not a known resource'),
    register('a body that is not JSON', '{"redirect_uris":', 'invalid_client_metadata', 'not JSON: Unexpected end of JSON input'),
    register('a JSON array body', [{ redirect_uris: ['https://client.example/cb'] }], 'invalid_client_metadata', 'the body is an array'),
    { name: 'an agent choosing its own client_id', attack: post('/aiagent/register', { client_id: 'web', client_name: 'impostor' }), status: 400, error: 'invalid_client_metadata', auditReason: 'the server chooses an agent client_id' },
    // RFC 7592 §2: the registration access token, and only the client's own.
    { name: 'read a registration without a token', attack: manage('GET', () => owned.client_id, () => undefined), status: 401, error: 'invalid_token', auditReason: INVALID_RAT },
    { name: 'read a registration with a wrong token', attack: manage('GET', () => owned.client_id, () => 'forged'), status: 401, error: 'invalid_token', auditReason: INVALID_RAT },
    { name: "read a registration with another client's token", attack: manage('GET', () => owned.client_id, () => other.registration_access_token), status: 401, error: 'invalid_token', auditReason: INVALID_RAT },
    { name: 'read an unknown client', attack: manage('GET', () => 'mc_nobody', () => owned.registration_access_token), status: 401, error: 'invalid_token', auditReason: INVALID_RAT },
    { name: 'read a configured client', attack: manage('GET', () => 'web', () => owned.registration_access_token), status: 401, error: 'invalid_token', auditReason: INVALID_RAT },
    {
      name: 'the registration token in the query string',
      attack: async () => oauth(await fetch(`${as.issuer}/register/${owned.client_id}?access_token=${owned.registration_access_token}`)),
      status: 401,
      error: 'invalid_token',
      auditReason: INVALID_RAT,
    },
    {
      name: 'update another client with my token',
      attack: manage('PUT', () => other.client_id, () => owned.registration_access_token, () => ({ client_id: 'x', redirect_uris: ['https://attacker.test/cb'] })),
      status: 401,
      error: 'invalid_token',
      auditReason: INVALID_RAT,
    },
    {
      name: 'update with a client_id that is not the one managed',
      attack: manage('PUT', () => owned.client_id, () => owned.registration_access_token, () => ({ client_id: other.client_id, redirect_uris: ['https://owned.example/cb'] })),
      status: 400,
      error: 'invalid_client_metadata',
      auditReason: 'client_id must match the client being updated',
    },
    {
      name: 'update to a javascript: redirect URI',
      attack: manage('PUT', () => owned.client_id, () => owned.registration_access_token, () => ({ client_id: owned.client_id, redirect_uris: ['javascript:alert(1)'] })),
      status: 400,
      error: 'invalid_redirect_uri',
      auditReason: 'redirect_uri "javascript:alert(1)" uses the forbidden scheme javascript:',
    },
    { name: 'delete another client with my token', attack: manage('DELETE', () => other.client_id, () => owned.registration_access_token), status: 401, error: 'invalid_token', auditReason: INVALID_RAT },
  ];
  runCases(cases, asAudit(() => as));
});
