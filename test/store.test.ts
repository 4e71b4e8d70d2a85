import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { openSqlStore, type SqlStore } from '../src/store/index.ts';
import { needsPostgres, postgresUrl } from './helpers/services.ts';
import { randomToken } from '../src/core/index.ts';

/** One suite, run against every engine available here. */
function storeSuite(name: string, options: { skip: string | false }, open: () => Promise<SqlStore>) {
  describe(`store on ${name}`, options, () => {
    let store: SqlStore;
    const now = Math.floor(Date.now() / 1000);
    const id = () => `t-${randomToken(8)}`;

    before(async () => {
      store = await open();
    });
    after(async () => {
      await store?.close();
    });

    it('round-trips clients and keeps only the secret hash', async () => {
      const clientId = id();
      await store.clients.upsert({
        clientId,
        source: 'dynamic',
        metadata: { redirect_uris: ['https://app.example/cb'], token_endpoint_auth_method: 'client_secret_basic', grant_types: ['authorization_code'], response_types: ['code'] },
        secretHash: 'hash-of-secret',
        createdAt: now,
      });
      const found = await store.clients.find(clientId);
      assert.equal(found?.secretHash, 'hash-of-secret');
      assert.deepEqual(found?.metadata.redirect_uris, ['https://app.example/cb']);
      await store.clients.touch(clientId, now + 5);
      assert.equal((await store.clients.find(clientId))?.lastUsedAt, now + 5);
      assert.equal(await store.clients.delete(clientId), true);
      assert.equal(await store.clients.find(clientId), undefined);
    });

    it('consumes a code exactly once', async () => {
      const grantId = id();
      await store.grants.createGrant({ id: grantId, sub: 'u1', clientId: 'c1', resource: 'https://r.example', scope: 'a', createdAt: now, expiresAt: now + 100 });
      const codeHash = id();
      await store.grants.createCode({ codeHash, grantId, clientId: 'c1', redirectUri: 'https://x/cb', codeChallenge: 'c', scope: 'a', resource: 'https://r.example', expiresAt: now + 60 });
      const [a, b] = await Promise.all([store.grants.consumeCode(codeHash, now), store.grants.consumeCode(codeHash, now)]);
      assert.deepEqual([a?.firstUse, b?.firstUse].sort(), [false, true]);
      assert.equal(await store.grants.consumeCode('nope', now), undefined);
    });

    it('rotates a refresh token once and revokes a grant with all its tokens', async () => {
      const grantId = id();
      await store.grants.createGrant({ id: grantId, sub: 'u1', clientId: 'c1', resource: 'https://r.example', scope: 'a', createdAt: now, expiresAt: now + 100 });
      const tokenHash = id();
      await store.grants.createRefreshToken({ tokenHash, grantId, clientId: 'c1', scope: 'a', createdAt: now, expiresAt: now + 100 });
      const next = { tokenHash: id(), grantId, clientId: 'c1', scope: 'a', createdAt: now, expiresAt: now + 100 };
      const rotate = (issued: { refreshToken?: typeof next }, reuseSince = now) => store.grants.rotateRefreshToken(tokenHash, now, { grantId, reuseSince, issued });
      assert.equal(await rotate({ refreshToken: next }), 'rotated');
      assert.equal((await store.grants.findRefreshToken(next.tokenHash))?.grantId, grantId);
      assert.equal(await rotate({}), 'reused');
      assert.equal(await rotate({ refreshToken: { ...next, tokenHash: id() } }, now + 1), 'replayed');
      const jti = id();
      await store.grants.recordAccessToken({ jti, grantId, clientId: 'c1', expiresAt: now + 60 });
      await store.grants.revokeGrant(grantId, now + 1);
      assert.equal((await store.grants.findGrant(grantId))?.revokedAt, now + 1);
      assert.equal((await store.grants.findRefreshToken(tokenHash))?.revokedAt, now + 1);
      assert.equal((await store.grants.findAccessToken(jti))?.revokedAt, now + 1);
    });

    it('rotates and redeems all or nothing: a failed write leaves the old token and the code unspent', async () => {
      const grantId = id();
      await store.grants.createGrant({ id: grantId, sub: 'u1', clientId: 'c1', resource: 'https://r.example', scope: 'a', createdAt: now, expiresAt: now + 100 });
      const taken = { tokenHash: id(), grantId, clientId: 'c1', scope: 'a', createdAt: now, expiresAt: now + 100 };
      await store.grants.createRefreshToken(taken);
      const tokenHash = id();
      await store.grants.createRefreshToken({ ...taken, tokenHash });
      // The new token's hash collides with a stored one: its insert fails after the rotation's update.
      await assert.rejects(store.grants.rotateRefreshToken(tokenHash, now, { grantId, reuseSince: now, issued: { refreshToken: taken } }));
      assert.equal((await store.grants.findRefreshToken(tokenHash))?.rotatedAt, undefined);
      const codeHash = id();
      await store.grants.createCode({ codeHash, grantId, clientId: 'c1', redirectUri: 'https://x/cb', codeChallenge: 'c', scope: 'a', resource: 'https://r.example', expiresAt: now + 60 });
      await assert.rejects(store.grants.redeemCode(codeHash, now, { grantId, issued: { refreshToken: taken } }));
      assert.equal((await store.grants.findCode(codeHash))?.consumedAt, undefined);
      const fresh = { ...taken, tokenHash: id() };
      assert.equal(await store.grants.redeemCode(codeHash, now, { grantId, issued: { refreshToken: fresh } }), 'redeemed');
      assert.equal(await store.grants.redeemCode(codeHash, now, { grantId, issued: {} }), 'replayed');
      await store.grants.revokeGrant(grantId, now);
      assert.equal((await store.grants.findRefreshToken(fresh.tokenHash))?.revokedAt, now);
      assert.equal(await store.grants.rotateRefreshToken(tokenHash, now, { grantId, reuseSince: now, issued: { refreshToken: { ...taken, tokenHash: id() } } }), 'revoked');
    });

    it('revokes an untracked access token by jti', async () => {
      const jti = id();
      await store.grants.revokeAccessToken({ jti, clientId: 'c2', expiresAt: now + 60 }, now);
      assert.equal((await store.grants.findAccessToken(jti))?.revokedAt, now);
    });

    it('remembers consent per user, client and resource', async () => {
      const sub = id();
      await store.consents.upsert({ sub, clientId: 'c1', resource: 'https://r.example', scope: 'a b', createdAt: now });
      await store.consents.upsert({ sub, clientId: 'c1', resource: 'https://r.example', scope: 'a b c', createdAt: now + 1 });
      assert.equal((await store.consents.find(sub, 'c1', 'https://r.example'))?.scope, 'a b c');
      assert.equal(await store.consents.find(sub, 'c1', 'https://other.example'), undefined);
    });

    it('keeps the high-risk scopes ticked with a consent; a row without them reads as nothing ticked', async () => {
      const sub = id();
      await store.consents.upsert({ sub, clientId: 'c1', resource: 'https://r.example', scope: 'a b', createdAt: now });
      assert.equal((await store.consents.find(sub, 'c1', 'https://r.example'))?.highRiskTicked, undefined);
      await store.consents.upsert({ sub, clientId: 'c1', resource: 'https://r.example', scope: 'a b', highRiskTicked: 'b', createdAt: now + 1 });
      assert.equal((await store.consents.find(sub, 'c1', 'https://r.example'))?.highRiskTicked, 'b');
      await store.consents.upsert({ sub, clientId: 'c1', resource: 'https://r.example', scope: 'a', createdAt: now + 2 });
      assert.equal((await store.consents.find(sub, 'c1', 'https://r.example'))?.highRiskTicked, undefined, 'an upsert replaces the ticks too');
    });

    it('appends and lists audit events, newest first', async () => {
      const clientId = id();
      await store.audit.append([
        { at: now, type: 'token.issued', outcome: 'success', clientId, data: { grant_type: 'client_credentials' } },
        { at: now, type: 'client.auth_failed', outcome: 'failure', clientId, error: 'invalid_client', reason: 'secret mismatch' },
      ]);
      const events = await store.audit.list({ clientId });
      assert.equal(events.length, 2);
      assert.equal(events[0]?.type, 'client.auth_failed');
      assert.equal(events[0]?.reason, 'secret mismatch');
      assert.deepEqual(events[1]?.data, { grant_type: 'client_credentials' });
    });

    it('sweeps what has expired', async () => {
      const codeHash = id();
      await store.grants.createCode({ codeHash, grantId: 'g', clientId: 'c1', redirectUri: 'https://x/cb', codeChallenge: 'c', scope: 'a', resource: 'r', expiresAt: now - 10 });
      await store.sweep(now);
      assert.equal(await store.grants.consumeCode(codeHash, now), undefined);
    });

    it('keeps agent attributes, finds clients by fingerprint, disables and expires clients', async () => {
      const clientId = id();
      const fingerprint = id();
      await store.clients.upsert({
        clientId,
        source: 'dynamic',
        metadata: { redirect_uris: [], token_endpoint_auth_method: 'client_secret_basic', grant_types: ['client_credentials'], response_types: ['code'] },
        agent: { agentType: 'assistant', owner: 'demo' },
        fingerprint,
        createdAt: now - 100,
      });
      assert.equal((await store.clients.findByFingerprint(fingerprint))?.clientId, clientId);
      assert.equal((await store.clients.find(clientId))?.agent?.owner, 'demo');
      assert.ok((await store.clients.countDynamic()) >= 1);
      const record = (await store.clients.find(clientId))!;
      await store.clients.upsert({ ...record, disabledAt: now, tokensValidAfter: now });
      assert.ok((await store.clients.listRestricted()).some((d) => d.clientId === clientId && d.disabledAt === now && d.tokensValidAfter === now));
      await store.clients.upsert({ ...record, disabledAt: undefined, tokensValidAfter: now });
      assert.equal((await store.clients.find(clientId))?.disabledAt, undefined);
      assert.ok((await store.clients.listRestricted()).some((d) => d.clientId === clientId && d.disabledAt === undefined && d.tokensValidAfter === now));
      assert.ok((await store.clients.deleteUnused(now - 50)) >= 1);
      assert.equal(await store.clients.find(clientId), undefined);
    });

    it('revokes everything of a client and lists the revoked tokens that are still alive', async () => {
      const clientId = id();
      const grantId = id();
      await store.grants.createGrant({ id: grantId, sub: 'u1', clientId, resource: 'r', scope: 'a', createdAt: now, expiresAt: now + 100 });
      const jti = id();
      await store.grants.recordAccessToken({ jti, grantId, clientId, expiresAt: now + 60, tokenHash: `h-${jti}`, claims: { sub: 'u1', scope: 'a' } });
      assert.deepEqual((await store.grants.findAccessTokenByHash(`h-${jti}`))?.claims, { sub: 'u1', scope: 'a' });
      await store.grants.revokeByClient(clientId, now);
      assert.equal((await store.grants.findGrant(grantId))?.revokedAt, now);
      const listed = await store.grants.listRevokedAccessTokens(now);
      assert.ok(listed.some((r) => r.jti === jti && r.expiresAt === now + 60));
    });

    it('records agreement acceptances by version', async () => {
      const sub = id();
      await store.agreements.accept({ sub, agreementId: 'agent-consent', version: 1, acceptedAt: now });
      await store.agreements.accept({ sub, agreementId: 'agent-consent', version: 2, acceptedAt: now + 1 });
      assert.deepEqual(await store.agreements.find(sub, 'agent-consent'), { sub, agreementId: 'agent-consent', version: 2, acceptedAt: now + 1 });
    });

    it('finds users by username and sub', async () => {
      const sub = id();
      await store.users.upsert({ sub, username: `user-${sub}`, passwordHash: 'scrypt$x', profile: { name: 'Demo' }, createdAt: now });
      assert.equal((await store.users.findByUsername(`user-${sub}`))?.sub, sub);
      assert.equal((await store.users.findBySub(sub))?.profile.name, 'Demo');
    });

    it('keeps user roles, lists and deletes users', async () => {
      const sub = id();
      await store.users.upsert({ sub, username: `admin-${sub}`, profile: {}, createdAt: now, roles: ['admin:agents:write'], source: 'admin' });
      const found = await store.users.findBySub(sub);
      assert.deepEqual([found?.roles, found?.source], [['admin:agents:write'], 'admin']);
      const listed = await store.users.list();
      assert.ok(listed.some((u) => u.sub === sub));
      assert.deepEqual(listed.map((u) => u.username), [...listed.map((u) => u.username)].sort());
      await store.users.upsert({ ...found!, roles: [] });
      assert.equal((await store.users.findBySub(sub))?.roles, undefined);
      assert.equal(await store.users.delete(sub), true);
      assert.equal(await store.users.delete(sub), false);
      assert.equal(await store.users.findBySub(sub), undefined);
    });

    it("lists a user's grants newest first, and lists and deletes their consents", async () => {
      const sub = id();
      await store.grants.createGrant({ id: `${sub}-old`, sub, clientId: 'c1', resource: 'https://r.example', scope: 'a', createdAt: now - 10, expiresAt: now + 100 });
      await store.grants.createGrant({ id: `${sub}-new`, sub, clientId: 'c2', resource: 'https://r.example', scope: 'b', createdAt: now, expiresAt: now + 100 });
      await store.grants.createGrant({ id: `${sub}-other`, sub: id(), clientId: 'c1', resource: 'https://r.example', scope: 'a', createdAt: now, expiresAt: now + 100 });
      assert.deepEqual((await store.grants.listGrantsBySub(sub)).map((g) => g.id), [`${sub}-new`, `${sub}-old`]);
      await store.consents.upsert({ sub, clientId: 'c2', resource: 'https://r.example', scope: 'b', createdAt: now });
      await store.consents.upsert({ sub, clientId: 'c1', resource: 'https://r.example', scope: 'a', createdAt: now });
      assert.deepEqual((await store.consents.listBySub(sub)).map((c) => c.clientId), ['c1', 'c2']);
      assert.equal(await store.consents.delete(sub, 'c1', 'https://r.example'), true);
      assert.equal(await store.consents.delete(sub, 'c1', 'https://r.example'), false);
      assert.deepEqual((await store.consents.listBySub(sub)).map((c) => c.clientId), ['c2']);
    });

    it('keeps agreements and authentication policies added by an admin, per kind', async () => {
      const key = id();
      await store.settings.upsert({ kind: 'agreement', id: key, definition: { id: key, name: 'Terms', version: 1, text: 'x' }, updatedAt: now });
      await store.settings.upsert({ kind: 'authentication_policy', id: key, definition: { name: key, steps: ['login'] }, updatedAt: now });
      await store.settings.upsert({ kind: 'agreement', id: key, definition: { id: key, name: 'Terms', version: 2, text: 'y' }, updatedAt: now + 1 });
      const agreements = (await store.settings.list('agreement')).filter((r) => r.id === key);
      assert.deepEqual(agreements.map((r) => [r.definition.version, r.updatedAt]), [[2, now + 1]]);
      assert.equal(await store.settings.delete('agreement', key), true);
      assert.equal(await store.settings.delete('agreement', key), false);
      assert.ok((await store.settings.list('authentication_policy')).some((r) => r.id === key));
      assert.equal(await store.settings.delete('authentication_policy', key), true);
    });

    it('queries the audit log by type prefix, outcome, subject, time, data and cursor, and counts per day', async () => {
      const sub = id();
      const agent = id();
      // Days of their own in the past, apart from other tests' (and earlier runs') events.
      const d0 = 1_000 + Math.floor(Math.random() * 9_000);
      const day = d0 * 86_400;
      await store.audit.append([
        { at: day + 10, type: 'token.issued', outcome: 'success', clientId: 'c1', sub, data: { grant_type: 'authorization_code' } },
        { at: day + 20, type: 'token.issued', outcome: 'success', clientId: agent, sub, data: { grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange' } },
        { at: day + 30, type: 'token.refused', outcome: 'failure', clientId: 'c1', sub, error: 'invalid_grant' },
        { at: day + 86_400 + 5, type: 'admin.agents.update', outcome: 'success', clientId: 'c9', sub, data: { admin: 'alice_%', act: [agent] } },
      ]);
      const ids = async (q: Partial<Parameters<typeof store.audit.query>[0]>) => (await store.audit.query({ sub, limit: 10, ...q })).map((e) => e.type);
      assert.deepEqual(await ids({}), ['admin.agents.update', 'token.refused', 'token.issued', 'token.issued']);
      assert.deepEqual(await ids({ type: 'token.*' }), ['token.refused', 'token.issued', 'token.issued']);
      assert.deepEqual(await ids({ type: 'token.' }), []);
      assert.deepEqual(await ids({ outcome: 'failure' }), ['token.refused']);
      assert.deepEqual(await ids({ since: day + 20, until: day + 86_400 }), ['token.refused', 'token.issued']);
      // Exact fragments: % and _ are no wildcards.
      assert.deepEqual(await ids({ dataContains: ['"admin":"alice_%"'] }), ['admin.agents.update']);
      assert.deepEqual(await ids({ dataContains: ['"admin":"alice__"'] }), []);
      assert.deepEqual(await ids({ involves: agent }), ['admin.agents.update', 'token.issued']);
      const [first] = await store.audit.query({ sub, limit: 1 });
      assert.deepEqual(await ids({ beforeId: first!.id, limit: 1 }), ['token.refused']);
      const counts = await store.audit.dailyCounts(day, day + 2 * 86_400);
      const of = (d: number, kind: string) => counts.find((c) => c.day === d && c.kind === kind)?.count ?? 0;
      assert.deepEqual([of(d0, 'issued'), of(d0, 'exchange'), of(d0, 'refusal'), of(d0 + 1, 'issued')], [1, 1, 1, 0]);
    });
  });
}

storeSuite('SQLite', { skip: false }, () => openSqlStore({ driver: 'sqlite', sqliteFile: ':memory:' }));
storeSuite('PostgreSQL', needsPostgres(), () => openSqlStore({ driver: 'postgres', databaseUrl: postgresUrl }));
