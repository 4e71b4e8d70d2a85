import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { freePort, startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/**
 * Security review of issue 15: a client ID metadata document is held to the same logout metadata
 * rules as an RFC 7591 registration (post_logout_redirect_uris are redirect URIs: no javascript:,
 * data: or plain http to another host), so /logout never redirects to what only a document said.
 */
describe('logout metadata of client ID metadata documents', () => {
  let as: TestAuthServer;
  let docs: Server;
  let base: string;

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    docs = createServer((req, res) => {
      const path = req.url ?? '/';
      const logout = path === '/js.json' ? ['javascript:alert(document.domain)'] : ['http://attacker.test/bye'];
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ client_id: `${base}${path}`, redirect_uris: ['http://127.0.0.1:4000/callback'], token_endpoint_auth_method: 'none', grant_types: ['authorization_code'], post_logout_redirect_uris: logout }));
    });
    await new Promise<void>((r) => docs.listen(port, '127.0.0.1', r));
    as = await startTestAuthServer({ client_id_metadata_documents: { allow_loopback: true, timeout_ms: 500 } });
  });
  after(async () => {
    await as.close();
    docs.closeAllConnections();
    await new Promise((r) => docs.close(r));
  });

  for (const [path, uri] of [
    ['/js.json', 'javascript:alert(document.domain)'],
    ['/http.json', 'http://attacker.test/bye'],
  ] as const) {
    it(`/logout does not redirect to ${uri} from a document → 400 invalid_client`, async () => {
      const res = await fetch(`${as.issuer}/logout?${new URLSearchParams({ client_id: `${base}${path}`, post_logout_redirect_uri: uri })}`, { redirect: 'manual' });
      assert.equal(res.headers.get('location'), null, 'not redirected');
      assert.equal(res.status, 400);
      assert.match(await res.text(), /invalid_client/);
      await as.ctx.audit.flush();
      const [refused] = await as.store.audit.list({ type: 'logout.refused' });
      assert.equal(refused?.error, 'invalid_client');
      assert.ok(refused?.reason?.startsWith(`client_id=${base}${path}: post_logout_redirect_uris: `), refused?.reason);
    });
  }
});
