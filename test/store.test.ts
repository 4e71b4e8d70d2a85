import assert from 'node:assert/strict';
import { describe, it, before, after } from 'node:test';
import { openSqlStore, WorkloadIdentityTaken, type SqlStore } from '../src/store/index.ts';
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

    it('keeps a client\'s workload identity with it, one client per identity (issue 17)', async () => {
      const a = id();
      const b = id();
      const issuer = `https://oidc.example/${id()}`;
      const metadata = { redirect_uris: [], token_endpoint_auth_method: 'none' as const, grant_types: ['client_credentials'], response_types: [] };
      const workloadIdentity = { issuer, subject: 'system:serviceaccount:agents:planner', claims: { 'kubernetes.io.namespace': 'agents' } };
      await store.clients.upsert({ clientId: a, source: 'config', metadata, createdAt: now, workloadIdentity });
      assert.deepEqual((await store.clients.find(a))?.workloadIdentity, workloadIdentity);
      assert.equal((await store.clients.findByWorkload(issuer, workloadIdentity.subject))?.clientId, a);
      assert.equal(await store.clients.findByWorkload(issuer, 'system:serviceaccount:agents:other'), undefined);
      assert.equal((await store.clients.list()).find((c) => c.clientId === a)?.workloadIdentity?.subject, workloadIdentity.subject);
      // Another client claiming it: refused, and nothing of that write is kept.
      await assert.rejects(
        store.clients.upsert({ clientId: b, source: 'config', metadata, createdAt: now, workloadIdentity: { issuer, subject: workloadIdentity.subject } }),
        (e: Error) => e instanceof WorkloadIdentityTaken && e.heldBy === a,
      );
      assert.equal(await store.clients.find(b), undefined);
      await store.clients.upsert({ clientId: b, source: 'config', metadata, createdAt: now });
      await assert.rejects(store.clients.update(b, { workloadIdentity: { issuer, subject: workloadIdentity.subject } }), WorkloadIdentityTaken);
      assert.equal((await store.clients.find(b))?.workloadIdentity, undefined);
      // Moving it: a clears it (a metadata-only update leaves it alone), then b takes it, without claims.
      assert.equal(await store.clients.update(a, { metadata: { ...metadata, client_name: 'x' } }), true);
      assert.equal((await store.clients.find(a))?.workloadIdentity?.subject, workloadIdentity.subject);
      assert.equal(await store.clients.update(a, { workloadIdentity: undefined }), true);
      assert.equal(await store.clients.findByWorkload(issuer, workloadIdentity.subject), undefined);
      assert.equal(await store.clients.update(b, { workloadIdentity: { issuer, subject: workloadIdentity.subject } }), true);
      assert.deepEqual((await store.clients.findByWorkload(issuer, workloadIdentity.subject))?.workloadIdentity, { issuer, subject: workloadIdentity.subject });
      assert.equal(await store.clients.update(id(), { workloadIdentity: { issuer, subject: 'nobody' } }), false);
      // Deleting the client frees it.
      assert.equal(await store.clients.delete(b), true);
      assert.equal(await store.clients.findByWorkload(issuer, workloadIdentity.subject), undefined);
      await store.clients.upsert({ clientId: a, source: 'config', metadata, createdAt: now, workloadIdentity });
      assert.equal((await store.clients.findByWorkload(issuer, workloadIdentity.subject))?.clientId, a);
      await store.clients.delete(a);
      // Two clients claiming one identity at once: exactly one gets it.
      const [c, d] = [id(), id()];
      const claims = await Promise.allSettled([c, d].map((clientId) => store.clients.upsert({ clientId, source: 'config', metadata, createdAt: now, workloadIdentity: { issuer, subject: 'race' } })));
      assert.deepEqual(claims.map((r) => r.status).sort(), ['fulfilled', 'rejected']);
      assert.ok((claims.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason instanceof WorkloadIdentityTaken);
      const winner = (await store.clients.findByWorkload(issuer, 'race'))!.clientId;
      assert.equal(claims[[c, d].indexOf(winner)]!.status, 'fulfilled');
      for (const clientId of [c, d]) await store.clients.delete(clientId);
    });

    it('finds users by email, lower-cased, and links identities of other issuers to them (issue 17)', async () => {
      const domain = `${id()}.example`;
      const [s1, s2, s3] = [id(), id(), id()];
      await store.users.upsert({ sub: s1, username: s1, profile: { email: `Ann@${domain.toUpperCase()}` }, createdAt: now });
      await store.users.upsert({ sub: s2, username: s2, profile: { email: `bob@${domain}` }, createdAt: now, source: 'federated' });
      assert.deepEqual((await store.users.findByEmail(`ann@${domain}`)).map((u) => u.sub), [s1]);
      assert.deepEqual((await store.users.findByEmail(`ANN@${domain}`)).map((u) => u.sub), [s1]);
      assert.equal((await store.users.findBySub(s2))?.source, 'federated');
      assert.deepEqual(await store.users.findByEmail(''), []);
      // Two users with one email: both returned (the caller refuses to pick).
      await store.users.upsert({ sub: s3, username: s3, profile: { email: `bob@${domain}` }, createdAt: now });
      assert.deepEqual((await store.users.findByEmail(`bob@${domain}`)).map((u) => u.sub), [s2, s3].sort());
      // The email follows the profile.
      await store.users.upsert({ sub: s3, username: s3, profile: { email: `carol@${domain}` }, createdAt: now });
      assert.deepEqual((await store.users.findByEmail(`bob@${domain}`)).map((u) => u.sub), [s2]);
      await store.users.upsert({ sub: s3, username: s3, profile: {}, createdAt: now });
      assert.deepEqual(await store.users.findByEmail(`carol@${domain}`), []);

      const issuer = `https://idp.${domain}`;
      assert.equal(await store.federation.findLink(issuer, 'idp-sub-1'), undefined);
      const [first, second] = await Promise.all([
        store.federation.link({ issuer, subject: 'idp-sub-1', sub: s1, createdAt: now }),
        store.federation.link({ issuer, subject: 'idp-sub-1', sub: s2, createdAt: now }),
      ]);
      assert.deepEqual([first, second].sort(), [false, true]);
      const linked = await store.federation.findLink(issuer, 'idp-sub-1');
      assert.equal(linked?.sub, first ? s1 : s2);
      assert.equal(linked?.lastUsedAt, undefined);
      await store.federation.touch(issuer, 'idp-sub-1', now + 7);
      assert.equal((await store.federation.findLink(issuer, 'idp-sub-1'))?.lastUsedAt, now + 7);
      assert.equal(await store.federation.link({ issuer, subject: 'idp-sub-2', sub: s1, createdAt: now }), true);
      assert.equal(await store.federation.link({ issuer: `${issuer}/other`, subject: 'idp-sub-1', sub: s3, createdAt: now }), true);
      // Deleting a user removes its links; unlinkBySub counts what it removed.
      await store.users.delete(linked!.sub);
      assert.equal(await store.federation.findLink(issuer, 'idp-sub-1'), undefined);
      assert.equal(await store.federation.unlinkBySub(s3), 1);
      assert.equal(await store.federation.unlinkBySub(s3), 0);
      for (const sub of [s1, s2, s3]) await store.users.delete(sub);
      assert.equal(await store.federation.findLink(issuer, 'idp-sub-2'), undefined);
    });

    it('keeps the DPoP key a code and a refresh token are bound to, through rotation (issue 17)', async () => {
      const grantId = id();
      await store.grants.createGrant({ id: grantId, sub: 'u1', clientId: 'c1', resource: 'https://r.example', scope: 'a', createdAt: now, expiresAt: now + 100 });
      const jkt = 'NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs';
      const bound = id();
      const unbound = id();
      const code = { grantId, clientId: 'c1', redirectUri: 'https://x/cb', codeChallenge: 'c', scope: 'a', resource: 'https://r.example', expiresAt: now + 60 };
      await store.grants.createCode({ ...code, codeHash: bound, dpopJkt: jkt });
      await store.grants.createCode({ ...code, codeHash: unbound });
      assert.equal((await store.grants.findCode(bound))?.dpopJkt, jkt);
      assert.equal((await store.grants.consumeCode(bound, now))?.code.dpopJkt, jkt);
      assert.equal('dpopJkt' in (await store.grants.findCode(unbound))!, false);

      const token = { grantId, clientId: 'c1', scope: 'a', createdAt: now, expiresAt: now + 100 };
      const first = id();
      await store.grants.createRefreshToken({ ...token, tokenHash: first, dpopJkt: jkt });
      assert.equal((await store.grants.findRefreshToken(first))?.dpopJkt, jkt);
      // The replacement is written without a key: it inherits the predecessor's.
      const second = id();
      assert.equal(await store.grants.rotateRefreshToken(first, now, { grantId, reuseSince: now, issued: { refreshToken: { ...token, tokenHash: second } } }), 'rotated');
      assert.equal((await store.grants.findRefreshToken(second))?.dpopJkt, jkt);
      // An unbound token's replacement stays unbound.
      const plain = id();
      const next = id();
      await store.grants.createRefreshToken({ ...token, tokenHash: plain });
      assert.equal(await store.grants.rotateRefreshToken(plain, now, { grantId, reuseSince: now, issued: { refreshToken: { ...token, tokenHash: next } } }), 'rotated');
      assert.equal((await store.grants.findRefreshToken(next))?.dpopJkt, undefined);
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
