import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * Seed 003 ("Configure a DCR onboarding flow"), its three requests as written: register at
 * /aiagent/register, client credentials with a scope and no resource, tokeninfo with the token as
 * a query parameter. The server is configured as shipped, plus what the seed's Task 1 sets up: a
 * client registration scope allowlist (and a resource offering the seed's example scopes).
 */
describe('seed 003, literally', () => {
  let as: TestAuthServer;
  const API = 'https://data.example.test';
  before(async () => {
    as = await startTestAuthServer({
      resources: [{ id: API, name: 'Data', scopes: [{ name: 'data-read' }, { name: 'data-write' }] }],
      registration: { allowed_scopes: ['data-read', 'data-write'] },
    });
  });
  after(async () => as.close());

  it('registers the agent, gets a client credentials token for data-read, and tokeninfo shows client_id, aud and scope', async () => {
    // Task 3: the seed's payload, its placeholders filled with the seed's own examples.
    const registered = await fetch(`${as.issuer}/aiagent/register`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({
        grant_types: ['client_credentials'],
        response_types: ['token'],
        redirect_uris: ['https://example.com/callback'],
        scopes: ['data-read', 'data-write'],
        client_name: 'Retail Chatbot',
        token_endpoint_auth_method: 'client_secret_post',
      }),
    });
    assert.equal(registered.status, 201);
    const client = (await registered.json()) as Record<string, unknown>;
    assert.equal(typeof client.client_id, 'string');
    assert.equal(typeof client.client_secret, 'string');
    assert.deepEqual(client.grant_types, ['client_credentials']);
    assert.deepEqual(client.redirect_uris, ['https://example.com/callback']);
    assert.deepEqual(client.scopes, ['data-read', 'data-write']);
    assert.deepEqual(client.response_types, [], 'no authorization endpoint, no response types');
    assert.ok((client.registration_notes as string[]).some((note) => note.startsWith('response_types: none registered')));

    // Task 4, step 1: client_secret_post, a scope, no resource.
    const tokenResponse = await fetch(`${as.issuer}/token`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', client_id: client.client_id as string, client_secret: client.client_secret as string, scope: 'data-read' }),
    });
    assert.equal(tokenResponse.status, 200);
    const token = (await tokenResponse.json()) as Record<string, unknown>;
    assert.equal(token.scope, 'data-read');
    assert.equal(token.token_type, 'Bearer');
    assert.equal(typeof token.expires_in, 'number');

    // Task 4, step 2: `curl -G --data-urlencode access_token=…`.
    const info = await fetch(`${as.issuer}/tokeninfo?${new URLSearchParams({ access_token: token.access_token as string })}`);
    assert.equal(info.status, 200);
    const claims = (await info.json()) as Record<string, unknown>;
    assert.equal(claims.client_id, client.client_id);
    assert.equal(claims.sub, client.client_id);
    assert.equal(claims.aud, API, 'the one resource offering data-read (RFC 8707)');
    assert.equal(claims.scope, 'data-read');
    assert.equal(claims.iss, as.issuer);
  });

  it('tokeninfo refuses a token sent two ways at once (RFC 6750 §2): 400 invalid_request', async () => {
    const res = await fetch(`${as.issuer}/tokeninfo?access_token=abc`, { headers: { authorization: 'Bearer abc' } });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'tokeninfo.refused' });
    assert.equal(event?.error, 'invalid_request');
    assert.equal(event?.reason, 'a token in both the Authorization header and the query');
  });
});
