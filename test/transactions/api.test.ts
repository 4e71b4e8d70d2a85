import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { basic, pkcePair, postForm, type TestAuthServer } from '../helpers/auth-server.ts';
import { AGENT, BANK, REDIRECT, SECRETS, agentToken, auditEvents, auth, call, create, decide, hashOf, randomHash, signIn, startTransactionServer, use } from './helpers.ts';

/**
 * Transactions at the authorization server (issue 14, docs/high-risk-actions.md), black-box over
 * HTTP: a gateway asks for the approval of one call, the user approves or denies it on the page,
 * the gateway spends it once. Each refusal is checked by status, error code and audit reason.
 */
describe('transactions: the authorization server', () => {
  let as: TestAuthServer;
  /** demo's token at the bank, held by sample-agent (act: [sample-agent]); its browser is signed in as demo. */
  let demo: { accessToken: string; browser: FormBrowser };
  let bob: { accessToken: string; browser: FormBrowser };

  /** The newest audit event of a type about this transaction (or matching `where`). */
  const audited = async (type: string, where: (e: Awaited<ReturnType<typeof auditEvents>>[number]) => boolean) => {
    const events = await auditEvents(as);
    const found = events.find((e) => e.type === type && where(e));
    assert.ok(found, `an audit event ${type}; got ${JSON.stringify(events.slice(0, 5).map((e) => [e.type, e.error, e.reason]))}`);
    return found;
  };
  const aboutTx = (id: string) => (e: { data?: Record<string, unknown> }) => e.data?.transaction_id === id;
  const now = () => Math.floor(Date.now() / 1000);

  before(async () => {
    as = await startTransactionServer();
    demo = await agentToken(as);
    bob = await agentToken(as, { username: 'bob' });
  });
  after(async () => {
    await as?.close();
  });

  it('creates a pending transaction from the caller token: 201 with the approval URL, audited', async () => {
    const res = await create(as, demo.accessToken);
    assert.equal(res.status, 201, res.text);
    const { id } = res.json as { id: string };
    assert.match(id, /^[A-Za-z0-9_-]{22}$/, '128 random bits, base64url');
    assert.deepEqual(res.json, { id, status: 'pending', approval_uri: `${as.issuer}/approve/${id}`, expires_at: res.json.expires_at, expires_in: 300 });
    assert.ok(Math.abs((res.json.expires_at as number) - (now() + 300)) <= 2);
    assert.equal(res.headers.get('location'), `${as.issuer}/transactions/${id}`);
    assert.equal(res.headers.get('cache-control'), 'no-store');
    const event = await audited('transaction.created', aboutTx(id));
    assert.equal(event.clientId, 'sample-agent');
    assert.deepEqual(event.data, {
      transaction_id: id,
      requested_by: 'gateway',
      resource: BANK,
      tool: 'transfer',
      arguments_hash: hashOf({ amount: 250, to: 'Bob' }),
      act: ['sample-agent'],
      expires_at: res.json.expires_at,
    });
    const user = await as.store.users.findByUsername('demo');
    assert.equal(event.sub, user?.sub, 'the subject comes from the token');
  });

  it('refuses a client not configured with transactions: allowed (403 unauthorized_client), a public one and a wrong secret', async () => {
    const plain = await create(as, demo.accessToken, {}, auth.plain);
    assert.equal(plain.status, 403);
    assert.equal(plain.json.error, 'unauthorized_client');
    const event = await audited('transaction.refused', (e) => e.clientId === 'plain-service');
    assert.equal(event.error, 'unauthorized_client');
    assert.match(event.reason!, /client plain-service is not configured with transactions: allowed/);

    const pub = await call(as, 'POST', '/transactions', { body: { client_id: 'public-app', subject_token: demo.accessToken, tool: 't', arguments_hash: randomHash(), summary: 's' } });
    assert.equal(pub.status, 401);
    assert.equal(pub.json.error, 'invalid_client');
    assert.match((await audited('transaction.refused', (e) => e.clientId === 'public-app')).reason!, /public client/);

    const wrong = await create(as, demo.accessToken, {}, basic('gateway', 'not-the-secret'));
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.error, 'invalid_client');
    assert.equal((await audited('client.auth_failed', (e) => e.clientId === 'gateway')).reason, 'wrong client secret');

    // client_secret_post in the JSON body is the same authentication as in a form at /token: the
    // gateway registered client_secret_basic, so another method is refused.
    const post = await call(as, 'POST', '/transactions', { body: { client_id: 'gateway', client_secret: SECRETS.gateway, subject_token: demo.accessToken, tool: 't', arguments_hash: randomHash(), summary: 's' } });
    assert.equal(post.status, 401);
    assert.match((await audited('client.auth_failed', (e) => e.clientId === 'gateway')).reason!, /used client_secret_post, registered client_secret_basic/);
  });

  it('refuses a subject token that is not an active token of a user (400 invalid_request)', async () => {
    const garbage = await create(as, demo.accessToken.slice(0, -4) + 'AAAA');
    assert.equal(garbage.status, 400);
    assert.equal(garbage.json.error, 'invalid_request');
    assert.match((await audited('transaction.refused', (e) => e.clientId === 'gateway' && e.error === 'invalid_request')).reason!, /subject_token is not an active access token/);

    // A client's own token (client credentials) stands for no user: nobody could approve.
    const own = await postForm(`${as.issuer}/token`, { grant_type: 'client_credentials', resource: BANK }, { authorization: auth.gateway });
    assert.equal(own.status, 200, own.text);
    const service = await create(as, own.json.access_token as string);
    assert.equal(service.status, 400);
    assert.equal(service.json.error, 'invalid_request');
    assert.match((await audited('transaction.refused', (e) => e.clientId === 'gateway')).reason!, /sub=gateway is no user/);
  });

  it('refuses malformed requests with a standard JSON error, never a stack trace', async () => {
    const cases: [Record<string, unknown> | string, RegExp][] = [
      [{ arguments_hash: 'short' }, /arguments_hash/],
      [{ summary: 'x'.repeat(201) }, /summary is longer than 200/],
      [{ summary: 'Transfer \u202e 052 EUR' }, /summary contains control, format or bidirectional characters/],
      [{ summary: 'Transfer 250 EUR to \u200bBob\u2060' }, /summary contains control, format or bidirectional characters/],
      [{ tool: '' }, /tool is required/],
      [{ lifetime_seconds: 901 }, /lifetime_seconds/],
      [{ lifetime_seconds: 0 }, /lifetime_seconds/],
      [{ details: ['a'] }, /details must be a JSON object/],
      [{ details: { big: 'x'.repeat(5000) } }, /details is larger/],
      ['{"subject_token": ', /the body must be a JSON object/],
      [`${'['.repeat(100)}${']'.repeat(100)}`, /the body must be a JSON object/],
    ];
    for (const [overrides, description] of cases) {
      const res =
        typeof overrides === 'string'
          ? await call(as, 'POST', '/transactions', { authorization: auth.gateway, body: overrides })
          : await create(as, demo.accessToken, overrides);
      assert.equal(res.status, 400, `${JSON.stringify(overrides).slice(0, 60)}: ${res.text}`);
      assert.equal(res.json.error, 'invalid_request');
      assert.match(res.json.error_description as string, description);
      assert.doesNotMatch(res.text, /at .*\.ts:\d+/, 'no stack trace');
    }
  });

  it('refuses details whose values or names, at any depth, hold control, format or bidi characters: 400 invalid_request, audited with where', async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ amount: 250, to: 'NL91\u202eBAN0\u202c417164300' }, 'details.to contains U+202E'],
      [{ memo: '\u200bBob' }, 'details.memo contains U+200B'],
      [{ to: 'Bob\u2060' }, 'details.to contains U+2060'],
      [{ memo: 'line\nbreak' }, 'details.memo contains U+000A'],
      [{ memo: 'line\u2028break' }, 'details.memo contains U+2028'],
      [{ memo: 'half \ud800' }, 'details.memo contains U+D800'],
      [{ party: { name: ['Bob', 'Al\u2066ice'] } }, 'details.party.name[1] contains U+2066'],
      [{ party: { 'na\u200dme': 'Bob' } }, 'details.party field name "na\u200dme" contains U+200D'],
    ];
    for (const [details, reason] of cases) {
      const res = await create(as, demo.accessToken, { details });
      assert.equal(res.status, 400, `${JSON.stringify(details)}: ${res.text}`);
      assert.deepEqual(res.json, { error: 'invalid_request', error_description: 'details contains control, format or bidirectional characters' });
      const event = await audited('transaction.refused', (e) => e.clientId === 'gateway' && e.error === 'invalid_request' && (e.reason ?? '').endsWith(reason));
      assert.equal(event.reason, `POST /transactions: ${reason}`);
    }
    const shown = await create(as, demo.accessToken, { details: { to: 'Bob \\u{200B}', amount: 250, note: 'caf\u00e9 \u{1F600}' } });
    assert.equal(shown.status, 201, `visible notation, accents and emoji are fine: ${shown.text}`);
  });

  it('shows a transaction to its creator and to the caller whose token it was made for; to anyone else, 404 as for an unknown id', async () => {
    const created = await create(as, demo.accessToken);
    const id = created.json.id as string;
    const byCreator = await call(as, 'GET', `/transactions/${id}`, { authorization: auth.gateway });
    assert.equal(byCreator.status, 200, byCreator.text);
    assert.deepEqual(byCreator.json, {
      id,
      status: 'pending',
      tool: 'transfer',
      resource: BANK,
      arguments_hash: hashOf({ amount: 250, to: 'Bob' }),
      summary: 'Transfer 250.00 EUR to Bob',
      act: ['sample-agent'],
      expires_at: created.json.expires_at,
      approval_uri: `${as.issuer}/approve/${id}`,
    });
    const byCaller = await call(as, 'GET', `/transactions/${id}`, { authorization: `Bearer ${demo.accessToken}` });
    assert.equal(byCaller.status, 200);
    assert.deepEqual(byCaller.json, byCreator.json);

    const unknown = await call(as, 'GET', '/transactions/AAAAAAAAAAAAAAAAAAAAAA', { authorization: auth.gateway });
    assert.equal(unknown.status, 404);
    assert.deepEqual(unknown.json, { error: 'not_found', error_description: 'no such transaction' });
    for (const stranger of [auth.gateway2, `Bearer ${bob.accessToken}`]) {
      const res = await call(as, 'GET', `/transactions/${id}`, { authorization: stranger });
      assert.equal(res.status, 404);
      assert.deepEqual(res.json, unknown.json, 'the same answer: existence is not revealed');
    }
    const event = await audited('transaction.refused', (e) => e.error === 'not_found' && aboutTx(id)(e) && e.clientId === 'gateway-2');
    assert.match(event.reason!, /created by gateway, not gateway-2/);
    assert.ok(await audited('transaction.refused', (e) => e.error === 'not_found' && aboutTx(id)(e) && /bearer token of sub=/.test(e.reason ?? '')));

    const plain = await call(as, 'GET', `/transactions/${id}`, { authorization: auth.plain });
    assert.equal(plain.status, 403, 'a client that may not use transactions at all is told so');
    const anonymous = await call(as, 'GET', `/transactions/${id}`);
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.json.error, 'invalid_client');
    const badBearer = await call(as, 'GET', `/transactions/${id}`, { authorization: 'Bearer not-a-token' });
    assert.equal(badBearer.status, 401);
    assert.equal(badBearer.json.error, 'invalid_token');
  });

  it('approve with the password, then use once: 200 used; a second use 409 transaction_used; all audited', async () => {
    const id = (await create(as, demo.accessToken)).json.id as string;
    const approved = await decide(demo.browser, id, 'approve');
    assert.equal(approved.status, 200);
    assert.match(approved.html, /data-outcome="approved"/);
    const decision = await audited('transaction.approved', aboutTx(id));
    assert.equal(decision.data?.decided_how, 'password');
    assert.equal(decision.outcome, 'success');

    const first = await use(as, id, demo.accessToken);
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json.status, 'used');
    assert.equal(first.json.id, id);
    assert.ok(typeof first.json.decided_at === 'number' && typeof first.json.used_at === 'number');
    assert.equal((await audited('transaction.used', aboutTx(id))).data?.decided_how, 'password');

    const second = await use(as, id, demo.accessToken);
    assert.equal(second.status, 409);
    assert.deepEqual(second.json, { error: 'transaction_used', error_description: 'this approval has already been used' });
    assert.match((await audited('transaction.refused', (e) => aboutTx(id)(e) && e.error === 'transaction_used')).reason!, /the transaction is used/);
    assert.equal((await call(as, 'GET', `/transactions/${id}`, { authorization: `Bearer ${demo.accessToken}` })).json.status, 'used');
  });

  it('two gateways racing to use one approval: exactly one wins', async () => {
    const id = (await create(as, demo.accessToken)).json.id as string;
    await decide(demo.browser, id, 'approve');
    const results = await Promise.all(Array.from({ length: 6 }, () => use(as, id, demo.accessToken)));
    assert.deepEqual(results.map((r) => r.status).sort(), [200, 409, 409, 409, 409, 409]);
    assert.ok(results.filter((r) => r.status === 409).every((r) => r.json.error === 'transaction_used'));
  });

  it('use before approval: 409 transaction_pending; only the creating gateway may use it (404 for another)', async () => {
    const id = (await create(as, demo.accessToken)).json.id as string;
    const early = await use(as, id, demo.accessToken);
    assert.equal(early.status, 409);
    assert.equal(early.json.error, 'transaction_pending');
    assert.match((await audited('transaction.refused', (e) => aboutTx(id)(e) && e.error === 'transaction_pending')).reason!, /use: the transaction is pending/);
    const other = await use(as, id, demo.accessToken, undefined, auth.gateway2);
    assert.equal(other.status, 404);
    assert.equal(other.json.error, 'not_found');
    const plain = await use(as, id, demo.accessToken, undefined, auth.plain);
    assert.equal(plain.status, 403);
    assert.equal(plain.json.error, 'unauthorized_client');
  });

  it('refuses another call, another user, another agent or chain: 409 transaction_mismatch, and the approval stays usable', async () => {
    const id = (await create(as, demo.accessToken)).json.id as string;
    await decide(demo.browser, id, 'approve');
    const mismatch = async (token: string, hash: string | undefined, reason: RegExp) => {
      const res = await use(as, id, token, hash);
      assert.equal(res.status, 409, res.text);
      assert.deepEqual(res.json, { error: 'transaction_mismatch', error_description: 'this approval is for another call, user or agent' });
      const event = await audited('transaction.refused', (e) => aboutTx(id)(e) && e.error === 'transaction_mismatch');
      assert.match(event.reason!, reason);
    };
    await mismatch(demo.accessToken, hashOf({ amount: 9999, to: 'Bob' }), /arguments_hash .* differs from the approved/);
    await mismatch(bob.accessToken, undefined, /token sub=.*, transaction sub=/);
    const otherAgent = await agentToken(as, { agent: 'other-agent', browser: demo.browser });
    await mismatch(otherAgent.accessToken, undefined, /token client_id=other-agent, transaction client_id=sample-agent/);
    // The same agent signing demo in at the bank itself: same client, no chain.
    const direct = await signIn(as, { clientId: 'sample-agent', secret: SECRETS.agent, resource: BANK, browser: demo.browser });
    await mismatch(direct.accessToken, undefined, /token act chain \[\], transaction act chain \[sample-agent\]/);
    const agentOwn = await signIn(as, { clientId: 'sample-agent', secret: SECRETS.agent, resource: AGENT, browser: demo.browser });
    await mismatch(agentOwn.accessToken, undefined, /token act chain|token aud=/);
    const ok = await use(as, id, demo.accessToken);
    assert.equal(ok.status, 200, 'mismatches did not spend it');
  });

  it('deny: 409 transaction_denied, audited; the page then says it was denied', async () => {
    const id = (await create(as, demo.accessToken)).json.id as string;
    const denied = await decide(demo.browser, id, 'deny');
    assert.match(denied.html, /data-outcome="denied"/);
    const event = await audited('transaction.denied', aboutTx(id));
    assert.deepEqual([event.outcome, event.error], ['failure', 'access_denied']);
    const res = await use(as, id, demo.accessToken);
    assert.equal(res.status, 409);
    assert.equal(res.json.error, 'transaction_denied');
    assert.equal((await call(as, 'GET', `/transactions/${id}`, { authorization: auth.gateway })).json.status, 'denied');
    const again = await demo.browser.open(`/approve/${id}`);
    assert.match(again.html, /data-outcome="denied"/);
  });

  it('expiry: a pending or approved transaction past its lifetime is expired, on the API and the page', async () => {
    const approvedId = (await create(as, demo.accessToken, { lifetime_seconds: 3 })).json.id as string;
    await decide(demo.browser, approvedId, 'approve');
    const pendingId = (await create(as, demo.accessToken, { lifetime_seconds: 1 })).json.id as string;
    const expiresAt = (await call(as, 'GET', `/transactions/${approvedId}`, { authorization: auth.gateway })).json.expires_at as number;
    // The server's clock counts whole seconds: wait until it has passed the later expiry.
    while (Date.now() / 1000 < expiresAt + 0.05) await new Promise((resolve) => setTimeout(resolve, 100));
    for (const id of [approvedId, pendingId]) {
      assert.equal((await call(as, 'GET', `/transactions/${id}`, { authorization: auth.gateway })).json.status, 'expired');
      const res = await use(as, id, demo.accessToken);
      assert.equal(res.status, 409);
      assert.equal(res.json.error, 'transaction_expired');
      assert.match((await audited('transaction.refused', (e) => aboutTx(id)(e) && e.error === 'transaction_expired')).reason!, /the transaction is expired/);
    }
    const page = await demo.browser.open(`/approve/${pendingId}`);
    assert.equal(page.status, 200);
    assert.match(page.html, /data-outcome="expired"/);
    assert.doesNotMatch(page.html, /value="approve"/, 'nothing left to approve');
  });

  it('a wrong password on the approval page approves nothing: refused and audited', async () => {
    const id = (await create(as, demo.accessToken)).json.id as string;
    const page = await decide(demo.browser, id, 'approve', 'not-the-password');
    assert.equal(page.status, 401);
    assert.match(page.html, /id="approval-error">Wrong password\. Nothing was approved\./);
    const event = await audited('transaction.refused', aboutTx(id));
    assert.deepEqual([event.error, event.reason], ['access_denied', 'approval page: wrong password']);
    assert.equal((await call(as, 'GET', `/transactions/${id}`, { authorization: auth.gateway })).json.status, 'pending');
    assert.equal((await use(as, id, demo.accessToken)).json.error, 'transaction_pending');
  });

  it("another user's approval page: 403, says it belongs to another account, audited; nothing of it shown", async () => {
    const id = (await create(as, demo.accessToken)).json.id as string;
    const page = await bob.browser.open(`/approve/${id}`);
    assert.equal(page.status, 403);
    assert.match(page.html, /This request belongs to another account\. You are signed in as <strong>bob<\/strong>\./);
    assert.doesNotMatch(page.html, /Transfer 250\.00 EUR/);
    const event = await audited('transaction.refused', (e) => aboutTx(id)(e) && e.error === 'access_denied');
    assert.match(event.reason!, /approval page: opened by bob \(sub=.*\); the transaction is of sub=/);
    // Posting to it does not decide it either (the CSRF token is bob's own, derived from his session).
    const csrf = /name="csrf" value="([^"]+)"/.exec((await bob.browser.open(`/approve/${id}`)).html)?.[1];
    assert.equal(csrf, undefined, 'no form on the page');
    const posted = await bob.browser.open(`/approve/${id}`, { method: 'POST', form: { decision: 'deny', csrf: 'x' } });
    assert.equal(posted.status, 403);
    assert.equal((await call(as, 'GET', `/transactions/${id}`, { authorization: auth.gateway })).json.status, 'pending');
  });

  it('the page shows who asks for whom, what, where, the bound arguments and the time left; a form without its CSRF token is refused', async () => {
    const id = (await create(as, demo.accessToken)).json.id as string;
    const page = await demo.browser.open(`/approve/${id}`);
    assert.equal(page.status, 200);
    assert.match(page.html, /<strong><bdi id="party-0">Sample agent<\/bdi><\/strong> \(<bdi>sample-agent<\/bdi>\) asks, acting for you\./);
    assert.match(page.html, /<p class="action" id="summary"><bdi>Transfer 250\.00 EUR to Bob<\/bdi><\/p>/);
    assert.match(page.html, /<bdi id="tool">transfer<\/bdi>/);
    assert.match(page.html, /<strong id="resource-name">Example Bank<\/strong>/);
    assert.match(page.html, /<tr><th scope="row"><bdi>amount<\/bdi><\/th><td><bdi>250\.00<\/bdi><\/td><\/tr>/);
    assert.match(page.html, /id="time-left">[45] min \d+ s</);
    assert.match(page.html, /<input id="password" name="password" type="password"/);
    assert.equal(page.html.indexOf('value="deny"') < page.html.indexOf('value="approve"'), true, 'Deny first: Enter never approves');
    const forged = await demo.browser.open(`/approve/${id}`, { method: 'POST', form: { decision: 'approve', password: 'demo' } });
    assert.equal(forged.status, 403);
    assert.match((await audited('transaction.refused', (e) => e.error === 'invalid_request')).reason!, new RegExp(`CSRF token mismatch on /approve/${id}`));
    assert.equal((await call(as, 'GET', `/transactions/${id}`, { authorization: auth.gateway })).json.status, 'pending');
  });

  it('a browser not signed in signs in first (learning nothing before), then returns to the request; /approvals lists pending ones', async () => {
    const id = (await create(as, demo.accessToken, { summary: 'Pay the rent' })).json.id as string;
    const browser = new FormBrowser(as.issuer);
    const signInPage = await browser.open(`/approve/${id}`);
    assert.equal(signInPage.status, 200);
    assert.match(signInPage.html, /Sign in to review an action/);
    assert.doesNotMatch(signInPage.html, /Pay the rent|sample-agent/);
    const wrong = await browser.submit(signInPage, { username: 'demo', password: 'nope' });
    assert.equal(wrong.status, 401);
    const request = await browser.submit(wrong, { username: 'demo', password: 'demo' });
    assert.equal(new URL(request.url).pathname, `/approve/${id}`, 'back where it began');
    assert.match(request.html, /Pay the rent/);
    const list = await browser.open('/approvals');
    assert.equal(list.status, 200);
    assert.match(list.html, new RegExp(`<a href="/approve/${id}"><bdi>Pay the rent</bdi></a>`));
    await browser.submit(request, { decision: 'deny' });
    assert.doesNotMatch((await browser.open('/approvals')).html, new RegExp(id));
    // The sign-in form is CSRF-protected, and returns only to these pages.
    const forged = await new FormBrowser(as.issuer).open('/approvals/login', { method: 'POST', form: { username: 'demo', password: 'demo', next: '/approvals' } });
    assert.equal(forged.status, 403);
    const fresh = new FormBrowser(as.issuer);
    const elsewhere = await fresh.submit(await fresh.open('/approvals'), { username: 'demo', password: 'demo', next: 'https://evil.example/' });
    assert.equal(new URL(elsewhere.url).pathname, '/approvals');
    assert.equal(elsewhere.external, undefined);
  });

  it('names the endpoint in the metadata (a Mandate extension)', async () => {
    const meta = await call(as, 'GET', '/.well-known/oauth-authorization-server');
    assert.equal(meta.json.mandate_transactions_endpoint, `${as.issuer}/transactions`);
  });
});

describe('transactions: the password on the approval page counts with sign-in attempts', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startTransactionServer({ limits: { login_per_account: 3 } });
  });
  after(async () => {
    await as?.close();
  });

  it('guesses on the page spend the account budget of sign-in: then even the right password is refused, audited', async () => {
    const demo = await agentToken(as);
    const id = (await create(as, demo.accessToken)).json.id as string;
    for (let i = 0; i < 3; i++) assert.equal((await decide(demo.browser, id, 'approve', `guess-${i}`)).status, 401);
    const throttled = await decide(demo.browser, id, 'approve', 'demo');
    assert.match(throttled.html, /id="approval-error">Too many attempts/);
    await as.ctx.audit.flush();
    const [event] = (await as.store.audit.list({ type: 'transaction.refused', limit: 1 }));
    assert.deepEqual([event?.error, event?.reason], ['slow_down', 'approval page: too many attempts for username=demo']);
    // The same budget as the sign-in of an authorization (endpoints/interaction.ts): throttled there too.
    const { challenge } = pkcePair();
    const fresh = new FormBrowser(as.issuer);
    const login = await fresh.open(
      `/authorize?${new URLSearchParams({ response_type: 'code', client_id: 'sample-agent', redirect_uri: REDIRECT, code_challenge: challenge, code_challenge_method: 'S256', resource: AGENT, scope: 'banking:transfer' })}`,
    );
    assert.match(login.html, /name="password"/);
    const refused = await fresh.submit(login, { username: 'demo', password: 'demo' });
    assert.match(refused.html, /Too many sign-in attempts/);
    assert.equal((await call(as, 'GET', `/transactions/${id}`, { authorization: auth.gateway })).json.status, 'pending');
  });
});
