/**
 * The gateway as a black box, on the Node gateway and on the Worker in workerd (issue 16): request
 * validation (MCP Streamable HTTP, JSON-RPC 2.0) and protection (RFC 6750, RFC 9068, RFC 9728).
 * Every refusal is asserted the same way on both targets: status, JSON-RPC code, and the audit
 * event's rejection and reason. One gateway per target for the whole file.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { SignJWT, generateKeyPair } from 'jose';
import { listedTools, mcpPost, startFakeIssuer, startScriptedUpstream, toolCall } from '../../helpers/gateway.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type TargetGateway } from '../../helpers/gateway-targets.ts';

const MAX_BODY = 2048;
const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

for (const target of targets) {
  describe(`black box [${target}]: validation and protection`, onTarget(target), () => {
    let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
    let downIssuer: Awaited<ReturnType<typeof startFakeIssuer>>;
    let upstream: Awaited<ReturnType<typeof startScriptedUpstream>>;
    let gateway: TargetGateway;
    let resource: string;
    let metadataUrl: string;
    let good: Record<string, unknown>;

    before(async () => {
      issuer = await startFakeIssuer();
      downIssuer = await startFakeIssuer();
      downIssuer.setUp(false);
      upstream = await startScriptedUpstream();
      gateway = await startGatewayOn(target, (origin) => [
        {
          path: '/mcp',
          upstream: upstream.url,
          resource: `${origin}/mcp`,
          resource_name: 'Black box',
          authorization_servers: [issuer.issuer],
          scopes: ['banking:read'],
          max_body_bytes: MAX_BODY,
          tools: { ...listedTools(), transfer: { scopes: ['banking:transfer'] } },
        },
        {
          path: '/introspected',
          upstream: upstream.url,
          resource: `${origin}/introspected`,
          authorization_servers: [issuer.issuer],
          tools: listedTools(),
          token: { mode: 'introspection', introspection: { client_id: 'gateway', client_secret_env: 'BB_INTROSPECTION_SECRET', negative_cache_seconds: 1 } },
        },
        // Its issuer is down from the start: no key set was ever fetched.
        { path: '/keyless', upstream: upstream.url, resource: `${origin}/keyless`, authorization_servers: [downIssuer.issuer], tools: listedTools() },
      ], { secrets: { BB_INTROSPECTION_SECRET: 'introspection-secret' } });
      resource = `${gateway.url}/mcp`;
      metadataUrl = `${gateway.url}/.well-known/oauth-protected-resource/mcp`;
      good = { sub: 'alice', aud: resource, client_id: 'agent-1', scope: 'banking:read' };
    });
    after(async () => {
      await gateway?.stop();
      await upstream?.close();
      await issuer?.close();
      await downIssuer?.close();
    });

    const bearer = async (claims: Record<string, unknown> = {}) => ({ authorization: `Bearer ${await issuer.sign({ ...good, ...claims })}` });

    it('a valid call reaches the upstream, without the caller token', async () => {
      const res = await mcpPost(resource, toolCall('echo', { a: 1 }, 3), await bearer());
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(res.json, { result: { content: [{ type: 'text', text: '{"a":1}' }] }, jsonrpc: '2.0', id: 3 });
      assert.equal(upstream.requests.at(-1)!.headers.authorization, undefined);
      assert.equal(upstream.requests.at(-1)!.headers['x-request-id'], res.headers.get('x-request-id'));
    });

    describe('validation', () => {
      const call = toolCall('echo', {}, 11);
      const refusals: [string, () => Promise<Awaited<ReturnType<typeof mcpPost>>>, { status: number; code: number; rejection: string; reason: string | RegExp }][] = [
        [
          'a body that is not JSON',
          async () => mcpPost(resource, '{nope', await bearer()),
          // The parser's own message follows: its wording is the JavaScript engine's (V8's differs between Node 20 and workerd).
          { status: 400, code: -32700, rejection: 'malformed', reason: /^not JSON: .* at position 1\b/ },
        ],
        ['a message without jsonrpc 2.0', async () => mcpPost(resource, { id: 1, method: 'ping' }, await bearer()), { status: 400, code: -32600, rejection: 'malformed', reason: 'not a JSON-RPC 2.0 message' }],
        ['a JSON-RPC batch', async () => mcpPost(resource, [call, call], await bearer()), { status: 400, code: -32600, rejection: 'malformed', reason: 'JSON-RPC batches are not supported by MCP' }],
        ['tools/call without a name', async () => mcpPost(resource, { jsonrpc: '2.0', id: 1, method: 'tools/call', params: {} }, await bearer()), { status: 400, code: -32602, rejection: 'malformed', reason: 'tools/call needs params.name' }],
        [
          'a text/plain body',
          async () => mcpPost(resource, call, { ...(await bearer()), 'content-type': 'text/plain' }),
          { status: 415, code: -32600, rejection: 'unsupported_media_type', reason: 'Content-Type must be application/json' },
        ],
        [
          'an Accept without text/event-stream',
          async () => mcpPost(resource, call, { ...(await bearer()), accept: 'application/json' }),
          { status: 406, code: -32600, rejection: 'not_acceptable', reason: 'Accept must list application/json and text/event-stream' },
        ],
        [
          'a body over max_body_bytes (Content-Length)',
          async () => mcpPost(resource, toolCall('echo', { pad: 'a'.repeat(MAX_BODY) }), await bearer()),
          { status: 413, code: -32600, rejection: 'body_too_large', reason: `body larger than ${MAX_BODY} bytes` },
        ],
        [
          'an origin not on the list',
          async () => mcpPost(resource, call, { ...(await bearer()), origin: 'https://evil.example' }),
          { status: 403, code: -32600, rejection: 'origin_not_allowed', reason: 'origin not allowed' },
        ],
        [
          'an unsupported MCP-Protocol-Version',
          async () => mcpPost(resource, call, { ...(await bearer()), 'mcp-protocol-version': '1999-01-01' }),
          { status: 400, code: -32600, rejection: 'protocol_version', reason: 'unsupported MCP-Protocol-Version 1999-01-01' },
        ],
        [
          'JSON nested deeper than max_json_depth',
          async () => mcpPost(resource, toolCall('echo', { deep: JSON.parse('['.repeat(70) + ']'.repeat(70)) as unknown }), await bearer()),
          { status: 400, code: -32600, rejection: 'json_too_deep', reason: 'JSON nested deeper than 64 levels' },
        ],
        [
          'DELETE on the stateless revision (2026-07-28)',
          async () => {
            const res = await fetch(resource, { method: 'DELETE', headers: { ...(await bearer()), 'mcp-protocol-version': '2026-07-28' } });
            const text = await res.text();
            return { status: res.status, headers: res.headers, text, json: JSON.parse(text) as Record<string, unknown> };
          },
          { status: 405, code: -32600, rejection: 'method_not_allowed', reason: 'DELETE is not part of MCP 2026-07-28' },
        ],
        [
          'PUT',
          async () => {
            const res = await fetch(resource, { method: 'PUT', headers: await bearer(), body: '{}' });
            const text = await res.text();
            return { status: res.status, headers: res.headers, text, json: JSON.parse(text) as Record<string, unknown> };
          },
          { status: 405, code: -32600, rejection: 'method_not_allowed', reason: 'PUT is not an MCP method' },
        ],
      ];
      for (const [name, request, expected] of refusals) {
        it(`refuses ${name}: ${expected.status}, ${expected.code}, audited ${expected.rejection}`, async () => {
          const count = upstream.requests.length;
          await assertRefused(gateway, await request(), expected);
          assert.equal(upstream.requests.length, count, 'nothing reached the upstream');
        });
      }

      it('refuses a body over max_body_bytes sent without Content-Length (chunked), and audits it', async () => {
        const chunk = new TextEncoder().encode(JSON.stringify(toolCall('echo', { pad: 'b'.repeat(MAX_BODY) })));
        const body = new ReadableStream<Uint8Array>({
          start(controller) {
            controller.enqueue(chunk.slice(0, 100));
            controller.enqueue(chunk.slice(100));
            controller.close();
          },
        });
        const response = await fetch(resource, { method: 'POST', headers: { accept: 'application/json, text/event-stream', 'content-type': 'application/json', ...(await bearer()) }, body, duplex: 'half' } as RequestInit);
        const text = await response.text();
        await assertRefused(gateway, { status: response.status, headers: response.headers, text, json: JSON.parse(text) as Record<string, unknown> }, { status: 413, code: -32600, rejection: 'body_too_large', reason: `body larger than ${MAX_BODY} bytes` });
      });

      it('a refused message keeps its JSON-RPC id', async () => {
        const res = await mcpPost(resource, toolCall('echo', {}, 42), { ...(await bearer()), 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'transfer' });
        await assertRefused(gateway, res, { status: 400, code: -32020, rejection: 'header_mismatch', reason: 'Mcp-Name header "transfer" does not match the body "echo"' });
        assert.equal(res.json!.id, 42);
      });
    });

    describe('protection', () => {
      it('serves the protected resource metadata (RFC 9728 §3.1) at the path-inserted URL; not at the root when several routes could be meant', async () => {
        const res = await fetch(metadataUrl);
        assert.equal(res.status, 200);
        assert.equal(res.headers.get('access-control-allow-origin'), '*');
        assert.deepEqual(await res.json(), { resource, authorization_servers: [issuer.issuer], scopes_supported: ['banking:read', 'banking:transfer'], bearer_methods_supported: ['header'], resource_name: 'Black box' });
        assert.equal((await fetch(`${gateway.url}/.well-known/oauth-protected-resource`)).status, 404);
      });

      it('no token: 401 with resource_metadata and the scopes to ask for, audited no_token', async () => {
        const res = await mcpPost(resource, toolCall('read_balance', {}, 5));
        await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'no_token', reason: 'no Authorization header' });
        assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl}", scope="banking:read"`);
        assert.equal(res.json!.id, 5);
      });

      it('a tool that needs more scopes is challenged with them', async () => {
        const res = await mcpPost(resource, toolCall('transfer'));
        await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'no_token', reason: 'no Authorization header' });
        assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl}", scope="banking:read banking:transfer"`);
      });

      it('a Basic Authorization header: 401 invalid_request', async () => {
        const res = await mcpPost(resource, toolCall('read_balance'), { authorization: 'Basic YTpi' });
        await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'invalid_token', reason: 'Authorization is not a Bearer token' });
        assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl}", scope="banking:read", error="invalid_request"`);
      });

      const invalid: [string, () => Promise<string>, string][] = [
        ['a bad signature (another key under a known kid)', async () => issuer.sign(good, { key: (await generateKeyPair('ES256')).privateKey }), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
        ['a truncated signature', async () => (await issuer.sign(good)).slice(0, -10), 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
        ['alg none', async () => `${b64({ alg: 'none', typ: 'at+jwt', kid: 'k1' })}.${b64({ ...good, iss: issuer.issuer, exp: Math.floor(Date.now() / 1000) + 60 })}.`, 'ERR_JOSE_ALG_NOT_ALLOWED'],
        [
          'HS256 (a symmetric algorithm under the key id)',
          async () => new SignJWT({ ...good, iss: issuer.issuer, exp: Math.floor(Date.now() / 1000) + 60 }).setProtectedHeader({ alg: 'HS256', kid: 'k1', typ: 'at+jwt' }).sign(new TextEncoder().encode('0123456789abcdef0123456789abcdef')),
          'ERR_JOSE_ALG_NOT_ALLOWED',
        ],
        ['the wrong audience', () => issuer.sign({ ...good, aud: 'https://elsewhere.example/mcp' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
        ['an expired token', () => issuer.sign({ ...good, exp: Math.floor(Date.now() / 1000) - 60 }), 'ERR_JWT_EXPIRED'],
        ['a token not yet valid', () => issuer.sign({ ...good, nbf: Math.floor(Date.now() / 1000) + 120 }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
        ['typ JWT (an ID token, not an access token: RFC 9068 §4)', () => issuer.sign(good, { typ: 'JWT' }), 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
        ['no exp', () => issuer.sign({ ...good, exp: undefined }), 'no exp'],
        ['an unknown kid', () => issuer.sign(good, { kid: 'nobody' }), 'kid=nobody'],
        ['garbage', async () => 'not.a.jwt', 'ERR_JWS_INVALID'],
      ];
      for (const [name, make, reason] of invalid) {
        it(`401 invalid_token: ${name}, audited with the reason ${reason}`, async () => {
          const count = upstream.requests.length;
          const res = await mcpPost(resource, toolCall('read_balance'), { authorization: `Bearer ${await make()}` });
          await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'invalid_token', reason });
          assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl}", scope="banking:read", error="invalid_token"`);
          assert.equal(upstream.requests.length, count);
        });
      }

      it('401 invalid_token: the wrong issuer, audited unknown_issuer, refused before any key fetch', async () => {
        const [count, jwksHits] = [upstream.requests.length, issuer.jwksHits];
        const res = await mcpPost(resource, toolCall('read_balance'), { authorization: `Bearer ${await issuer.sign({ ...good, iss: 'https://evil.example' }, { kid: 'never-fetched' })}` });
        await assertRefused(gateway, res, { status: 401, code: -32001, rejection: 'unknown_issuer', reason: 'iss "https://evil.example" is not a trusted issuer of this route' });
        assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl}", scope="banking:read", error="invalid_token"`);
        assert.equal(upstream.requests.length, count);
        assert.equal(issuer.jwksHits, jwksHits, 'an unknown kid would have been fetched: the issuer is checked first');
      });

      it('403 insufficient_scope when the token lacks the route scope', async () => {
        const res = await mcpPost(resource, toolCall('read_balance'), await bearer({ scope: 'other' }));
        await assertRefused(gateway, res, { status: 403, code: -32003, rejection: 'insufficient_scope', reason: /banking:read/ });
        assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${metadataUrl}", scope="banking:read", error="insufficient_scope"`);
      });

      it('the AS key set cannot be fetched and no key is cached: 503 with Retry-After, never an open door', async () => {
        const keyless = `${gateway.url}/keyless`;
        const token = await downIssuer.sign({ ...good, aud: keyless });
        const res = await mcpPost(keyless, toolCall('read_balance'), { authorization: `Bearer ${token}` });
        await assertRefused(gateway, res, { status: 503, code: -32603, rejection: 'validation_unavailable', reason: /^signing key k1 is not among the cached keys, and the JWKS cannot be fetched: / });
        assert.equal(res.headers.get('retry-after'), '5');
      });

      describe('introspection (RFC 7662)', () => {
        const url = () => `${gateway.url}/introspected`;
        it('an active token for this resource goes through, the answer cached', async () => {
          issuer.introspection.set('opaque-good', { active: true, sub: 'bob', aud: url(), iss: issuer.issuer, client_id: 'c', scope: '', exp: Math.floor(Date.now() / 1000) + 60 });
          const hits = issuer.introspectionHits;
          assert.equal((await mcpPost(url(), toolCall('echo'), { authorization: 'Bearer opaque-good' })).status, 200);
          assert.equal((await mcpPost(url(), toolCall('echo'), { authorization: 'Bearer opaque-good' })).status, 200);
          assert.equal(issuer.introspectionHits, hits + 1);
        });
        it('an inactive token: 401 invalid_token, audited inactive', async () => {
          await assertRefused(gateway, await mcpPost(url(), toolCall('echo'), { authorization: 'Bearer opaque-revoked' }), { status: 401, code: -32001, rejection: 'invalid_token', reason: 'inactive' });
        });
        it('an active token for another audience: 401', async () => {
          issuer.introspection.set('opaque-other', { active: true, sub: 'bob', aud: 'https://other.example', exp: Math.floor(Date.now() / 1000) + 60 });
          await assertRefused(gateway, await mcpPost(url(), toolCall('echo'), { authorization: 'Bearer opaque-other' }), { status: 401, code: -32001, rejection: 'invalid_token', reason: 'aud "https://other.example"' });
        });
        it('the AS cannot answer: 503 (fail closed), Retry-After', async () => {
          issuer.setUp(false);
          try {
            const res = await mcpPost(url(), toolCall('echo'), { authorization: 'Bearer opaque-while-down' });
            await assertRefused(gateway, res, { status: 503, code: -32603, rejection: 'validation_unavailable', reason: /.+/ });
            assert.equal(res.headers.get('retry-after'), '5');
          } finally {
            issuer.setUp(true);
          }
        });
      });

      it('a token in the query as well: 400 invalid_request', async () => {
        const res = await mcpPost(`${resource}?access_token=x`, toolCall('read_balance'), await bearer());
        await assertRefused(gateway, res, { status: 400, code: -32600, rejection: 'invalid_request', reason: 'access_token in the query (only the Authorization header is accepted)' });
      });
    });
  });
}
