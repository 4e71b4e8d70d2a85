import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import type { TestAuthServer } from '../helpers/auth-server.ts';
import { WEB_REDIRECT, authorizeUrl, startSuiteServer } from './fixture.ts';
import { asAudit, runCases, type AttackCase, type Outcome } from './runner.ts';

type Page = Awaited<ReturnType<FormBrowser['open']>>;

/**
 * The interaction pages (login, agreement, consent): every POST carries the interaction's CSRF
 * token, the interaction is bound to the browser that began it, and it is single-use. A refusal
 * shows a generic page; the audit log says which check failed.
 */
describe('security: pages', () => {
  let as: TestAuthServer;
  before(async () => {
    as = await startSuiteServer(
      {
        agreements: [{ id: 'terms', name: 'Terms', version: 1, text: 'I agree.' }],
        authentication_policies: [{ name: 'With-Terms', steps: ['login', { agreement: 'terms' }] }],
      },
      [{ client_id: 'agreed', token_endpoint_auth_method: 'none', redirect_uris: [WEB_REDIRECT], authentication_policy: 'With-Terms' }],
    );
  });
  after(async () => as.close());

  const outcome = (page: Page): Outcome => ({ status: page.status, error: /id="error-code">([a-z_]+)</.exec(page.html)?.[1] ?? (page.external ? `redirected to ${page.external}` : undefined) });
  const csrfOf = (page: Page) => /name="csrf" value="([^"]+)"/.exec(page.html)?.[1] ?? '';
  const idOf = (page: Page) => /\/interaction\/([\w-]+)/.exec(page.url)![1]!;
  /** A browser on the login page of a fresh interaction. */
  const atLogin = async (params: Record<string, string> = {}) => {
    const browser = new FormBrowser(as.issuer);
    const page = await browser.open(authorizeUrl(as, params));
    assert.match(page.html, /name="password"/);
    return { browser, page, id: idOf(page), csrf: csrfOf(page) };
  };
  /** A browser signed in, on the next page (consent, or the agreement for `agreed`). */
  const signedIn = async (params: Record<string, string> = {}) => {
    const at = await atLogin(params);
    const page = await at.browser.submit(at.page, { username: 'demo', password: 'demo' });
    return { ...at, page, csrf: csrfOf(page) };
  };
  const post = (browser: FormBrowser, path: string, form: Record<string, string>) => browser.open(path, { method: 'POST', form });
  const creds = { username: 'demo', password: 'demo' };
  const step = (name: string) => new RegExp(`^POST /interaction/[\\w-]+/${name}: `);
  const csrf = (name: string) => new RegExp(`${step(name).source}CSRF token mismatch$`);
  const elsewhere = /^(GET|POST) \/interaction\/[\w-]+(\/login|\/consent)?: the interaction is bound to another browser$/;

  const cases: AttackCase[] = [
    {
      name: 'login CSRF: no token',
      attack: async () => {
        const { browser, id } = await atLogin();
        return outcome(await post(browser, `/interaction/${id}/login`, creds));
      },
      status: 403,
      error: 'invalid_request',
      auditReason: csrf('login'),
    },
    {
      name: 'login CSRF: a wrong token',
      attack: async () => {
        const { browser, id } = await atLogin();
        return outcome(await post(browser, `/interaction/${id}/login`, { ...creds, csrf: 'forged' }));
      },
      status: 403,
      error: 'invalid_request',
      auditReason: csrf('login'),
    },
    {
      name: "login CSRF: another interaction's token",
      attack: async () => {
        const first = await atLogin();
        const second = await first.browser.open(authorizeUrl(as));
        return outcome(await post(first.browser, `/interaction/${idOf(second)}/login`, { ...creds, csrf: first.csrf }));
      },
      status: 403,
      error: 'invalid_request',
      auditReason: csrf('login'),
    },
    {
      name: 'login posted from another browser (interaction id and CSRF token stolen)',
      attack: async () => {
        const { id, csrf: token } = await atLogin();
        return outcome(await post(new FormBrowser(as.issuer), `/interaction/${id}/login`, { ...creds, csrf: token }));
      },
      status: 400,
      error: 'invalid_request',
      auditReason: elsewhere,
    },
    {
      name: 'an interaction opened in another browser',
      attack: async () => outcome(await new FormBrowser(as.issuer).open(`/interaction/${(await atLogin()).id}`)),
      status: 400,
      error: 'invalid_request',
      auditReason: elsewhere,
    },
    {
      name: 'an unknown interaction',
      attack: async () => outcome(await new FormBrowser(as.issuer).open('/interaction/made-up-id')),
      status: 400,
      error: 'invalid_request',
      auditReason: 'GET /interaction/made-up-id: unknown or expired interaction',
    },
    {
      name: 'consent CSRF: no token',
      attack: async () => {
        const { browser, id } = await signedIn({ prompt: 'consent' });
        return outcome(await post(browser, `/interaction/${id}/consent`, { decision: 'allow' }));
      },
      status: 403,
      error: 'invalid_request',
      auditReason: csrf('consent'),
    },
    {
      name: 'consent CSRF: a wrong token',
      attack: async () => {
        const { browser, id } = await signedIn({ prompt: 'consent' });
        return outcome(await post(browser, `/interaction/${id}/consent`, { decision: 'allow', csrf: 'forged' }));
      },
      status: 403,
      error: 'invalid_request',
      auditReason: csrf('consent'),
    },
    {
      name: 'consent posted before signing in',
      attack: async () => {
        const { browser, id, csrf: token } = await atLogin();
        return outcome(await post(browser, `/interaction/${id}/consent`, { decision: 'allow', csrf: token }));
      },
      status: 400,
      error: 'invalid_request',
      auditReason: /^POST \/interaction\/[\w-]+\/consent: no signed-in session$/,
    },
    {
      name: 'agreement CSRF: no token',
      attack: async () => {
        const { browser, id, page } = await signedIn({ client_id: 'agreed' });
        assert.match(page.html, /\/agreement"/);
        return outcome(await post(browser, `/interaction/${id}/agreement`, { decision: 'accept' }));
      },
      status: 403,
      error: 'invalid_request',
      auditReason: csrf('agreement'),
    },
    {
      name: 'agreement CSRF: a wrong token',
      attack: async () => {
        const { browser, id } = await signedIn({ client_id: 'agreed' });
        return outcome(await post(browser, `/interaction/${id}/agreement`, { decision: 'accept', csrf: 'forged' }));
      },
      status: 403,
      error: 'invalid_request',
      auditReason: csrf('agreement'),
    },
    {
      name: 'an interaction reused after it completed',
      attack: async () => {
        const { browser, id, page } = await signedIn({ prompt: 'consent' });
        const done = await browser.submit(page, { decision: 'allow' });
        assert.ok(done.external?.startsWith(WEB_REDIRECT), 'the first use completes');
        return outcome(await browser.open(`/interaction/${id}`));
      },
      status: 400,
      error: 'invalid_request',
      auditReason: /^GET \/interaction\/[\w-]+: unknown or expired interaction$/,
    },
    {
      name: 'a consent form replayed after the user denied',
      attack: async () => {
        const { browser, id, page, csrf: token } = await signedIn({ prompt: 'consent' });
        const denied = await browser.submit(page, { decision: 'deny' });
        assert.match(denied.external ?? '', /error=access_denied/);
        return outcome(await post(browser, `/interaction/${id}/consent`, { decision: 'allow', csrf: token }));
      },
      status: 400,
      error: 'invalid_request',
      auditReason: /^POST \/interaction\/[\w-]+\/consent: unknown or expired interaction$/,
      auditKind: 'interaction.refused',
    },
    {
      name: 'open redirect: an error for an unregistered redirect_uri is shown, not sent there',
      attack: async () => outcome(await new FormBrowser(as.issuer).open(authorizeUrl(as, { redirect_uri: 'https://attacker.test/phish', scope: 'nonexistent' }))),
      status: 400,
      error: 'invalid_request',
      auditReason: 'redirect_uri=https://attacker.test/phish',
    },
    {
      name: 'open redirect: an unknown client with an attacker redirect_uri',
      attack: async () => outcome(await new FormBrowser(as.issuer).open(authorizeUrl(as, { client_id: 'no-such-client', redirect_uri: 'https://attacker.test/phish', response_type: 'token' }))),
      status: 400,
      error: 'invalid_client',
      auditReason: 'client_id=no-such-client',
    },
  ];
  runCases(cases, asAudit(() => as));

  it('every page forbids framing (clickjacking) and caching', async () => {
    const { page } = await atLogin();
    const res = await fetch(page.url.startsWith('http') ? page.url : `${as.issuer}${page.url}`);
    for (const check of [res, await fetch(`${as.issuer}/interaction/made-up-id`)]) {
      assert.equal(check.headers.get('x-frame-options'), 'DENY');
      assert.match(check.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
      assert.equal(check.headers.get('cache-control'), 'no-store');
    }
  });
});
