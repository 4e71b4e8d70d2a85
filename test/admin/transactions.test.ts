import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ADMIN_OPERATIONS as ops, AdminError, invoke, type Caller, type Operation } from '../../src/admin/index.ts';
import { DEMO_PASSWORD_HASH, type TestAuthServer } from '../helpers/auth-server.ts';
import { agentToken, auditEvents, BANK, create, decide, startTransactionServer } from '../transactions/helpers.ts';
import { ADMIN_CLIENT, api, REDIRECT_URI, signIn } from './helpers.ts';

type Json = Record<string, unknown>;

/**
 * High-risk approvals in the admin plane (issue 14, part 4): `transactions.list` and
 * `transactions.read` in the service layer and at GET /admin/api/v1/transactions[/{id}], over
 * transactions made through the real AS transactions API and decided on the real approval page.
 */
describe('admin: high-risk approvals (transactions)', () => {
  let as: TestAuthServer;
  const ids: Record<'pending' | 'approved' | 'denied' | 'bob' | 'expiring', string> = { pending: '', approved: '', denied: '', bob: '', expiring: '' };
  const tokens: Record<string, string> = {};
  let demoSub = '';
  const caller = (username: string, scopes: string[]): Caller => ({ sub: `sub-${username}`, username, scopes, frontEnd: 'api', requestId: `req-${username}` });
  const auditor = caller('auditor', ['admin:audit:read']);
  const lastEvent = async (type: string) => (await auditEvents(as)).find((e) => e.type === type);

  before(async () => {
    const admin = (username: string, roles: string[]) => ({ username, password_hash: DEMO_PASSWORD_HASH, roles });
    as = await startTransactionServer({
      users: [
        { username: 'demo', name: 'Demo User', password_hash: DEMO_PASSWORD_HASH },
        { username: 'bob', name: 'Bob', password_hash: DEMO_PASSWORD_HASH },
        admin('auditor', ['admin:audit:read']),
        admin('agents-reader', ['admin:agents:read']),
      ],
      clients: [
        { client_id: 'gateway', client_name: 'Gateway', client_secret_env: 'TEST_TX_GATEWAY', grant_types: ['client_credentials'], transactions: 'allowed' },
        { client_id: ADMIN_CLIENT, client_name: 'Admin test console', token_endpoint_auth_method: 'none', redirect_uris: [REDIRECT_URI] },
      ],
    });
    demoSub = (await as.store.users.findByUsername('demo'))!.sub;
    const demo = await agentToken(as);
    const made = async (details: Json, token = demo.accessToken, extra: Json = {}) => {
      const res = await create(as, token, { details, ...extra });
      assert.equal(res.status, 201, res.text);
      return res.json.id as string;
    };
    ids.approved = await made({ amount: '250.00', to: 'Bob' });
    ids.denied = await made({ amount: '900.00', to: 'Eve' });
    ids.expiring = await made({ amount: '120.00', to: 'Carol' }, demo.accessToken, { lifetime_seconds: 1 });
    ids.pending = await made({ amount: '300.00', to: 'Dan' });
    ids.bob = await made({ amount: '50.00', to: 'Alice' }, (await agentToken(as, { username: 'bob' })).accessToken, { tool: 'pay_invoice' });
    await decide(demo.browser, ids.approved, 'approve');
    await decide(demo.browser, ids.denied, 'deny');
    for (const [user, scope] of [
      ['auditor', 'admin:audit:read'],
      ['agents-reader', 'admin:agents:read'],
    ] as const) {
      const result = await signIn(as, user, { scope });
      assert.ok('accessToken' in result, `${user} signs in`);
      tokens[user] = result.accessToken!;
    }
    // The one-second approval lapses: it reads as expired from the next second on.
    while (as.ctx.now() < (await as.store.transactions.find(ids.expiring))!.expiresAt) await new Promise((r) => setTimeout(r, 100));
  });
  after(async () => {
    await as?.close();
  });

  describe('service layer', () => {
    it('lets a read-only admin of the audit area list approvals, with who, what, the chain and the outcome; audited', async () => {
      const result = await invoke(as.ctx, auditor, ops.listTransactions, {});
      const byId = new Map(result.items.map((t) => [t.id, t]));
      assert.deepEqual(
        [ids.pending, ids.bob, ids.expiring, ids.denied, ids.approved].map((id) => byId.get(id)?.status),
        ['pending', 'pending', 'expired', 'denied', 'approved'],
      );
      const approved = byId.get(ids.approved)!;
      assert.deepEqual(approved.user, { username: 'demo', sub: demoSub });
      assert.equal(approved.client_id, 'sample-agent');
      assert.deepEqual(approved.act, ['sample-agent']);
      assert.equal(approved.resource, BANK);
      assert.equal(approved.tool, 'transfer');
      assert.equal(approved.summary, 'Transfer 250.00 EUR to Bob');
      assert.deepEqual(approved.details, { amount: '250.00', to: 'Bob' });
      assert.equal(approved.requested_by, 'gateway');
      assert.equal(approved.decided_how, 'password');
      assert.ok(approved.decided_at !== null && approved.used_at === null);
      assert.equal(byId.get(ids.denied)!.decided_how, null);
      const times = result.items.map((t) => t.created_at);
      assert.deepEqual(times, [...times].sort((a, b) => b - a), 'newest first');
      const event = await lastEvent('admin.transactions.list');
      assert.equal(event?.outcome, 'success');
      assert.equal(event?.sub, auditor.sub);
      assert.deepEqual([event?.data?.admin, event?.data?.front_end, event?.data?.request_id], ['auditor', 'api', 'req-auditor']);
    });

    it('refuses an admin without the audit area: insufficient_scope, the reason audited', async () => {
      for (const op of [ops.listTransactions, ops.readTransaction] as Operation[]) {
        const who = caller('agents-reader', ['admin:agents:read']);
        await assert.rejects(invoke(as.ctx, who, op, { id: ids.pending }), (error: AdminError) => {
          assert.equal(error.code, 'insufficient_scope');
          assert.equal(error.status, 403);
          assert.deepEqual(error.scopes, ['admin:read', 'admin:write', 'admin:audit:read', 'admin:audit:write']);
          return true;
        });
        const event = await lastEvent(`admin.${op.name}`);
        assert.equal(event?.outcome, 'failure');
        assert.equal(event?.error, 'insufficient_scope');
        assert.equal(event?.reason, `agents-reader holds admin:agents:read; ${op.name} needs one of admin:read admin:write admin:audit:read admin:audit:write`);
      }
    });

    it('filters by user, status, tool and time', async () => {
      const list = async (input: Json) => (await invoke(as.ctx, auditor, ops.listTransactions, input)).items.map((t) => t.id);
      // Made within a second or two: equal creation times order by id, so compare as sets.
      assert.deepEqual((await list({ user: 'demo' })).sort(), [ids.pending, ids.expiring, ids.denied, ids.approved].sort());
      assert.deepEqual(await list({ user: 'bob' }), [ids.bob]);
      assert.deepEqual(await list({ user: 'demo', status: 'pending' }), [ids.pending]);
      assert.deepEqual(await list({ status: 'approved' }), [ids.approved]);
      assert.deepEqual(await list({ status: 'denied' }), [ids.denied]);
      assert.deepEqual(await list({ status: 'expired' }), [ids.expiring]);
      assert.deepEqual(await list({ status: 'used' }), []);
      assert.deepEqual(await list({ tool: 'pay_invoice' }), [ids.bob]);
      assert.deepEqual(await list({ since: new Date((as.ctx.now() + 60) * 1000).toISOString() }), [], 'nothing created in the future');
      assert.equal((await list({ until: '2000-01-01T00:00:00Z' })).length, 0);
      await assert.rejects(invoke(as.ctx, auditor, ops.listTransactions, { user: 'nobody' }), { code: 'not_found' });
      await assert.rejects(invoke(as.ctx, auditor, ops.listTransactions, { status: 'lost' }), (e: AdminError) => e.code === 'invalid_request' && /^invalid input: status: /.test(e.message));
      await assert.rejects(invoke(as.ctx, auditor, ops.listTransactions, { cursor: 'bm9uc2Vuc2U' }), { code: 'invalid_request', message: 'the cursor is not one this server gave' });
    });

    it('reads one approval by id, audited with its id; an unknown id is not_found', async () => {
      const one = await invoke(as.ctx, auditor, ops.readTransaction, { id: ids.denied });
      assert.deepEqual([one.status, one.user.username, one.summary], ['denied', 'demo', 'Transfer 250.00 EUR to Bob']);
      assert.equal((await lastEvent('admin.transactions.read'))?.data?.transaction_id, ids.denied);
      await assert.rejects(invoke(as.ctx, auditor, ops.readTransaction, { id: 'no-such-id' }), { code: 'not_found', message: 'no such transaction' });
      const refused = await lastEvent('admin.transactions.read');
      assert.deepEqual([refused?.outcome, refused?.error, refused?.data?.transaction_id], ['failure', 'not_found', 'no-such-id']);
    });
  });

  describe('admin API', () => {
    it('GET /transactions: 401 without a token, 403 insufficient_scope naming the audit scopes without the area', async () => {
      const none = await api(as, undefined, 'GET', '/transactions');
      assert.equal(none.status, 401);
      assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer resource_metadata="/);
      const wrong = await api(as, 'not-a-token', 'GET', `/transactions/${ids.pending}`);
      assert.equal(wrong.status, 401);
      assert.equal(wrong.json.error, 'invalid_token');
      for (const path of ['/transactions', `/transactions/${ids.pending}`]) {
        const res = await api(as, tokens['agents-reader'], 'GET', path);
        assert.equal(res.status, 403);
        assert.equal(res.json.error, 'insufficient_scope');
        assert.match(res.headers.get('www-authenticate') ?? '', /error="insufficient_scope", scope="admin:read admin:write admin:audit:read admin:audit:write"/);
      }
      const refused = (await auditEvents(as)).find((e) => e.type === 'admin.transactions.read' && e.outcome === 'failure' && e.data?.front_end === 'api');
      assert.equal(refused?.data?.admin, 'agents-reader');
      assert.equal(refused?.error, 'insufficient_scope');
    });

    it('lists with filters and pages through with next_cursor', async () => {
      const pending = await api(as, tokens.auditor, 'GET', '/transactions?user=demo&status=pending');
      assert.equal(pending.status, 200);
      assert.equal(pending.headers.get('cache-control'), 'no-store');
      assert.deepEqual(pending.json.items?.map((t) => [t.id, t.status]), [[ids.pending, 'pending']]);
      assert.equal(pending.json.next_cursor, null);
      ops.listTransactions.output.parse(pending.json);

      const seen: string[] = [];
      let cursor: string | null | undefined;
      for (let i = 0; i < 10; i++) {
        const res = await api(as, tokens.auditor, 'GET', `/transactions?user=demo&limit=1${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`);
        assert.equal(res.status, 200);
        assert.equal(res.json.items?.length, 1);
        seen.push(res.json.items![0]!.id as string);
        cursor = res.json.next_cursor;
        if (!cursor) break;
      }
      const whole = await api(as, tokens.auditor, 'GET', '/transactions?user=demo');
      assert.deepEqual(seen, whole.json.items?.map((t) => t.id), 'the pages read as the whole list');
      assert.equal(seen.length, 4);
      const bad = await api(as, tokens.auditor, 'GET', '/transactions?status=lost');
      assert.equal(bad.status, 400);
      assert.equal(bad.json.error, 'invalid_request');
      const unknown = await api(as, tokens.auditor, 'GET', '/transactions?user=nobody');
      assert.deepEqual([unknown.status, unknown.json.error], [404, 'not_found']);
    });

    it('reads one with its ETag; an unknown id is 404', async () => {
      const res = await api(as, tokens.auditor, 'GET', `/transactions/${ids.approved}`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('etag') ?? '', /^"[A-Za-z0-9_-]{27}"$/);
      const view = ops.readTransaction.output.parse(res.json);
      assert.deepEqual([view.id, view.status, view.decided_how, view.user.username, view.act], [ids.approved, 'approved', 'password', 'demo', ['sample-agent']]);
      const missing = await api(as, tokens.auditor, 'GET', '/transactions/no-such-id');
      assert.deepEqual([missing.status, missing.json.error], [404, 'not_found']);
      const event = (await auditEvents(as)).find((e) => e.type === 'admin.transactions.read' && e.outcome === 'success' && e.data?.front_end === 'api');
      assert.deepEqual([event?.data?.admin, event?.data?.transaction_id, event?.data?.via_client], ['auditor', ids.approved, ADMIN_CLIENT]);
    });

    it('documents both routes in the OpenAPI document, with their scopes', async () => {
      const doc = (await (await fetch(`${as.issuer}/admin/api/v1/openapi.json`)).json()) as { paths: Record<string, Record<string, Json>> };
      const list = doc.paths['/transactions']?.get;
      const read = doc.paths['/transactions/{id}']?.get;
      assert.equal(list?.operationId, 'transactions.list');
      assert.equal(read?.operationId, 'transactions.read');
      assert.deepEqual(list?.['x-mandate-scopes'], ['admin:read', 'admin:write', 'admin:audit:read', 'admin:audit:write']);
      const params = (list?.parameters as { name: string }[]).map((p) => p.name);
      assert.deepEqual(params, ['user', 'status', 'tool', 'since', 'until', 'limit', 'cursor']);
    });
  });
});
