import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { authServerConfigSchema } from '../../src/config/schema.ts';
import { checkClientFlags } from '../../src/auth-server/client-flags.ts';
import { sameAddress } from '../../src/auth-server/session-transfer.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { pkcePair, registerClient, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * The flags only the configuration file gives: a session transfer client is locked down at start
 * (docs/browser-sessions.md), and `first_party` skips the consent page for configured clients only.
 */
const REDIRECT = 'http://127.0.0.1:4000/callback';
const transfer = (extra: Record<string, unknown> = {}) => ({
  client_id: 'session-transfer',
  token_endpoint_auth_method: 'none',
  grant_types: ['authorization_code'],
  session_transfer: true,
  allowed_return_urls: ['https://app.example/profile'],
  session_transfer_subject_clients: ['native-app'],
  session_transfer_audiences: ['https://api.example/'],
  ...extra,
});
const check = (clients: Record<string, unknown>[], agents: Record<string, unknown>[] = []) => () =>
  checkClientFlags(authServerConfigSchema.parse({ clients, agents, resources: [{ id: 'https://api.example/', name: 'API', scopes: [{ name: 'api:read' }] }] }));

describe('session transfer client: locked down at start', () => {
  it('a well-formed transfer client is accepted', () => assert.doesNotThrow(check([transfer()])));
  it('the issuer is an audience it may accept (userinfo tokens)', () => assert.doesNotThrow(check([transfer({ session_transfer_audiences: ['http://localhost:9000'] })])));
  const refused: [string, Record<string, unknown>[], RegExp][] = [
    ['the default grant types (refresh_token)', [transfer({ grant_types: undefined })], /grant_types must be \[authorization_code\] only/],
    ['client_credentials', [transfer({ grant_types: ['authorization_code', 'client_credentials'] })], /grant_types must be/],
    ['a redirect URI', [transfer({ redirect_uris: [REDIRECT] })], /redirect_uris must be empty/],
    ['first_party', [transfer({ first_party: true })], /cannot be first_party/],
    ['a back-channel logout URI', [transfer({ backchannel_logout_uri: 'https://app.example/bc' })], /takes no post_logout_redirect_uris or backchannel_logout_uri/],
    ['no allowed_return_urls', [transfer({ allowed_return_urls: [] })], /allowed_return_urls must list/],
    ['a return URL with a fragment', [transfer({ allowed_return_urls: ['https://app.example/#x'] })], /must not have a fragment/],
    ['no subject clients', [transfer({ session_transfer_subject_clients: [] })], /session_transfer_subject_clients must name/],
    ['itself as subject client', [transfer({ session_transfer_subject_clients: ['session-transfer'] })], /cannot accept its own tokens/],
    ['no audiences', [transfer({ session_transfer_audiences: [] })], /session_transfer_audiences must name the resources/],
    ['an audience that is no resource', [transfer({ session_transfer_audiences: ['https://elsewhere.example/'] })], /https:\/\/elsewhere.example\/ is neither a resource nor the issuer/],
    ['transactions allowed', [transfer({ transactions: 'allowed' })], /cannot be allowed transactions/],
    ['return URLs without session_transfer', [{ client_id: 'web', allowed_return_urls: ['https://app.example/'] }], /need session_transfer: true/],
  ];
  for (const [name, clients, message] of refused) it(`refuses ${name}`, () => assert.throws(check(clients), message));
  it('refuses the flags on agents', () => {
    assert.throws(check([], [{ client_id: 'bot', first_party: true }]), /agent bot: first_party is for clients/);
    assert.throws(check([], [{ client_id: 'bot', session_transfer: true }]), /agent bot: session_transfer is for clients/);
    assert.throws(check([], [{ client_id: 'bot', allowed_return_urls: ['https://app.example/'] }]), /agent bot: allowed_return_urls is for clients/);
  });
  it('refuses a non-http return URL in the schema', () => {
    assert.equal(authServerConfigSchema.safeParse({ clients: [transfer({ allowed_return_urls: ['javascript:alert(1)'] })] }).success, false);
  });
  it('the server does not start with a weakened transfer client', async () => {
    await assert.rejects(startTestAuthServer({ clients: [transfer({ grant_types: ['authorization_code', 'refresh_token'] })] as never }), /grant_types must be/);
  });
});

describe('session transfer address binding', () => {
  it('the same address, or loopback both times (localhost as IPv4 or IPv6), matches; nothing else', () => {
    assert.equal(sameAddress('203.0.113.7', '203.0.113.7'), true);
    assert.equal(sameAddress('2001:db8:0:1::/64', '2001:db8:0:1::/64'), true);
    assert.equal(sameAddress('127.0.0.1', '0:0:0:0::/64'), true);
    assert.equal(sameAddress('203.0.113.7', '203.0.113.8'), false);
    assert.equal(sameAddress('127.0.0.1', '203.0.113.7'), false);
    assert.equal(sameAddress('unknown', 'unknown'), false);
  });
});

describe('first_party clients skip the consent page', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startTestAuthServer({
      registration: { allowed_scopes: ['mcp:read'] },
      clients: [
        { client_id: 'first', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT], first_party: true },
        { client_id: 'third', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT] },
      ],
    });
  });
  after(async () => as?.close());

  const pagesOf = async (clientId: string, extra: Record<string, string> = {}) => {
    const browser = new FormBrowser(as.issuer);
    const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', resource: as.resource, scope: 'mcp:read', ...extra });
    const back = await browser.authorize(`${as.issuer}/authorize?${query}`);
    assert.ok(back.searchParams.get('code'), 'a code came back');
    return { signIn: browser.pages.some((p) => p.html.includes('name="password"')), consent: browser.pages.some((p) => p.html.includes('name="decision"')) };
  };

  it('a configured first-party client: sign-in, no consent page', async () => assert.deepEqual(await pagesOf('first'), { signIn: true, consent: false }));
  it('prompt=consent still shows it', async () => assert.deepEqual(await pagesOf('first', { prompt: 'consent' }), { signIn: true, consent: true }));
  it('a configured client without the flag asks for consent', async () => assert.deepEqual(await pagesOf('third'), { signIn: true, consent: true }));
  it('a self-registered client that claims first_party still asks for consent', async () => {
    const claimed = await registerClient(as.issuer, { redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], first_party: true, client_name: 'claims first party' });
    assert.deepEqual(await pagesOf(claimed.client_id), { signIn: true, consent: true });
  });
});
