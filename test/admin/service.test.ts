import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { ADMIN_OPERATIONS as ops, AdminError, etagOf, invoke, isDestructive, runBootstrap, type Caller, type Operation } from '../../src/admin/index.ts';
import { auditEvents, startAdminServer } from './helpers.ts';

type Server = Awaited<ReturnType<typeof startAdminServer>>;

/** The service layer without HTTP: callers as a front end would build them from a verified token. */
describe('admin service layer', () => {
  let as: Server;
  const caller = (username: string, scopes: string[], extra: Partial<Caller> = {}): Caller => ({ sub: `sub-${username}`, username, scopes, frontEnd: 'api', requestId: `req-${username}`, ...extra });
  const writer = caller('alice', ['admin:write']);
  const reader = caller('reader', ['admin:read']);
  const agentsAdmin = caller('agents-admin', ['admin:agents:write']);

  before(async () => {
    as = await startAdminServer();
  });
  after(async () => {
    await as?.close();
  });

  const lastEvent = async (type: string) => (await auditEvents(as)).find((e) => e.type === type);

  it('refuses an operation without its scope, naming what is needed, and audits the reason', async () => {
    const refusals: [Caller, Operation][] = [
      [reader, ops.updateAgent],
      [agentsAdmin, ops.listUsers],
      [agentsAdmin, ops.rotateKeys],
      [caller('nobody', []), ops.listAgents],
    ];
    for (const [who, op] of refusals) {
      await assert.rejects(invoke(as.ctx, who, op, { id: 'sample-agent' }), (error: AdminError) => {
        assert.equal(error.code, 'insufficient_scope');
        assert.equal(error.status, 403);
        assert.ok(error.scopes.includes(op.access === 'read' ? 'admin:read' : 'admin:write'));
        return true;
      });
      const event = await lastEvent(`admin.${op.name}`);
      assert.equal(event?.outcome, 'failure');
      assert.equal(event?.error, 'insufficient_scope');
      assert.equal(event?.sub, who.sub);
      assert.match(event?.reason ?? '', new RegExp(`^${who.username} holds .*; ${op.name.replace('.', '\\.')} needs one of admin:`));
    }
  });

  it('lets a finer role do its area only, and a write scope read its area', async () => {
    const agents = await invoke(as.ctx, agentsAdmin, ops.listAgents, {});
    assert.deepEqual(agents.items.map((a) => a.client_id), ['sample-agent']);
    const read = await invoke(as.ctx, caller('agents-reader', ['admin:agents:read']), ops.readAgent, { id: 'sample-agent' });
    assert.equal(read.owner, 'demo');
    await assert.rejects(invoke(as.ctx, caller('agents-reader', ['admin:agents:read']), ops.updateAgent, { id: 'sample-agent', enabled: false }), { code: 'insufficient_scope' });
    assert.ok((await invoke(as.ctx, reader, ops.listUsers, {})).items.length >= 4);
  });

  it('refuses invalid input with the field and the problem, audited', async () => {
    const cases: [unknown, RegExp][] = [
      [{ id: 'sample-agent', enabled: 'no' }, /^invalid input: enabled: /],
      [{ id: 'sample-agent', expires_at: 'tomorrow' }, /^invalid input: expires_at: /],
      [{ id: 'sample-agent', colour: 'blue' }, /^invalid input: \(input\): .*colour/],
      [{}, /^invalid input: id: /],
    ];
    for (const [input, message] of cases) {
      await assert.rejects(invoke(as.ctx, writer, ops.updateAgent, input), (error: AdminError) => error.code === 'invalid_request' && error.status === 400 && message.test(error.message));
      const event = await lastEvent('admin.agents.update');
      assert.equal(event?.error, 'invalid_request');
      assert.match(event?.reason ?? '', message);
    }
    await assert.rejects(invoke(as.ctx, writer, ops.createUser, { username: 'eve', password: 'short', roles: ['root'] }), /invalid input: password: at least 12 characters/);
    await assert.rejects(invoke(as.ctx, writer, ops.createUser, { username: 'eve', roles: ['root'] }), /invalid input: roles\.0: an admin role/);
  });

  it('records one audit event per write naming the admin, the front end, the request and the act chain', async () => {
    const viaAgent = caller('alice', ['admin:write'], { frontEnd: 'mcp', sessionId: 'mcp-session-1', clientId: 'admin-mcp', act: [{ sub: 'helper-agent' }] });
    const before = (await auditEvents(as)).length;
    const disabled = await invoke(as.ctx, viaAgent, ops.updateAgent, { id: 'sample-agent', enabled: false });
    assert.equal(disabled.enabled, false);
    const events = (await auditEvents(as)).slice(0, (await auditEvents(as)).length - before);
    const admin = events.filter((e) => e.type === 'admin.agents.update');
    assert.equal(admin.length, 1);
    assert.equal(admin[0]!.outcome, 'success');
    assert.equal(admin[0]!.sub, viaAgent.sub);
    assert.equal(admin[0]!.clientId, 'sample-agent');
    assert.deepEqual(
      { admin: admin[0]!.data?.admin, front_end: admin[0]!.data?.front_end, act: admin[0]!.data?.act, session: admin[0]!.data?.session_id, via: admin[0]!.data?.via_client, change: admin[0]!.data?.change },
      { admin: 'alice', front_end: 'mcp', act: ['helper-agent'], session: 'mcp-session-1', via: 'admin-mcp', change: { enabled: false } },
    );
    // The domain event is still there, for whoever watches agent.disabled.
    assert.ok(events.some((e) => e.type === 'agent.disabled' && e.clientId === 'sample-agent'));
    assert.equal((await invoke(as.ctx, writer, ops.updateAgent, { id: 'sample-agent', enabled: true })).enabled, true);
  });

  it('keeps items of the configuration file read-only (409) and edits those of the store', async () => {
    await assert.rejects(invoke(as.ctx, writer, ops.updateUser, { username: 'demo', name: 'Renamed' }), { code: 'conflict', status: 409, message: 'this user comes from the configuration file; change it there' });
    await assert.rejects(invoke(as.ctx, writer, ops.deleteClient, { id: 'admin-test-console' }), { code: 'conflict' });
    await assert.rejects(invoke(as.ctx, writer, ops.deleteResource, { id: as.resource }), { code: 'conflict' });
    const created = await invoke(as.ctx, writer, ops.createUser, { username: 'bob', password: 'a long enough password', roles: ['admin:audit:read'] });
    assert.deepEqual([created.source, created.roles, created.has_password], ['admin', ['admin:audit:read'], true]);
    const changed = await invoke(as.ctx, writer, ops.updateUser, { username: 'bob', roles: ['admin:keys:write'], email: 'bob@example.com' });
    assert.deepEqual([changed.roles, changed.email], [['admin:keys:write'], 'bob@example.com']);
    await assert.rejects(invoke(as.ctx, writer, ops.createUser, { username: 'bob' }), { code: 'conflict' });
    assert.deepEqual(await invoke(as.ctx, writer, ops.deleteUser, { username: 'bob' }), { deleted: true });
    await assert.rejects(invoke(as.ctx, writer, ops.readUser, { username: 'bob' }), { code: 'not_found', status: 404 });
  });

  it('lets the users area manage no role beyond its own: no escalation through users', async () => {
    const usersAdmin = caller('users-admin', ['admin:users:write']);
    assert.deepEqual((await invoke(as.ctx, usersAdmin, ops.createUser, { username: 'plain', roles: ['admin:users:read'] })).roles, ['admin:users:read']);
    for (const roles of [['admin:write'], ['admin:read'], ['admin:keys:read']]) {
      await assert.rejects(invoke(as.ctx, usersAdmin, ops.createUser, { username: 'climber', roles }), (error: AdminError) => error.code === 'insufficient_scope' && error.message === `giving these roles needs your own token to hold ${roles[0]}`);
    }
    const event = await lastEvent('admin.users.create');
    assert.equal(event?.reason, 'users-admin holds admin:users:write; giving these roles involves admin:keys:read');
    await invoke(as.ctx, writer, ops.createUser, { username: 'boss', password: 'a long enough password', roles: ['admin:write'] });
    // Neither the boss's password, nor their roles, nor their account.
    await assert.rejects(invoke(as.ctx, usersAdmin, ops.updateUser, { username: 'boss', password: 'taken over, surely' }), { code: 'insufficient_scope' });
    await assert.rejects(invoke(as.ctx, usersAdmin, ops.updateUser, { username: 'boss', roles: [] }), { code: 'insufficient_scope' });
    await assert.rejects(invoke(as.ctx, usersAdmin, ops.deleteUser, { username: 'boss' }), { code: 'insufficient_scope' });
    await assert.rejects(invoke(as.ctx, usersAdmin, ops.updateUser, { username: 'plain', roles: ['admin:users:write', 'admin:agents:read'] }), { code: 'insufficient_scope' });
    assert.deepEqual((await invoke(as.ctx, usersAdmin, ops.updateUser, { username: 'plain', roles: ['admin:users:write'] })).roles, ['admin:users:write']);
    assert.deepEqual(await invoke(as.ctx, usersAdmin, ops.deleteUser, { username: 'plain' }), { deleted: true });
    assert.deepEqual(await invoke(as.ctx, writer, ops.deleteUser, { username: 'boss' }), { deleted: true });
  });

  it('lets a lesser admin sign out, or revoke the grants and consents of, no admin more powerful than itself', async () => {
    await invoke(as.ctx, writer, ops.createUser, { username: 'chief', password: 'a long enough password', roles: ['admin:write'] });
    const attempts: [Caller, Operation, Record<string, unknown>, string][] = [
      [caller('session-admin', ['admin:sessions:write']), ops.signOut, { username: 'chief' }, 'signing this user out'],
      [caller('grants-admin', ['admin:grants:write']), ops.revokeGrant, { username: 'chief', grant_id: 'g-1' }, "revoking this user's grants"],
      [caller('grants-admin', ['admin:grants:write']), ops.revokeConsent, { username: 'chief', client_id: 'c', resource: 'https://r.test' }, "revoking this user's consents"],
    ];
    for (const [who, op, input, action] of attempts) {
      await assert.rejects(invoke(as.ctx, who, op, input), (error: AdminError) => error.code === 'insufficient_scope' && error.message === `${action} needs your own token to hold admin:write`);
      const event = await lastEvent(`admin.${op.name}`);
      assert.equal(event?.outcome, 'failure');
      assert.equal(event?.reason, `${who.username} holds ${who.scopes.join(' ')}; ${action} involves admin:write`);
    }
    // The same admins act on an ordinary user (here: nothing to revoke, so not found).
    await assert.rejects(invoke(as.ctx, caller('grants-admin', ['admin:grants:write']), ops.revokeGrant, { username: 'demo', grant_id: 'g-1' }), { code: 'not_found' });
    assert.deepEqual(await invoke(as.ctx, writer, ops.deleteUser, { username: 'chief' }), { deleted: true });
  });

  it('a new password signs the user out everywhere: their grants are revoked (a profile change leaves them)', async () => {
    const user = await invoke(as.ctx, writer, ops.createUser, { username: 'resetme', password: 'a long enough password' });
    const now = as.ctx.now();
    const grant = { sub: String(user.sub), clientId: 'sample-agent', resource: 'http://localhost:3000', scope: 'banking:read', createdAt: now, expiresAt: now + 600 };
    await as.store.grants.createGrant({ id: 'g-reset-1', ...grant });
    await invoke(as.ctx, writer, ops.updateUser, { username: 'resetme', name: 'Reset Me' });
    assert.equal((await as.store.grants.findGrant('g-reset-1'))?.revokedAt, undefined, 'a profile change signs no one out');
    await invoke(as.ctx, writer, ops.updateUser, { username: 'resetme', password: 'another long password' });
    assert.ok((await as.store.grants.findGrant('g-reset-1'))?.revokedAt, 'the grant made under the old password is revoked');
    assert.deepEqual(await invoke(as.ctx, writer, ops.deleteUser, { username: 'resetme' }), { deleted: true });
  });

  it('a search inside events (agent, actor, tool) without since looks back 30 days, not through the whole log', async () => {
    const now = as.ctx.now();
    await as.store.audit.append([
      { at: now - 40 * 86_400, type: 'token.issued', outcome: 'success', data: { actor_chain: ['old-searched-agent'] } },
      { at: now - 60, type: 'token.issued', outcome: 'success', data: { actor_chain: ['old-searched-agent'] } },
    ]);
    const recent = await invoke(as.ctx, writer, ops.queryAudit, { agent: 'old-searched-agent' });
    assert.equal(recent.items.length, 1, 'the 40-day-old event is outside the default window');
    const all = await invoke(as.ctx, writer, ops.queryAudit, { agent: 'old-searched-agent', since: new Date((now - 50 * 86_400) * 1000).toISOString() });
    assert.equal(all.items.length, 2, 'an explicit since reaches further back');
  });

  it('creates an agent with a secret shown once, and deletes it with its tokens', async () => {
    const created = await invoke(as.ctx, agentsAdmin, ops.createAgent, { client_id: 'made-agent', owner: 'demo', scope: 'mcp:read' });
    assert.equal(created.kind, 'agent');
    assert.equal(typeof created.client_secret, 'string');
    const stored = await as.store.clients.find('made-agent');
    assert.notEqual(stored?.secretHash, created.client_secret);
    assert.equal((await invoke(as.ctx, agentsAdmin, ops.readAgent, { id: 'made-agent' })).source, 'admin');
    assert.deepEqual(await invoke(as.ctx, agentsAdmin, ops.deleteAgent, { id: 'made-agent' }), { deleted: true });
    assert.equal(await as.store.clients.find('made-agent'), undefined);
  });

  it('refuses a change when If-Match names an older version (412), and applies it with the current one', async () => {
    const current = await invoke(as.ctx, writer, ops.readAgent, { id: 'sample-agent' });
    const tag = etagOf(current);
    await invoke(as.ctx, writer, ops.updateAgent, { id: 'sample-agent', expires_at: '2099-01-01T00:00:00Z' }, { ifMatch: tag });
    await assert.rejects(invoke(as.ctx, writer, ops.updateAgent, { id: 'sample-agent', expires_at: null }, { ifMatch: tag }), { code: 'precondition_failed', status: 412 });
    const fresh = etagOf(await invoke(as.ctx, writer, ops.readAgent, { id: 'sample-agent' }));
    assert.equal((await invoke(as.ctx, writer, ops.updateAgent, { id: 'sample-agent', expires_at: null }, { ifMatch: fresh })).expires_at, null);
  });

  it('pages lists with a cursor, and refuses a cursor it did not give', async () => {
    for (const n of [1, 2, 3, 4, 5]) await invoke(as.ctx, writer, ops.createUser, { username: `page-user-${n}` });
    const seen: string[] = [];
    let cursor: string | undefined;
    do {
      const page = await invoke(as.ctx, reader, ops.listUsers, { limit: 2, ...(cursor ? { cursor } : {}) });
      assert.ok(page.items.length <= 2);
      seen.push(...page.items.map((u) => u.username));
      cursor = page.next_cursor ?? undefined;
    } while (cursor);
    assert.deepEqual(seen, [...seen].sort());
    assert.equal(new Set(seen).size, seen.length);
    assert.ok(['page-user-1', 'page-user-5', 'alice', 'demo'].every((u) => seen.includes(u)));
    await assert.rejects(invoke(as.ctx, reader, ops.listUsers, { cursor: '!!' }), { code: 'invalid_request' });
  });

  it("lists a user's grants and consents and revokes them", async () => {
    const sub = (await as.store.users.findByUsername('demo'))!.sub;
    await as.store.grants.createGrant({ id: 'svc-grant', sub, clientId: 'admin-test-console', resource: as.resource, scope: 'mcp:read', createdAt: as.ctx.now(), expiresAt: as.ctx.now() + 600 });
    await as.store.consents.upsert({ sub, clientId: 'admin-test-console', resource: as.resource, scope: 'mcp:read', createdAt: as.ctx.now() });
    const grants = await invoke(as.ctx, reader, ops.listGrants, { username: 'demo', active: 'true' });
    assert.deepEqual(grants.items.map((g) => g.id), ['svc-grant']);
    assert.equal((await invoke(as.ctx, writer, ops.revokeGrant, { username: 'demo', grant_id: 'svc-grant' })).active, false);
    await assert.rejects(invoke(as.ctx, writer, ops.revokeGrant, { username: 'alice', grant_id: 'svc-grant' }), { code: 'not_found' });
    assert.equal((await invoke(as.ctx, reader, ops.listConsents, { username: 'demo' })).items.length, 1);
    assert.deepEqual(await invoke(as.ctx, writer, ops.revokeConsent, { username: 'demo', client_id: 'admin-test-console', resource: as.resource }), { revoked_grants: 0 });
    assert.equal((await invoke(as.ctx, reader, ops.listConsents, { username: 'demo' })).items.length, 0);
  });

  it('queries the audit log by actor and type, lists and rotates keys, reports usage', async () => {
    const found = await invoke(as.ctx, reader, ops.queryAudit, { actor: 'alice', type: 'admin.users.*', decision: 'success' });
    assert.ok(found.items.length > 0);
    assert.ok(found.items.every((e) => e.type.startsWith('admin.users.') && e.data?.admin === 'alice' && e.outcome === 'success'));
    const keysBefore = await invoke(as.ctx, reader, ops.listKeys, {});
    assert.deepEqual(keysBefore.items.map((k) => k.state), ['active']);
    const rotated = await invoke(as.ctx, writer, ops.rotateKeys, {});
    const keysAfter = await invoke(as.ctx, reader, ops.listKeys, {});
    assert.deepEqual(keysAfter.items.map((k) => [k.kid === rotated.kid, k.state]), [[false, 'active'], [true, 'next']]);
    const report = await invoke(as.ctx, reader, ops.usageReport, {});
    assert.equal(report.days.length, 7);
    assert.ok(report.totals.refusals >= 0);
    await assert.rejects(invoke(as.ctx, reader, ops.usageReport, { from: '2026-01-01', to: '2026-12-31' }), { code: 'invalid_request', message: 'at most 92 days per report' });
  });

  it('describes every operation for the front ends: unique names, an area, a summary, object schemas, and which are destructive', () => {
    const all = Object.values(ops) as Operation[];
    assert.equal(new Set(all.map((op) => op.name)).size, all.length);
    for (const op of all) {
      // Names start with their area, but for consents (grants area), transactions (audit area) and remembered browsers (sessions area).
      const prefix = op.area === 'grants' ? '(grants|consents)' : op.area === 'audit' ? '(audit|transactions)' : op.area === 'sessions' ? '(sessions|remembered)' : op.area;
      assert.match(op.name, new RegExp(`^${prefix}\\.[a-z_]+$`), op.name);
      assert.ok(op.summary.length > 10, op.name);
      assert.equal((z.toJSONSchema(op.input, { io: 'input' }) as { type?: string }).type, 'object', op.name);
    }
    assert.deepEqual(
      all.filter((op) => op.access === 'read' && isDestructive(op)),
      [],
    );
    assert.deepEqual(
      ['agents.update', 'agents.delete', 'grants.revoke', 'sessions.revoke', 'keys.rotate', 'users.create', 'agents.list'].map((name) => isDestructive(all.find((op) => op.name === name)!)),
      [true, true, true, true, false, false, false],
    );
  });

  it('bootstraps the first admin only while there is none', async () => {
    const fresh = await startAdminServer({ users: [{ username: 'demo', password_hash: 'scrypt$x' }] });
    try {
      // Two at once: one admin, never two.
      const racing = await Promise.allSettled([
        runBootstrap(fresh.ctx, { username: 'root', password: 'a long enough password' }),
        runBootstrap(fresh.ctx, { username: 'rival', password: 'a long enough password' }),
      ]);
      assert.deepEqual(racing.map((r) => r.status), ['fulfilled', 'rejected']);
      const first = (racing[0] as PromiseFulfilledResult<Awaited<ReturnType<typeof runBootstrap>>>).value;
      assert.deepEqual([first.username, first.roles], ['root', ['admin:write']]);
      assert.equal(((racing[1] as PromiseRejectedResult).reason as AdminError).code, 'conflict');
      await assert.rejects(runBootstrap(fresh.ctx, { username: 'root2', password: 'a long enough password' }), { code: 'conflict', status: 409 });
      const events = (await auditEvents(fresh)).filter((e) => e.type === 'admin.bootstrap');
      // Newest first: the late one, the winner, the one that lost the race.
      assert.deepEqual(events.map((e) => [e.outcome, e.data?.front_end]), [['failure', 'bootstrap'], ['success', 'bootstrap'], ['failure', 'bootstrap']]);
      assert.match(events[0]!.reason ?? '', /^admins exist: root$/);
      assert.equal(events[2]!.reason, 'another bootstrap is in progress; retry in a few seconds');
      assert.equal((await fresh.store.users.list()).filter((u) => u.roles?.length).length, 1);
    } finally {
      await fresh.close();
    }
    // The main server has admins from its configuration: refused at once.
    await assert.rejects(runBootstrap(as.ctx, { username: 'root', password: 'a long enough password' }), { code: 'conflict' });
  });
});
