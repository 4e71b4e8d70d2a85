import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { adminAccess } from '../helpers/admin.ts';
import { startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';

/** `{"a":{"a":…}}`, `levels` objects deep, as text. */
const nested = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
/** `[[[…]]]`: 20k levels fit in 40 kB, under the default 64 kB body limit. */
const arrays = (levels: number) => `${'['.repeat(levels)}${']'.repeat(levels)}`;
/** Client metadata whose extra member nests `levels` objects (the metadata itself is one more). */
const metadataWith = (levels: number) => `{"client_name":"deep","redirect_uris":["http://127.0.0.1:9/cb"],"token_endpoint_auth_method":"none","x":${nested(levels)}}`;

const postJson = async (url: string, body: string, headers: Record<string, string> = {}, method = 'POST') => {
  const res = await fetch(url, { method, headers: { 'content-type': 'application/json', ...headers }, body });
  return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
};

/** A GET with an Authorization header sent twice, each on its own line. */
function getTwice(url: string, authorization: string): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; json: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    // An array value is sent as one header line per element.
    const headers: Record<string, string | string[]> = { authorization: [authorization, authorization] };
    const req = httpRequest({ host: target.hostname, port: target.port, path: target.pathname, headers }, (res) => {
      let text = '';
      res.on('data', (chunk: Buffer) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, json: JSON.parse(text) as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end();
  });
}

/**
 * Issue 11, items 11 and 13, on the authorization server: every JSON body within a depth and
 * size limit (400 `invalid_client_metadata` / `invalid_request`, 413), never a 500; one bearer
 * credential per request (RFC 6750 §3.1).
 */
describe('authorization server: JSON body limits and one bearer credential', () => {
  let as: TestAuthServer;
  let small: TestAuthServer;
  let adminToken: string;

  before(async () => {
    as = await startTestAuthServer();
    small = await startTestAuthServer({ request_limits: { max_json_depth: 4, max_body_bytes: 2048 } });
    adminToken = (await adminAccess(as)).accessToken;
  });
  after(async () => {
    await as.close();
    await small.close();
  });

  /** The newest refusal of this type whose reason matches (events carry error and reason). */
  const refusal = async (server: TestAuthServer, type: string, reason: string) => {
    await server.ctx.audit.flush();
    return (await server.store.audit.list({ type })).find((event) => event.reason === reason);
  };

  describe('item 11: depth and size', () => {
    it('/register with metadata nested 20k levels: 400 invalid_client_metadata, audited, never 500', async () => {
      const res = await postJson(`${as.issuer}/register`, `{"client_name":"deep","redirect_uris":["http://127.0.0.1:9/cb"],"x":${arrays(20_000)}}`);
      assert.equal(res.status, 400);
      assert.equal(res.json.error, 'invalid_client_metadata');
      const event = await refusal(as, 'register.refused', 'JSON nested deeper than 32 levels');
      assert.ok(event, 'the refusal is audited with the reason');
      assert.equal(event.error, 'invalid_client_metadata');
    });

    it('/aiagent/register with deep metadata: 400 invalid_client_metadata', async () => {
      const res = await postJson(`${as.issuer}/aiagent/register`, `{"client_name":"deep agent","redirect_uris":["http://127.0.0.1:9/cb"],"x":${arrays(20_000)}}`);
      assert.equal(res.status, 400);
      assert.equal(res.json.error, 'invalid_client_metadata');
      assert.equal((await refusal(as, 'aiagent.refused', 'JSON nested deeper than 32 levels'))?.error, 'invalid_client_metadata');
    });

    it('request_limits.max_json_depth is configurable: at the limit registers, one deeper is refused', async () => {
      const ok = await postJson(`${small.issuer}/register`, metadataWith(3));
      assert.equal(ok.status, 201, JSON.stringify(ok.json));
      const refused = await postJson(`${small.issuer}/register`, metadataWith(4));
      assert.equal(refused.status, 400);
      assert.equal(refused.json.error, 'invalid_client_metadata');
      assert.ok(await refusal(small, 'register.refused', 'JSON nested deeper than 4 levels'));
    });

    it('request_limits.max_body_bytes: a larger body is 413 invalid_request', async () => {
      const res = await postJson(`${small.issuer}/register`, JSON.stringify({ client_name: 'x'.repeat(4096), redirect_uris: ['http://127.0.0.1:9/cb'] }));
      assert.equal(res.status, 413);
      assert.equal(res.json.error, 'invalid_request');
      assert.equal((await refusal(small, 'register.refused', 'the request body is too large'))?.error, 'invalid_request');
    });

    it('malformed JSON and a number out of range: 400 invalid_client_metadata with the detail in the audit', async () => {
      const broken = await postJson(`${as.issuer}/register`, '{"client_name":');
      assert.equal(broken.status, 400);
      assert.equal(broken.json.error, 'invalid_client_metadata');
      await as.ctx.audit.flush();
      const events = await as.store.audit.list({ type: 'register.refused' });
      assert.ok(events.some((event) => /^not JSON: /.test(String(event.reason))));
      const huge = await postJson(`${as.issuer}/register`, '{"client_name":"n","redirect_uris":["http://127.0.0.1:9/cb"],"x":1e400}');
      assert.equal(huge.status, 400);
      assert.equal(huge.json.error, 'invalid_client_metadata');
      assert.ok(await refusal(as, 'register.refused', 'a number is out of range (RFC 8259 §6)'));
    });

    it('the admin API: a deep JSON body is 400 invalid_request', async () => {
      const res = await postJson(`${as.issuer}/admin/api/v1/resources`, `{"definition":{"id":"https://deep.example","name":"deep","claims":${arrays(20_000)}}}`, { authorization: `Bearer ${adminToken}` });
      assert.equal(res.status, 400);
      assert.equal(res.json.error, 'invalid_request');
      assert.equal((await refusal(as, 'admin.refused', 'JSON nested deeper than 32 levels'))?.error, 'invalid_request');
    });
  });

  describe('item 13: one bearer credential per request', () => {
    it('two Authorization headers (each valid alone): 400 invalid_request', async () => {
      const once = await fetch(`${as.issuer}/admin/api/v1/agents`, { headers: { authorization: `Bearer ${adminToken}` } });
      assert.equal(once.status, 200);
      const res = await getTwice(`${as.issuer}/admin/api/v1/agents`, `Bearer ${adminToken}`);
      assert.equal(res.status, 400);
      assert.equal(res.json.error, 'invalid_request');
      assert.match(String(res.headers['www-authenticate']), /error="invalid_request"/);
      assert.equal((await refusal(as, 'admin.refused', 'more than one Authorization header'))?.error, 'invalid_request');
    });

    it('a token in the header and in the query: 400 invalid_request', async () => {
      const res = await fetch(`${as.issuer}/tokeninfo?access_token=abc`, { headers: { authorization: 'Bearer abc' } });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
      assert.equal((await refusal(as, 'tokeninfo.refused', 'a token in both the Authorization header and the query'))?.error, 'invalid_request');
    });

    it('a token in the header and in the form body: 400 invalid_request', async () => {
      const res = await fetch(`${as.issuer}/userinfo`, { method: 'POST', headers: { authorization: 'Bearer abc', 'content-type': 'application/x-www-form-urlencoded' }, body: 'access_token=abc' });
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { error: string }).error, 'invalid_request');
      assert.equal((await refusal(as, 'userinfo.refused', 'a token in both the Authorization header and the body'))?.error, 'invalid_request');
    });
  });
});
