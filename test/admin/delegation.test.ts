import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { basic, decodeJwt, postForm } from '../helpers/auth-server.ts';
import { api, auditEvents, REDIRECT_URI, signIn, startAdminServer } from './helpers.ts';

const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const SECRETS = { ops: 'ops-agent-secret-0123456789abcdef012345', stray: 'stray-agent-secret-0123456789abcdef0123' };

/**
 * An agent acting for an administrator (admin.delegation.actors): off by default; when an agent is
 * named, it exchanges the admin's own admin token for one carrying act, and every call it makes is
 * audited as the admin with the chain.
 */
describe('agents acting for an admin', () => {
  process.env.TEST_OPS_SECRET = SECRETS.ops;
  process.env.TEST_STRAY_SECRET = SECRETS.stray;
  const agents = [
    { client_id: 'ops-agent', client_name: 'Ops agent', client_secret_env: 'TEST_OPS_SECRET', redirect_uris: [REDIRECT_URI] },
    { client_id: 'stray-agent', client_name: 'Stray agent', client_secret_env: 'TEST_STRAY_SECRET', redirect_uris: [REDIRECT_URI] },
    { client_id: 'sample-agent', client_name: 'Sample agent', owner: 'demo' },
  ];
  const through = (who: 'ops' | 'stray') => ({ client: { id: `${who}-agent`, secret: SECRETS[who] } });
  const exchange = (issuer: string, subject: string, who: 'ops' | 'stray', scope?: string) =>
    postForm(
      `${issuer}/token`,
      { grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN, resource: `${issuer}/admin`, ...(scope ? { scope } : {}) },
      { authorization: basic(`${who}-agent`, SECRETS[who]) },
    );

  describe('by default', () => {
    let as: Awaited<ReturnType<typeof startAdminServer>>;
    before(async () => {
      as = await startAdminServer({ agents });
    });
    after(async () => as.close());

    it('no exchange makes an admin token: 400 invalid_target, audited with the reason', async () => {
      const admin = await signIn(as, 'alice', { scope: 'admin:read' });
      assert.ok('accessToken' in admin);
      const res = await exchange(as.issuer, admin.accessToken!, 'ops');
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.error, 'invalid_target');
      const refused = (await auditEvents(as)).find((e) => e.type === 'token.exchange_refused' && e.clientId === 'ops-agent');
      assert.match(String(refused?.reason), /admin\.delegation\.actors is empty/);
    });
  });

  describe('with admin.delegation.actors: [ops-agent]', () => {
    let as: Awaited<ReturnType<typeof startAdminServer>>;
    before(async () => {
      as = await startAdminServer({ agents, admin: { delegation: { actors: ['ops-agent'] } } });
    });
    after(async () => as.close());

    it('the named agent acts for the admin with no more than the admin holds, and the audit names both', async () => {
      const admin = await signIn(as, 'reader', { scope: 'admin:read', ...through('ops') });
      assert.ok('accessToken' in admin);
      const res = await exchange(as.issuer, admin.accessToken!, 'ops');
      assert.equal(res.status, 200, res.text);
      const claims = decodeJwt(res.json.access_token as string);
      assert.deepEqual(claims.act, { sub: 'ops-agent', iss: as.issuer, sub_profile: 'ai_agent', client_id: 'ops-agent' });
      assert.equal(claims.aud, `${as.issuer}/admin`);
      assert.equal(claims.scope, 'admin:read');
      assert.equal(claims.sub, decodeJwt(admin.accessToken!).sub);

      const listed = await api(as, res.json.access_token as string, 'GET', '/agents');
      assert.equal(listed.status, 200);
      const event = (await auditEvents(as)).find((e) => e.type === 'admin.agents.list');
      assert.equal(event?.data?.admin, 'reader');
      assert.deepEqual(event?.data?.act, ['ops-agent']);

      // A write scope the admin's token lacks cannot be added by the exchange.
      const wider = await exchange(as.issuer, admin.accessToken!, 'ops', 'admin:write');
      assert.equal(wider.status, 400, wider.text);
      assert.equal(wider.json.error, 'invalid_scope');
      const refused = (await auditEvents(as)).filter((e) => e.type === 'token.exchange_refused' && e.clientId === 'ops-agent')[0];
      assert.match(String(refused?.reason), /scope admin:write is not in the subject token/);
    });

    it('an agent not named is refused at the exchange (400 invalid_target, reason audited)', async () => {
      const admin = await signIn(as, 'alice', { scope: 'admin:read', ...through('stray') });
      assert.ok('accessToken' in admin);
      const res = await exchange(as.issuer, admin.accessToken!, 'stray');
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.error, 'invalid_target');
      const refused = (await auditEvents(as)).find((e) => e.type === 'token.exchange_refused' && e.clientId === 'stray-agent');
      assert.match(String(refused?.reason), /actor stray-agent not allowed/);
    });

    it("an admin token the agent did not receive itself is refused (400 invalid_request, reason audited)", async () => {
      const admin = await signIn(as, 'alice', { scope: 'admin:read' });
      assert.ok('accessToken' in admin);
      const res = await exchange(as.issuer, admin.accessToken!, 'ops');
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.error, 'invalid_request');
      const refused = (await auditEvents(as)).filter((e) => e.type === 'token.exchange_refused' && e.clientId === 'ops-agent')[0];
      assert.match(String(refused?.reason), /subject token was issued to admin-test-console, not ops-agent/);
    });

    it("only an admin's own admin token can be exchanged: a user token for another resource is refused", async () => {
      const user = await signIn(as, 'demo', { scope: 'openid', resource: as.issuer });
      assert.ok('accessToken' in user);
      const res = await exchange(as.issuer, user.accessToken!, 'ops', 'admin:read');
      assert.equal(res.status, 400, res.text);
      assert.equal(res.json.error, 'invalid_request');
      const refused = (await auditEvents(as)).filter((e) => e.type === 'token.exchange_refused' && e.clientId === 'ops-agent')[0];
      assert.match(String(refused?.reason), /is not the admin resource/);
    });

    it("disabling the agent stops the admin tokens it holds: 401 invalid_token at the admin API", async () => {
      const admin = await signIn(as, 'alice', { scope: 'admin:read admin:write', ...through('ops') });
      assert.ok('accessToken' in admin);
      const res = await exchange(as.issuer, admin.accessToken!, 'ops', 'admin:read');
      assert.equal(res.status, 200, res.text);
      const delegated = res.json.access_token as string;
      assert.equal((await api(as, delegated, 'GET', '/agents')).status, 200);

      const disabled = await api(as, admin.accessToken!, 'PATCH', '/agents/ops-agent', { enabled: false });
      assert.equal(disabled.status, 200, JSON.stringify(disabled.json));
      try {
        const after = await api(as, delegated, 'GET', '/agents');
        assert.equal(after.status, 401);
        assert.equal(after.json.error, 'invalid_token');
        const refused = (await auditEvents(as)).filter((e) => e.type === 'admin.refused')[0];
        assert.match(String(refused?.reason), /invalid, expired or revoked/);
      } finally {
        await api(as, admin.accessToken!, 'PATCH', '/agents/ops-agent', { enabled: true });
      }
    });
  });

  describe('an agent removed from the list', () => {
    it('loses the admin tokens it already holds at the next call (401, reason audited)', async () => {
      const as = await startAdminServer({ agents, admin: { delegation: { actors: ['ops-agent'] } } });
      try {
        const admin = await signIn(as, 'alice', { scope: 'admin:read', ...through('ops') });
        assert.ok('accessToken' in admin);
        const res = await exchange(as.issuer, admin.accessToken!, 'ops');
        assert.equal(res.status, 200, res.text);
        as.ctx.config.admin.delegation.actors = [];
        const refused = await api(as, res.json.access_token as string, 'GET', '/agents');
        assert.equal(refused.status, 401);
        assert.equal(refused.json.error, 'invalid_token');
        const event = (await auditEvents(as)).filter((e) => e.type === 'admin.refused')[0];
        assert.match(String(event?.reason), /ops-agent is not in admin\.delegation\.actors/);
      } finally {
        await as.close();
      }
    });
  });
});
