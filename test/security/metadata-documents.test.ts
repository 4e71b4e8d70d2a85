import { createServer, type Server } from 'node:http';
import { after, before, describe } from 'node:test';
import { freePort, pkcePair, type TestAuthServer } from '../helpers/auth-server.ts';
import { LOOPBACK_REDIRECT, startSuiteServer } from './fixture.ts';
import { asAudit, combinedAudit, oauth, runCases, type AttackCase } from './runner.ts';

/**
 * Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document): a URL client_id is
 * fetched by the AS, so it is an SSRF vector. As shipped (no loopback), private and special
 * addresses are refused before any connection; a second server allows loopback (a development
 * setting) only so that bad documents can be served from this machine.
 */
describe('security: client ID metadata documents', () => {
  let shipped: TestAuthServer;
  let dev: TestAuthServer;
  let docs: Server;
  let base: string;

  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    const doc = (path: string, extra: Record<string, unknown> = {}) => ({
      client_id: `${base}${path}`,
      client_name: 'Doc app',
      redirect_uris: [LOOPBACK_REDIRECT],
      token_endpoint_auth_method: 'none',
      ...extra,
    });
    docs = createServer((req, res) => {
      const path = req.url ?? '/';
      const send = (body: unknown) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(typeof body === 'string' ? body : JSON.stringify(body));
      };
      switch (path) {
        case '/mismatch.json':
          return send(doc(path, { client_id: `${base}/other.json` }));
        case '/no-client-id.json':
          return send(doc(path, { client_id: undefined }));
        case '/secret.json':
          return send(doc(path, { client_secret: 'shh' }));
        case '/expiring-secret.json':
          return send(doc(path, { client_secret_expires_at: 0 }));
        case '/basic.json':
          return send(doc(path, { token_endpoint_auth_method: 'client_secret_basic' }));
        case '/javascript.json':
          return send(doc(path, { redirect_uris: ['javascript:alert(1)'] }));
        case '/http-redirect.json':
          return send(doc(path, { redirect_uris: ['http://attacker.test/cb'] }));
        case '/wildcard.json':
          return send(doc(path, { redirect_uris: ['https://*.attacker.test/cb'] }));
        case '/bad-type.json':
          return send(doc(path, { redirect_uris: 'https://client.example/cb' }));
        case '/big.json':
          return send(doc(path, { padding: 'x'.repeat(10_000) }));
        case '/not-json.json':
          return send('<html>hello</html>');
        case '/redirect.json':
          res.writeHead(302, { location: 'http://169.254.169.254/latest/meta-data' });
          return res.end();
        default:
          res.writeHead(404);
          return res.end();
      }
    });
    await new Promise<void>((r) => docs.listen(port, '127.0.0.1', r));
    shipped = await startSuiteServer();
    dev = await startSuiteServer({ client_id_metadata_documents: { allow_loopback: true, timeout_ms: 1000 } });
  });
  after(async () => {
    await shipped.close();
    await dev.close();
    docs.closeAllConnections();
    await new Promise((r) => docs.close(r));
  });

  let target: () => TestAuthServer = () => shipped;
  const authorize = async (clientId: string) => {
    const query = new URLSearchParams({ response_type: 'code', client_id: clientId, redirect_uri: LOOPBACK_REDIRECT, code_challenge: pkcePair().challenge, code_challenge_method: 'S256', scope: 'mcp:read' });
    return oauth(await fetch(`${target().issuer}/authorize?${query}`, { redirect: 'manual', headers: { accept: 'application/json' } }));
  };
  const onShipped = (name: string, clientId: string, auditReason: string | RegExp): AttackCase => ({
    name,
    attack: () => {
      target = () => shipped;
      return authorize(clientId);
    },
    status: 400,
    error: 'invalid_client',
    auditReason,
  });
  const blocked = (clientId: string, address: string) =>
    onShipped(`a document on ${address}`, clientId, `fetching ${clientId}: ${new URL(clientId).hostname} resolves to the non-public address ${address}`);
  const served = (name: string, path: string, auditReason: (clientId: string) => string | RegExp): AttackCase => ({
    name,
    attack: () => {
      target = () => dev;
      return authorize(`${base}${path}`);
    },
    status: 400,
    error: 'invalid_client',
    // Built lazily: the docs server's port is known only once it listens.
    get auditReason() {
      return auditReason(`${base}${path}`);
    },
  });

  const cases: AttackCase[] = [
    onShipped('an http document URL (not a metadata client; unknown)', 'http://client.example/doc.json', 'client_id=http://client.example/doc.json'),
    blocked('https://127.0.0.1/client.json', '127.0.0.1'),
    blocked('https://10.0.0.8/client.json', '10.0.0.8'),
    blocked('https://172.16.5.4/client.json', '172.16.5.4'),
    blocked('https://192.168.1.1/client.json', '192.168.1.1'),
    blocked('https://169.254.169.254/latest/meta-data.json', '169.254.169.254'),
    blocked('https://100.64.0.1/client.json', '100.64.0.1'),
    blocked('https://0.0.0.0/client.json', '0.0.0.0'),
    blocked('https://224.0.0.1/client.json', '224.0.0.1'),
    blocked('https://[::1]/client.json', '::1'),
    blocked('https://[fd00::1]/client.json', 'fd00::1'),
    blocked('https://[fe80::1]/client.json', 'fe80::1'),
    blocked('https://[::ffff:7f00:1]/client.json', '::ffff:7f00:1'),
    blocked('https://[64:ff9b::a00:1]/client.json', '64:ff9b::a00:1'),
    onShipped('loopback in decimal form', 'https://2130706433/client.json', 'fetching https://2130706433/client.json: 127.0.0.1 resolves to the non-public address 127.0.0.1'),
    onShipped('a name that resolves to loopback', 'https://localhost/client.json', /^fetching https:\/\/localhost\/client\.json: localhost resolves to the non-public address (127\.0\.0\.1|::1)$/),
    onShipped('a loopback document while loopback is off', 'http://127.0.0.1:9/client.json', 'client_id=http://127.0.0.1:9/client.json'),
    onShipped('no path', 'https://client.example', 'client_id URL must have a path and no fragment, credentials or dot segments'),
    onShipped('a fragment', 'https://client.example/c.json#frag', 'client_id URL must have a path and no fragment, credentials or dot segments'),
    onShipped('credentials', 'https://user:pw@client.example/c.json', 'client_id URL must have a path and no fragment, credentials or dot segments'),
    onShipped('dot segments', 'https://client.example/a/../c.json', 'client_id URL must have a path and no fragment, credentials or dot segments'),
    onShipped('encoded dot segments', 'https://client.example/a/%2e%2e/c.json', 'client_id URL must have a path and no fragment, credentials or dot segments'),
    served('a document naming another client_id', '/mismatch.json', (id) => `document client_id ${JSON.stringify(id.replace('mismatch', 'other'))} differs from its URL`),
    served('a document without client_id', '/no-client-id.json', () => 'document client_id undefined differs from its URL'),
    served('a document carrying a client secret', '/secret.json', () => 'document must not contain a client secret'),
    served('a document carrying client_secret_expires_at', '/expiring-secret.json', () => 'document must not contain a client secret'),
    served('a document asking for client_secret_basic', '/basic.json', () => 'a metadata document client authenticates with none or private_key_jwt only'),
    served('a document with a javascript: redirect URI', '/javascript.json', () => 'redirect_uri "javascript:alert(1)" uses the forbidden scheme javascript:'),
    served('a document with an http redirect URI', '/http-redirect.json', () => 'redirect_uri "http://attacker.test/cb" must use https unless it is a loopback address'),
    served('a document with a wildcard redirect URI', '/wildcard.json', () => 'redirect_uri "https://*.attacker.test/cb" must not contain a wildcard'),
    served('a document with metadata of the wrong type', '/bad-type.json', () => /^invalid metadata: /),
    served('a document over the size limit', '/big.json', (id) => new RegExp(`^fetching ${id.replace(/[.]/g, '\\.')}: `)),
    served('a document that is not JSON', '/not-json.json', (id) => `${id} is not JSON`),
    served('a document that redirects (to a metadata service)', '/redirect.json', (id) => `${id} answered with a redirect, which is not followed`),
    served('a missing document', '/missing.json', (id) => `${id} answered HTTP 404`),
  ];
  runCases(cases, combinedAudit([asAudit(() => shipped), asAudit(() => dev)]));
});
