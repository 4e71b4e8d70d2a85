import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { authServerConfigSchema } from '../../src/config/schema.ts';
import type { ServerContext } from '../../src/auth-server/context.ts';
import { clientView } from '../../src/auth-server/pages/consent-view.ts';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { freePort, type TestAuthServer } from '../helpers/auth-server.ts';
import { AGENT_RESOURCE, BANK, NOTES, authorization, redeem, selfRegistered, startPagesServer } from './fixture.ts';

const REDIRECT = 'http://127.0.0.1:4010/callback';

/**
 * The consent rules behind the pages, over plain HTTP: who counts as verified, which scopes an
 * unverified client gets without a tick, what the pages say about agents, and that names and
 * branding cannot inject markup or CSS.
 */
describe('pages: consent rules', () => {
  let as: TestAuthServer;
  let docs: Server;
  let docBase: string;

  before(async () => {
    const port = await freePort();
    docBase = `http://127.0.0.1:${port}`;
    docs = createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const name = req.url === '/bidi.json' ? 'Documented \u202Eppa' : 'Documented App';
      res.end(JSON.stringify({ client_id: `${docBase}${req.url}`, client_name: name, redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'] }));
    });
    await new Promise<void>((resolve) => docs.listen(port, '127.0.0.1', resolve));
    as = await startPagesServer(REDIRECT, { client_id_metadata_documents: { allow_loopback: true, verified_hosts: ['127.0.0.1'] } });
  });
  after(async () => {
    await as?.close();
    docs?.closeAllConnections();
    await new Promise<void>((resolve) => docs?.close(() => resolve()));
  });

  /** Signs in on a fresh browser and returns it on the consent page. */
  const toConsent = async (url: string) => {
    const browser = new FormBrowser(as.issuer);
    const login = await browser.open(url);
    assert.match(login.html, /name="password"/, 'the login page');
    const consent = await browser.submit(login, { username: 'demo', password: 'demo' });
    assert.match(consent.html, /value="allow"/, `the consent page; got ${consent.html.slice(0, 300)}`);
    return { browser, consent };
  };
  const codeOf = (external: string | undefined) => {
    assert.ok(external, 'redirected to the client');
    const code = new URL(external).searchParams.get('code');
    assert.ok(code, `a code in ${external}`);
    return code;
  };

  it('an unverified client does not get a high-risk scope when the box is not ticked (the server decides, not the page)', async () => {
    const clientId = await selfRegistered(as, REDIRECT, 'MCP Inspector');
    const auth = authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope: 'banking:read banking:transfer' });
    const { browser, consent } = await toConsent(auth.url);
    assert.match(consent.html, /<input type="checkbox" name="high_risk" value="banking:transfer">/, 'an unticked box, never pre-checked');
    assert.doesNotMatch(consent.html, /<input[^>]*\bchecked\b/);
    // Allow, sending only what a browser sends when nothing is ticked.
    const back = await browser.submit(consent, { decision: 'allow' });
    const token = await redeem(as, codeOf(back.external), auth.verifier, clientId, REDIRECT);
    assert.equal(token.status, 200, token.text);
    assert.equal(token.json.scope, 'banking:read');
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'consent.granted', clientId });
    assert.equal(event?.data?.scope, 'banking:read');
    assert.equal(event?.data?.scope_not_ticked, 'banking:transfer', 'the audit log says what was left out and why');
    const remembered = await as.store.consents.find(event!.sub!, clientId, BANK);
    assert.equal(remembered?.scope, 'banking:read', 'the remembered consent does not cover the high-risk scope either');

    // The next request for it asks again (it was never granted), and this time the user ticks it.
    const again = authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope: 'banking:read banking:transfer' });
    const page = await browser.open(again.url);
    assert.match(page.html, /name="high_risk"/, 'asked again, with the box');
    const ticked = await browser.submit(page, { decision: 'allow', high_risk: 'banking:transfer' });
    const second = await redeem(as, codeOf(ticked.external), again.verifier, clientId, REDIRECT);
    assert.equal(second.json.scope, 'banking:read banking:transfer');
  });

  it('asked for high-risk scopes only, an unverified client\'s page says nothing is granted without a tick', async () => {
    const clientId = await selfRegistered(as, REDIRECT, 'Only risky');
    const auth = authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope: 'banking:transfer' });
    const { consent } = await toConsent(auth.url);
    const summary = /<p class="summary" id="summary">([\s\S]*?)<\/p>/.exec(consent.html)?.[1]?.replace(/<[^>]+>/g, '');
    assert.match(summary ?? '', /^Nothing is granted unless you tick a permission below; “Only risky” would then act for you at /);
    assert.doesNotMatch(summary ?? '', /these 0 permissions/);
  });

  it('a tick cannot add a scope the client did not ask for', async () => {
    const clientId = await selfRegistered(as, REDIRECT, 'Sneaky');
    const auth = authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope: 'banking:read' });
    const { browser, consent } = await toConsent(auth.url);
    assert.doesNotMatch(consent.html, /name="high_risk"/);
    const back = await browser.submit(consent, { decision: 'allow', high_risk: 'banking:transfer' });
    const token = await redeem(as, codeOf(back.external), auth.verifier, clientId, REDIRECT);
    assert.equal(token.json.scope, 'banking:read');
  });

  it('a configured (verified) client gets the high-risk scope with Allow; the page marks it and shows no box', async () => {
    const auth = authorization(as, { clientId: 'notes-app', redirectUri: REDIRECT, resource: BANK, scope: 'banking:read banking:transfer' });
    const { browser, consent } = await toConsent(auth.url);
    assert.match(consent.html, /class="badge verified">Verified</);
    assert.doesNotMatch(consent.html, /name="high_risk"/);
    assert.match(consent.html, /<li class="high" data-scope="banking:transfer"><span>Move money from your account<\/span> <span class="badge risk">High risk<\/span>/);
    const back = await browser.submit(consent, { decision: 'allow' });
    const token = await redeem(as, codeOf(back.external), auth.verifier, 'notes-app', REDIRECT);
    assert.equal(token.json.scope, 'banking:read banking:transfer');
  });

  it('a self-registered client is marked unverified and its chosen name is quoted; a hostile name stays text', async () => {
    const hostile = '<img src=x onerror=alert(1)>"Bank" & <script>alert(2)</script>';
    const clientId = await selfRegistered(as, REDIRECT, hostile);
    const { consent } = await toConsent(authorization(as, { clientId, redirectUri: REDIRECT, resource: NOTES, scope: 'notes:read' }).url);
    assert.match(consent.html, /“<bdi id="client-name">&lt;img src=x onerror=alert\(1\)&gt;&quot;Bank&quot; &amp; &lt;script&gt;alert\(2\)&lt;\/script&gt;<\/bdi>”/);
    assert.match(consent.html, /<span class="badge unverified" id="client-name-unverified">Unverified<\/span>/);
    assert.match(consent.html, /This application registered itself/);
    assert.doesNotMatch(consent.html, /<script|<img/i, 'no markup from the name reaches the page');
  });

  it('OpenID Connect scopes are described by default, and the summary is one sentence naming the client and the place', async () => {
    const auth = authorization(as, { clientId: 'notes-app', redirectUri: REDIRECT, resource: NOTES, scope: 'openid profile email offline_access notes:read' });
    const { consent } = await toConsent(auth.url);
    for (const [scope, text] of [
      ['openid', 'Confirm who you are'],
      ['profile', 'See your name and profile'],
      ['email', 'See your email address'],
      ['offline_access', 'Stay connected when you are away'],
      ['notes:read', 'Read your notes'],
    ]) {
      assert.match(consent.html, new RegExp(`data-scope="${scope}"><span>${text}`), scope);
    }
    const summary = /<p class="summary" id="summary">([\s\S]*?)<\/p>/.exec(consent.html)?.[1]?.replace(/<[^>]+>/g, '');
    assert.equal(summary, 'If you allow, Notes web app can act for you at Notes with these 5 permissions.');
  });

  it("an agent's own sign-in names the agent once and the bank it will act at, not its own audience", async () => {
    const auth = authorization(as, { clientId: 'sample-agent', redirectUri: REDIRECT, resource: AGENT_RESOURCE, scope: 'banking:read' });
    const browser = new FormBrowser(as.issuer);
    const login = await browser.open(auth.url);
    const agreement = await browser.submit(login, { username: 'demo', password: 'demo' });
    assert.match(agreement.html, /<span id="agreement-version">Version 3<\/span>/);
    assert.match(agreement.html, /id="agreement-text"[^>]*>I allow digital assistants[\s\S]*3\. I can withdraw this agreement/, 'the full text');
    const consent = await browser.submit(agreement, { decision: 'accept' });
    const actor = /<dd id="actor">([\s\S]*?)<\/dd>/.exec(consent.html)?.[1] ?? '';
    assert.equal(actor.replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim(), 'Sample agent AI agent sample-agent');
    assert.doesNotMatch(consent.html, /\(an AI agent\)/);
    assert.match(consent.html, /<strong id="resource-name">Example Bank<\/strong>/);
    assert.doesNotMatch(consent.html, /Agent sign-in/, "the agent's own audience is not presented as a place");
  });

  it('a self-registered agent is described by its own name, unverified, never by a configured agent\'s', async () => {
    const res = await fetch(`${as.issuer}/aiagent/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: 'Helpful agent', redirect_uris: [REDIRECT], grant_types: ['authorization_code', 'client_credentials'], token_endpoint_auth_method: 'client_secret_basic' }),
    });
    assert.equal(res.status, 201, await res.clone().text());
    const { client_id: clientId } = (await res.json()) as { client_id: string };
    const auth = authorization(as, { clientId, redirectUri: REDIRECT, resource: AGENT_RESOURCE, scope: 'banking:read banking:transfer' });
    const browser = new FormBrowser(as.issuer);
    const login = await browser.open(auth.url);
    const consent = await browser.submit(login, { username: 'demo', password: 'demo' });
    assert.match(consent.html, /“<bdi id="client-name">Helpful agent<\/bdi>”/);
    assert.match(consent.html, /id="actor-agent">AI agent/);
    assert.match(consent.html, /<strong id="resource-name">Example Bank<\/strong>/);
    assert.doesNotMatch(consent.html, /Sample agent/);
    assert.match(consent.html, /name="high_risk" value="banking:transfer"/, 'the high-risk scope waits for a tick');
  });

  it('a client ID metadata document on a verified host is verified and says where it is described', async () => {
    const clientId = `${docBase}/app.json`;
    const { consent } = await toConsent(authorization(as, { clientId, redirectUri: REDIRECT, resource: NOTES, scope: 'notes:read' }).url);
    assert.match(consent.html, /<bdi id="client-name">Documented App<\/bdi><\/strong> <span class="badge verified">Verified/);
    assert.match(consent.html, /Described by <strong>127\.0\.0\.1<\/strong>, a host this service trusts/);
  });

  it('a chosen name with control or format characters (U+202E reorders text) is refused at registration and in a document', async () => {
    for (const name of ['Bank \u202Etfel', 'Zero\u200Bwidth', 'Bell\u0007', 'New\nline']) {
      const res = await fetch(`${as.issuer}/register`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ client_name: name, redirect_uris: [REDIRECT], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'] }),
      });
      const body = (await res.json()) as { error: string; error_description: string };
      assert.equal(res.status, 400, JSON.stringify(name));
      assert.equal(body.error, 'invalid_client_metadata');
      assert.equal(body.error_description, 'client_name: must not contain control or format characters (such as U+202E, which reorders text)');
    }
    await as.ctx.audit.flush();
    const [event] = await as.store.audit.list({ type: 'register.refused' });
    assert.equal(event?.error, 'invalid_client_metadata');
    assert.match(event?.reason ?? '', /^client_name: must not contain control or format characters/);

    const clientId = `${docBase}/bidi.json`;
    const res = await fetch(authorization(as, { clientId, redirectUri: REDIRECT, resource: NOTES, scope: 'notes:read' }).url, { redirect: 'manual', headers: { accept: 'application/json' } });
    assert.equal(res.status, 400);
    assert.equal(((await res.json()) as { error: string }).error, 'invalid_client');
    await as.ctx.audit.flush();
    const [refused] = await as.store.audit.list({ clientId });
    assert.equal(refused?.error, 'invalid_client');
    assert.match(refused?.reason ?? '', /must not contain control or format characters/);
    // Right-to-left names that are plain letters stay allowed, isolated by <bdi> on the page.
    const hebrew = await selfRegistered(as, REDIRECT, 'בנק');
    const { consent } = await toConsent(authorization(as, { clientId: hebrew, redirectUri: REDIRECT, resource: NOTES, scope: 'notes:read' }).url);
    assert.match(consent.html, /“<bdi id="client-name">בנק<\/bdi>”/);
  });

  it('a host taken off verified_hosts after a consent: the high-risk scope waits for a tick again (prompt=none: consent_required)', async () => {
    const clientId = `${docBase}/vouched.json`;
    const scope = 'banking:read banking:transfer';
    const first = authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope });
    const { browser, consent } = await toConsent(first.url);
    assert.doesNotMatch(consent.html, /name="high_risk"/, 'verified: no box');
    const back = await browser.submit(consent, { decision: 'allow' });
    assert.equal((await redeem(as, codeOf(back.external), first.verifier, clientId, REDIRECT)).json.scope, scope);
    const hosts = as.ctx.config.client_id_metadata_documents.verified_hosts;
    const listed = [...hosts];
    hosts.splice(0, hosts.length);
    try {
      const none = await browser.open(`${authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope }).url}&prompt=none`);
      assert.ok(none.external);
      assert.equal(new URL(none.external).searchParams.get('error'), 'consent_required');
      const page = await browser.open(authorization(as, { clientId, redirectUri: REDIRECT, resource: BANK, scope }).url);
      assert.match(page.html, /<input type="checkbox" name="high_risk" value="banking:transfer">/);
    } finally {
      hosts.push(...listed);
    }
  });

  it('the verified rule: configured, or a document on a listed host; anything self-described elsewhere is not', () => {
    const ctx = { config: { client_id_metadata_documents: { verified_hosts: ['Apps.Example.com'] } } } as unknown as ServerContext;
    const record = (source: 'config' | 'dynamic' | 'metadata_document') => ({ clientId: 'x', source, metadata: { client_name: 'X' }, createdAt: 0 }) as never;
    assert.equal(clientView(ctx, 'a', record('config')).verified, true);
    assert.equal(clientView(ctx, 'a', record('dynamic')).verified, false);
    assert.equal(clientView(ctx, 'https://apps.example.com/c.json', record('metadata_document')).verified, true, 'host names compare case-insensitively');
    assert.equal(clientView(ctx, 'https://apps.example.com.evil.test/c.json', record('metadata_document')).verified, false);
    assert.equal(clientView(ctx, 'https://evil.test/apps.example.com', record('metadata_document')).verified, false);
    assert.equal(clientView(ctx, 'https://apps.example.com/c.json', record('dynamic')).verified, false, 'a URL-looking id of a registered client is not a document');
  });

  it('branding cannot inject CSS or script: colours are hex, logos https or data:image, support links https or mailto', () => {
    const refused = [
      { primary_color: 'red; } body { display: none' },
      { primary_color: '#12345g' },
      { primary_color_dark: 'url(https://evil.test/x)' },
      { logo_url: 'javascript:alert(1)' },
      { logo_url: 'http://logo.example.test/logo.png' },
      { logo_url: 'data:text/html;base64,PHNjcmlwdD4=' },
      { logo_url: 'https://logo.example.test/x.png" onerror="alert(1)' },
      { support_url: 'javascript:alert(1)' },
      { support_url: 'http://help.example.test' },
      { product_name: '' },
      { unknown_key: true },
    ];
    for (const branding of refused) assert.equal(authServerConfigSchema.safeParse({ branding }).success, false, JSON.stringify(branding));
    const accepted = authServerConfigSchema.parse({
      branding: { primary_color: '#abc', logo_url: 'data:image/svg+xml;base64,PHN2Zy8+', support_url: 'https://help.example.test/mandate' },
    });
    assert.equal(accepted.branding.product_name, 'Mandate', 'the default product name');
  });
});
