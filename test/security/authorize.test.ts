import { after, before, describe } from 'node:test';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { LOOPBACK_REDIRECT, WEB_REDIRECT, authorizeUrl, startSuiteServer } from './fixture.ts';
import { asAudit, oauth, redirected, runCases, type AttackCase } from './runner.ts';

/**
 * The authorization endpoint (OAuth 2.1 §4.1.1, RFC 9700 §4.1, RFC 7636, RFC 8707). Until the
 * redirect URI is trusted, errors are shown (400, never redirected); after that they go back to
 * the client with a 303 carrying `error`.
 */
describe('security: authorize', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startSuiteServer();
  });
  after(async () => as.close());

  /** An error that must not be redirected: asked for as JSON, 400, no Location. */
  const direct = (params: Record<string, string | undefined>) => async () => {
    const res = await fetch(authorizeUrl(as, params), { redirect: 'manual', headers: { accept: 'application/json' } });
    if (res.headers.get('location')) return { status: res.status, error: `redirected to ${res.headers.get('location')}` };
    return oauth(res);
  };
  const back = (params: Record<string, string | undefined>, to = WEB_REDIRECT) => async () =>
    redirected(to)(await fetch(authorizeUrl(as, params), { redirect: 'manual' }));
  const unregistered = (uri: string): AttackCase => ({
    name: `redirect_uri ${uri}`,
    attack: direct({ redirect_uri: uri }),
    status: 400,
    error: 'invalid_request',
    auditReason: `redirect_uri=${uri}`,
  });

  const cases: AttackCase[] = [
    // Redirect URI variations (exact match; RFC 9700 §4.1.3): none may be redirected to.
    ...[
      'https://client.example/cb/evil', // prefix match
      'https://client.example/cbx', // suffix
      'https://client.example/cb/', // trailing slash
      'https://CLIENT.example/cb', // host case
      'https://client.example/CB', // path case
      'https://client.example/cb#frag', // fragment
      'https://attacker@client.example/cb', // userinfo
      'https://client.example:8443/cb', // port on a non-loopback URI
      'https://client.example/cb/../evil', // path traversal
      'https://client.example/%63b', // percent-encoded path
      'https://client.example/cb?x=1', // added query
      'http://client.example/cb', // scheme downgrade
      'https://client.example.attacker.test/cb', // host suffix
      'https://attacker.test/cb', // another host
      'https://client.example%2eattacker.test/cb', // encoded dot
      'http://user@127.0.0.1:4000/callback', // loopback userinfo
      'http://localhost:4000/callback', // another loopback name
      'http://127.0.0.1:4000/callback/../other', // loopback traversal
      'http://127.0.0.1:4000/callback?next=https://attacker.test', // loopback added query
      'http://127.1:4000/callback', // loopback host in a short IPv4 form
      'http://127.0.0.1:4000/x/../callback', // loopback traversal that normalizes to the registered path
    ].map(unregistered),
    { name: 'no redirect_uri for a client with two', attack: direct({ redirect_uri: undefined }), status: 400, error: 'invalid_request', auditReason: 'redirect_uri is required' },
    { name: 'unknown client', attack: direct({ client_id: 'nobody' }), status: 400, error: 'invalid_client', auditReason: 'client_id=nobody' },
    { name: 'missing client_id', attack: direct({ client_id: undefined }), status: 400, error: 'invalid_request', auditReason: 'parameter client_id is required' },
    {
      name: 'client_id repeated',
      attack: async () => oauth(await fetch(`${authorizeUrl(as)}&client_id=spa`, { headers: { accept: 'application/json' } })),
      status: 400,
      error: 'invalid_request',
      auditReason: 'parameter client_id is repeated',
    },
    // After the redirect URI is trusted: errors go back to it.
    { name: 'PKCE missing', attack: back({ code_challenge: undefined, code_challenge_method: undefined }), status: 303, error: 'invalid_request', auditReason: 'code_challenge is required (PKCE)' },
    { name: 'PKCE plain', attack: back({ code_challenge_method: 'plain' }), status: 303, error: 'invalid_request', auditReason: 'code_challenge_method=plain' },
    { name: 'PKCE method missing (defaults to plain)', attack: back({ code_challenge_method: undefined }), status: 303, error: 'invalid_request', auditReason: 'code_challenge_method=(missing)' },
    { name: 'PKCE challenge too short', attack: back({ code_challenge: 'abc' }), status: 303, error: 'invalid_request', auditReason: 'code_challenge is not a valid S256 challenge' },
    { name: 'PKCE challenge with bad characters', attack: back({ code_challenge: `${'a'.repeat(42)}=` }), status: 303, error: 'invalid_request', auditReason: 'code_challenge is not a valid S256 challenge' },
    { name: 'response_type token (implicit)', attack: back({ response_type: 'token' }), status: 303, error: 'unsupported_response_type', auditReason: 'response_type must be code' },
    { name: 'response_type code token (hybrid)', attack: back({ response_type: 'code token' }), status: 303, error: 'unsupported_response_type', auditReason: 'response_type must be code' },
    { name: 'response_type missing', attack: back({ response_type: undefined }), status: 303, error: 'unsupported_response_type', auditReason: 'response_type must be code' },
    { name: 'request object (JAR) not supported', attack: back({ request: 'eyJhbGciOiJub25lIn0.e30.' }), status: 303, error: 'invalid_request', auditReason: 'request objects are not supported' },
    // RFC 9126 §4: a request_uri (from /par) comes alone with client_id; beside other parameters it is refused, unredirected.
    { name: 'request_uri beside front-channel parameters', attack: direct({ request_uri: 'https://attacker.test/req' }), status: 400, error: 'invalid_request', auditReason: 'front-channel parameter response_type beside request_uri' },
    { name: 'scope the resource does not offer', attack: back({ scope: 'api:read' }), status: 303, error: 'invalid_scope', auditReason: `scope api:read is not offered by ${'https://mcp.example.test/mcp'}` },
    { name: 'unknown resource', attack: back({ resource: 'https://attacker.test/mcp' }), status: 303, error: 'invalid_target', auditReason: 'resource=https://attacker.test/mcp' },
    { name: "a resource's scope asked of the authorization server", attack: async () => back({ resource: as.issuer })(), status: 303, error: 'invalid_scope', auditReason: /^scope mcp:read is not offered by http:\/\/127\.0\.0\.1:\d+$/ },
    {
      name: 'two resources in one request',
      attack: async () => redirected(WEB_REDIRECT)(await fetch(`${authorizeUrl(as)}&resource=${encodeURIComponent('https://api.example.test')}`, { redirect: 'manual' })),
      status: 303,
      error: 'invalid_target',
      auditReason: 'request one resource per token',
    },
    { name: 'prompt=none combined with login', attack: back({ prompt: 'none login' }), status: 303, error: 'invalid_request', auditReason: 'prompt=none cannot be combined' },
    { name: 'max_age negative', attack: back({ max_age: '-1' }), status: 303, error: 'invalid_request', auditReason: 'max_age must be a non-negative integer' },
    {
      name: 'state repeated',
      // An ambiguous state cannot be echoed: shown to the user, not redirected.
      attack: async () => redirected(WEB_REDIRECT)(await fetch(`${authorizeUrl(as)}&state=other`, { redirect: 'manual', headers: { accept: 'application/json' } })),
      status: 400,
      error: 'invalid_request',
      auditReason: 'parameter state is repeated',
    },
    { name: 'a client-credentials-only client at the authorization endpoint', attack: direct({ client_id: 'machine' }), status: 400, error: 'invalid_request', auditReason: 'redirect_uri=https://client.example/cb' },
    { name: 'loopback redirect, implicit flow', attack: back({ redirect_uri: LOOPBACK_REDIRECT, response_type: 'token' }, LOOPBACK_REDIRECT), status: 303, error: 'unsupported_response_type', auditReason: 'response_type must be code' },
  ];
  runCases(cases, asAudit(() => as));
});
