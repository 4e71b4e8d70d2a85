import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { BANK, authorization, redeem, selfRegistered, startPagesServer } from './fixture.ts';

const REDIRECT = 'http://127.0.0.1:4011/callback';

/**
 * A remembered consent skips the page only while it covers the high-risk scopes the user ticked:
 * a consent stored before ticks were recorded, or before a scope was marked high risk, asks again
 * (and prompt=none answers consent_required). Allow with nothing granted issues no code.
 */
describe('pages: remembered consent and the high-risk tick', () => {
  let as: TestAuthServer;
  let sub: string;

  before(async () => {
    as = await startPagesServer(REDIRECT);
    const user = await as.store.users.findByUsername('demo');
    assert.ok(user);
    sub = user.sub;
  });
  after(async () => {
    await as?.close();
  });

  const signIn = async (url: string) => {
    const browser = new FormBrowser(as.issuer);
    const login = await browser.open(url);
    assert.match(login.html, /name="password"/, 'the login page');
    return { browser, page: await browser.submit(login, { username: 'demo', password: 'demo' }) };
  };
  const redirectParams = (external: string | undefined) => {
    assert.ok(external, 'redirected to the client');
    return new URL(external).searchParams;
  };
  const silently = (url: string) => `${url}&prompt=none`;

  it('a consent remembered without the tick (a row from before ticks were kept) shows the page again; prompt=none answers consent_required', async () => {
    const clientId = await selfRegistered(as, REDIRECT, 'Old friend');
    await as.store.consents.upsert({ sub, clientId, resource: BANK, scope: 'banking:read banking:transfer', createdAt: Date.now() });
    const scope = 'banking:read banking:transfer';
    const first = authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope });
    const { browser, page } = await signIn(first.url);
    assert.equal(page.external, undefined, 'no code without the page');
    assert.match(page.html, /<input type="checkbox" name="high_risk" value="banking:transfer">/, 'asked again, with the box');

    const none = await browser.open(silently(authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope }).url));
    const refused = redirectParams(none.external);
    assert.equal(refused.get('error'), 'consent_required');
    assert.equal(refused.get('code'), null);

    // Ticked this time: remembered with the tick, so the next request is silent, prompt=none too.
    const ticked = await browser.submit(page, { decision: 'allow', high_risk: 'banking:transfer' });
    const token = await redeem(as, redirectParams(ticked.external).get('code') ?? '', first.verifier, clientId, REDIRECT);
    assert.equal(token.status, 200, token.text);
    assert.equal(token.json.scope, 'banking:read banking:transfer');
    assert.equal((await as.store.consents.find(sub, clientId, BANK))?.highRiskTicked, 'banking:transfer');

    const again = authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope });
    const silent = await browser.open(silently(again.url));
    const code = redirectParams(silent.external).get('code');
    assert.ok(code, 'a code without the page once the tick is remembered');
    const second = await redeem(as, code, again.verifier, clientId, REDIRECT);
    assert.equal(second.json.scope, 'banking:read banking:transfer');
  });

  it('a scope marked high risk after the consent shows the page again (prompt=none: consent_required)', async () => {
    const clientId = await selfRegistered(as, REDIRECT, 'Reader');
    const scope = 'banking:read';
    const first = authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope });
    const { browser, page } = await signIn(first.url);
    assert.doesNotMatch(page.html, /name="high_risk"/, 'banking:read is not high risk yet');
    const allowed = await browser.submit(page, { decision: 'allow' });
    assert.ok(redirectParams(allowed.external).get('code'));
    const before = await browser.open(silently(authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope }).url));
    assert.ok(redirectParams(before.external).get('code'), 'remembered: silent');

    // The operator now marks banking:read high risk (a stored definition replaces the file's).
    const definition = {
      id: BANK,
      name: 'Example Bank',
      scopes: [
        { name: 'banking:read', description: 'See your balance and transactions', high_risk: true },
        { name: 'banking:transfer', description: 'Move money from your account', high_risk: true },
      ],
    };
    await as.store.resources.upsert({ id: BANK, definition, source: 'admin', updatedAt: Date.now() });
    await as.ctx.reloadResources();
    try {
      const none = await browser.open(silently(authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope }).url));
      assert.equal(redirectParams(none.external).get('error'), 'consent_required');
      const shown = await browser.open(authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope }).url);
      assert.equal(shown.external, undefined);
      assert.match(shown.html, /<input type="checkbox" name="high_risk" value="banking:read">/);
    } finally {
      await as.store.resources.upsert({
        id: BANK,
        definition: { ...definition, scopes: definition.scopes.map((s) => ({ ...s, high_risk: s.name === 'banking:transfer' })) },
        source: 'admin',
        updatedAt: Date.now(),
      });
      await as.ctx.reloadResources();
    }
  });

  it('Allow with every requested scope unticked grants nothing: access_denied, audited, no consent remembered', async () => {
    const clientId = await selfRegistered(as, REDIRECT, 'Transfers only');
    const auth = authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope: 'banking:transfer' });
    const { browser, page } = await signIn(auth.url);
    assert.match(page.html, /name="high_risk" value="banking:transfer"/);
    const back = await browser.submit(page, { decision: 'allow' });
    const params = redirectParams(back.external);
    assert.equal(params.get('error'), 'access_denied');
    assert.match(params.get('error_description') ?? '', /no permission/);
    assert.equal(params.get('code'), null);
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'consent.denied', clientId });
    assert.equal(event?.error, 'access_denied');
    assert.match(event?.reason ?? '', /no permission granted: high-risk scopes not ticked \(banking:transfer\)/);
    assert.equal(await as.store.consents.find(sub, clientId, BANK), undefined, 'nothing remembered');
  });
});
