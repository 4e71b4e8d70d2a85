import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { decodeJwt, freePort, pkcePair, postForm, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

const REDIRECT = 'http://127.0.0.1:4000/callback';

/** Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document). */
describe('client ID metadata documents', () => {
  let as: TestAuthServer;
  let docs: Server;
  let base: string;
  const hits = new Map<string, number>();

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const doc = (path: string, extra: Record<string, unknown> = {}) => ({
      client_id: `${base}${path}`,
      client_name: 'Metadata Doc App',
      redirect_uris: [REDIRECT],
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      ...extra,
    });
    docs = createServer((req, res) => {
      const path = req.url ?? '/';
      hits.set(path, (hits.get(path) ?? 0) + 1);
      const json = (body: unknown, headers: Record<string, string> = {}) => {
        res.writeHead(200, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(body));
      };
      switch (path) {
        case '/good.json':
          return json(doc(path), { 'cache-control': 'max-age=300' });
        case '/nostore.json':
          return json(doc(path), { 'cache-control': 'no-store' });
        case '/mismatch.json':
          return json(doc(path, { client_id: `${base}/other.json` }));
        case '/secret.json':
          return json(doc(path, { client_secret: 'shh' }));
        case '/basic.json':
          return json(doc(path, { token_endpoint_auth_method: 'client_secret_basic' }));
        case '/bad-redirect.json':
          return json(doc(path, { redirect_uris: ['javascript:alert(1)'] }));
        case '/big.json':
          return json(doc(path, { padding: 'x'.repeat(10_000) }));
        case '/redirect.json':
          res.writeHead(302, { location: '/good.json' });
          return res.end();
        case '/slow.json':
          setTimeout(() => json(doc(path)), 2000);
          return;
        default:
          res.writeHead(404);
          res.end();
      }
    });
    await new Promise<void>((r) => docs.listen(port, '127.0.0.1', r));
    // This suite's clients register themselves: the deployment's scope allowlist (the default grants none).
    as = await startTestAuthServer({ client_id_metadata_documents: { allow_loopback: true, timeout_ms: 500 }, registration: { allowed_scopes: ['mcp:read', 'mcp:write'] } });
  });
  after(async () => {
    await as.close();
    docs.closeAllConnections();
    await new Promise((r) => docs.close(r));
  });

  const authorize = (clientId: string, challenge = pkcePair().challenge) =>
    `${as.issuer}/authorize?${new URLSearchParams({
      response_type: 'code',
      client_id: clientId,
      redirect_uri: REDIRECT,
      code_challenge: challenge,
      code_challenge_method: 'S256',
      resource: as.resource,
      scope: 'mcp:read',
    })}`;

  const refusal = async (path: string) => {
    const res = await fetch(authorize(`${base}${path}`), { redirect: 'manual', headers: { accept: 'application/json' } });
    assert.equal(res.status, 400);
    return ((await res.json()) as { error: string }).error;
  };

  it('signs in a client identified by its document URL, and caches the document', async () => {
    const clientId = `${base}/good.json`;
    const { verifier, challenge } = pkcePair();
    const browser = new FormBrowser(as.issuer);
    const back = await browser.authorize(authorize(clientId, challenge));
    assert.match(browser.pages.at(-1)!.html, /Metadata Doc App/);
    const token = await postForm(`${as.issuer}/token`, { grant_type: 'authorization_code', code: back.searchParams.get('code')!, code_verifier: verifier, redirect_uri: REDIRECT, client_id: clientId });
    assert.equal(token.status, 200, token.text);
    assert.equal(decodeJwt(token.json.access_token as string).client_id, clientId);
    assert.equal(hits.get('/good.json'), 1, 'max-age=300 keeps the document cached');
  });

  it('fetches again when the document says no-store', async () => {
    await fetch(authorize(`${base}/nostore.json`), { redirect: 'manual' });
    await fetch(authorize(`${base}/nostore.json`), { redirect: 'manual' });
    assert.equal(hits.get('/nostore.json'), 2);
  });

  it('refuses a document whose client_id differs from its URL', async () => assert.equal(await refusal('/mismatch.json'), 'invalid_client'));
  it('refuses a document carrying a client secret', async () => assert.equal(await refusal('/secret.json'), 'invalid_client'));
  it('refuses a document asking for client_secret_basic', async () => assert.equal(await refusal('/basic.json'), 'invalid_client'));
  it('refuses a document with a javascript: redirect URI', async () => assert.equal(await refusal('/bad-redirect.json'), 'invalid_client'));
  it('refuses a document over the size limit', async () => assert.equal(await refusal('/big.json'), 'invalid_client'));
  it('does not follow redirects', async () => {
    assert.equal(await refusal('/redirect.json'), 'invalid_client');
    assert.equal(hits.get('/good.json') ?? 0, 1, 'the redirect target was not fetched');
  });
  it('gives up after the time limit', async () => assert.equal(await refusal('/slow.json'), 'invalid_client'));
  it('refuses a missing document', async () => assert.equal(await refusal('/missing.json'), 'invalid_client'));

  it('holds a metadata-document client to the registration policy (scope allowlist)', async () => {
    const strictScopes = await startTestAuthServer({ client_id_metadata_documents: { allow_loopback: true }, registration: { allowed_scopes: ['mcp:read'] } });
    try {
      const url = `${strictScopes.issuer}/authorize?${new URLSearchParams({
        response_type: 'code',
        client_id: `${base}/nostore.json`,
        redirect_uri: REDIRECT,
        code_challenge: pkcePair().challenge,
        code_challenge_method: 'S256',
        resource: strictScopes.resource,
        scope: 'mcp:write',
        state: 's',
      })}`;
      const res = await fetch(url, { redirect: 'manual' });
      assert.equal(new URL(res.headers.get('location')!).searchParams.get('error'), 'invalid_scope');
    } finally {
      await strictScopes.close();
    }
  });

  describe('without the development loopback allowance', () => {
    let strict: TestAuthServer;
    before(async () => {
      strict = await startTestAuthServer();
    });
    after(async () => strict.close());

    const reasonFor = async (clientId: string) => {
      const url = `${strict.issuer}/authorize?${new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: REDIRECT, code_challenge: pkcePair().challenge, code_challenge_method: 'S256' })}`;
      const res = await fetch(url, { headers: { accept: 'application/json' } });
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_client');
      await strict.ctx.audit.flush();
      const [event] = await strict.store.audit.list({ clientId });
      return event?.reason ?? '';
    };

    it('refuses a document on a private address', async () => assert.match(await reasonFor('https://10.0.0.8/client.json'), /non-public address 10\.0\.0\.8/));
    it('refuses a document on a link-local address', async () => assert.match(await reasonFor('https://169.254.169.254/latest.json'), /non-public address/));
    it('refuses a host name that resolves to loopback', async () => assert.match(await reasonFor('https://localhost:8443/client.json'), /non-public address/));
    it('refuses an IPv6 unique-local address', async () => assert.match(await reasonFor('https://[fd00::1]/client.json'), /non-public address/));
    it('refuses a client_id URL without a path', async () => assert.match(await reasonFor('https://client.example'), /must have a path/));
  });
});
