import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { basic, DEMO_PASSWORD_HASH, postForm } from '../helpers/auth-server.ts';
import { issueAccessToken } from '../../src/auth-server/tokens.ts';
import { api, auditEvents, signIn, startAdminServer } from './helpers.ts';

/**
 * A lesser admin must not reach full admin rights by minting an admin-audience token outside an
 * admin's own sign-in. The path once open (found in review): a resource offering a scope named
 * `admin:write` with a claim mapping that sets `may_act`, a client whose id equals the victim's
 * `sub` (client credentials then yield a token whose `sub` is the victim's), and a token exchange
 * into the admin resource. Each link is now refused on its own, with its reason audited.
 */
describe('admin plane: no escalation through resources, clients and token exchange', () => {
  let as: Awaited<ReturnType<typeof startAdminServer>>;
  let mallory: string;
  let aliceSub: string;
  before(async () => {
    as = await startAdminServer({
      users: [
        { username: 'alice', password_hash: DEMO_PASSWORD_HASH, roles: ['admin:write'] },
        { username: 'mallory', password_hash: DEMO_PASSWORD_HASH, roles: ['admin:clients:write', 'admin:resources:write', 'admin:users:read'] },
      ],
    } as never);
    mallory = (await signIn(as, 'mallory', { scope: 'admin:clients:write admin:resources:write admin:users:read' })).accessToken!;
    aliceSub = (await api(as, mallory, 'GET', '/users/alice')).json.sub as string;
  });
  after(() => as?.close());

  it('a resource cannot offer a scope named admin:*: 400 invalid_request, audited', async () => {
    const res = await api(as, mallory, 'POST', '/resources', { definition: { id: 'https://evil.example/api', name: 'Evil', scopes: [{ name: 'admin:write' }] } });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_request');
    assert.match(String(res.json.error_description), /scope admin:write is reserved for the built-in admin resource/);
    const event = (await auditEvents(as)).find((e) => e.type === 'admin.resources.create' && e.outcome === 'failure');
    assert.match(event?.reason ?? '', /reserved for the built-in admin resource/);
  });

  it('a claim mapping cannot set may_act: 400 invalid_request, audited', async () => {
    const res = await api(as, mallory, 'POST', '/resources', { definition: { id: 'https://evil.example/api', name: 'Evil', scopes: [{ name: 'evil:read' }], claims: { may_act: '{"sub": client.client_id}' } } });
    assert.equal(res.status, 400);
    assert.equal(res.json.error, 'invalid_request');
    assert.match(String(res.json.error_description), /claim may_act cannot be mapped/);
  });

  it('a token whose sub is an admin\'s but comes from client credentials is no admin token, and no exchange makes one', async () => {
    // A resource without admin names or mappings is allowed; a client named like alice's subject too.
    assert.equal((await api(as, mallory, 'POST', '/resources', { definition: { id: 'https://plain.example/api', name: 'Plain', scopes: [{ name: 'plain:read' }], may_act: 'requesting_client' } })).status, 201);
    const client = await api(as, mallory, 'POST', '/clients', { client_id: aliceSub, token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'] });
    assert.equal(client.status, 201, JSON.stringify(client.json));
    const secret = client.json.client_secret as string;
    const cc = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: 'https://plain.example/api', scope: 'plain:read' }, { authorization: basic(aliceSub, secret) });
    assert.equal(cc.status, 200, cc.text);
    const exchange = await postForm(
      `${as.issuer}/token`,
      { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: cc.json.access_token as string, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', resource: as.admin, scope: 'admin:write' },
      { authorization: basic(aliceSub, secret) },
    );
    assert.equal(exchange.status, 400);
    assert.equal(exchange.json.error, 'invalid_target');
    const refused = (await auditEvents(as)).find((e) => e.type === 'token.exchange_refused' && e.error === 'invalid_target' && e.reason === 'exchange into the admin resource (admin.delegation.actors is empty)');
    assert.ok(refused, 'the refused exchange is audited with its reason');
  });

  it('least privilege: an admin:write admin may ask for one area only, and the token then holds just that', async () => {
    const narrow = await signIn(as, 'alice', { scope: 'admin:keys:read' });
    assert.equal(narrow.scope, 'admin:keys:read');
    assert.equal((await api(as, narrow.accessToken!, 'GET', '/keys')).status, 200);
    const beyond = await api(as, narrow.accessToken!, 'GET', '/agents');
    assert.equal(beyond.status, 403);
    assert.equal(beyond.json.error, 'insufficient_scope');
    // Asked for broad and narrow together, the token names the broad one only.
    assert.equal((await signIn(as, 'alice', { scope: 'admin:read admin:keys:read admin:agents:write' })).scope, 'admin:read admin:agents:write');
  });

  it('the admin API takes only tokens of an admin\'s own sign-in (a grant of that user for the admin resource): a signed admin-audience token without one is 401, audited', async () => {
    const alice = await signIn(as, 'alice', { scope: 'admin:write' });
    assert.equal((await api(as, alice.accessToken, 'GET', '/agents')).status, 200, 'an admin\'s own sign-in works');
    // Any other path to a validly signed admin-audience token (none is open today) meets this check.
    const client = (await as.ctx.findClient(aliceSub))!;
    const minted = await issueAccessToken(as.ctx, { sub: aliceSub, client, resource: as.ctx.resource(as.admin)!, scopes: ['admin:write'], grantType: 'client_credentials' });
    const res = await api(as, minted.token, 'GET', '/agents');
    assert.equal(res.status, 401);
    assert.equal(res.json.error, 'invalid_token');
    const event = (await auditEvents(as)).find((e) => e.type === 'admin.refused' && e.reason === 'token is not from a sign-in (no grant)');
    assert.ok(event, 'refused with the reason in the audit log');
  });
});
