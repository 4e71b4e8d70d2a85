import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { createAuthServerApp } from '../../src/auth-server/app.ts';
import { GRANT_TYPES, TOKEN_ENDPOINT_AUTH_METHODS, clientMetadataSchema } from '../../src/core/client-metadata.ts';
import { assertValidRedirectUri } from '../../src/core/redirect-uri.ts';
import { startTestAuthServer, type TestAuthServer } from '../helpers/auth-server.ts';
import { counted } from './count.ts';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
// A registration is a database write (~10 ms with the store growing): a fifth of the runs.
const ENDPOINT_RUNS = Math.max(60, Math.floor(RUNS / 5));

/** Mostly a good value, sometimes anything: so that valid registrations are common and each bad member is tried alone. */
const mostly = <T,>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<unknown>) => fc.oneof({ arbitrary: good, weight: 8 }, { arbitrary: bad, weight: 1 });
const goodRedirect = fc.constantFrom('https://client.example/cb', 'http://127.0.0.1:4000/cb', 'http://localhost/cb', 'http://[::1]:8080/a?b=c', 'com.example.app:/cb');
const badRedirect = fc.oneof(
  fc.constantFrom('javascript:alert(1)', 'data:text/html,x', 'http://client.example/cb', 'https://*.example/cb', 'https://client.example/cb#f', '/relative', 'myapp:/cb', 'file:///etc/passwd', '', 'http://127.0.0.1.attacker.test/cb', 'https://client.example/cb#'),
  fc.webUrl({ withFragments: true, withQueryParameters: true }),
  fc.string(),
  fc.jsonValue(),
);
const anything = fc.oneof(fc.string(), fc.jsonValue());

/** Client metadata, mostly of the right shape, often with one bad member. */
const metadata = fc.record(
  {
    redirect_uris: mostly(fc.array(mostly(goodRedirect, badRedirect), { minLength: 1, maxLength: 3 }), anything),
    token_endpoint_auth_method: mostly(fc.constantFrom(...TOKEN_ENDPOINT_AUTH_METHODS), anything),
    grant_types: mostly(fc.subarray([...GRANT_TYPES]), fc.oneof(fc.subarray([...GRANT_TYPES, 'password', 'implicit']), anything)),
    response_types: mostly(fc.constant(['code']), fc.oneof(fc.subarray(['code', 'token', 'id_token']), anything)),
    client_name: mostly(fc.string({ maxLength: 40 }), fc.oneof(fc.string({ minLength: 201, maxLength: 300 }), anything)),
    scope: mostly(fc.constantFrom('mcp:read', 'mcp:read mcp:write', 'api:read'), fc.oneof(fc.constantFrom('openid', 'admin'), anything)),
    jwks_uri: mostly(fc.constant('https://client.example/jwks'), fc.oneof(fc.constant('http://client.example/jwks'), anything)),
    jwks: mostly(fc.constant({ keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y' }] }), anything),
    default_resource: mostly(fc.constant('https://mcp.example.test/mcp'), fc.oneof(fc.constant('https://attacker.test'), anything)),
    client_id: anything,
    client_secret: anything,
    authentication_policy: anything,
    logo_uri: mostly(fc.constant('https://client.example/logo.png'), fc.oneof(fc.constant('javascript:alert(1)'), anything)),
    extra: fc.jsonValue(),
  },
  { requiredKeys: [] },
);

/**
 * Client metadata (src/core/client-metadata.ts) and `/register`: the schema never throws; the
 * endpoint never answers 500, and what it stores has only valid redirect URIs, known grant types
 * and methods, the code response type, and no client_credentials (off by default).
 */
describe('fuzz: client metadata and /register', () => {
  let as: TestAuthServer;
  let app: ReturnType<typeof createAuthServerApp>;
  before(async () => {
    // Shipped registration policy, except the per-address limit and the client cap: thousands of
    // registrations from one address are the point here, not what the limiter would say.
    as = await startTestAuthServer({ registration: { client_credentials: false, rate_limit_per_minute: 10_000_000, max_clients: 10_000_000 } });
    // In-process requests: the same app, without a socket per input.
    app = createAuthServerApp(as.ctx, { adminToken: 'unused-admin-token-0123456789abcdef' });
  });
  after(async () => as.close());

  it('the schema never throws', () => {
    fc.assert(
      fc.property(fc.oneof(metadata, fc.jsonValue()), counted('metadata: schema', (value: unknown) => void clientMetadataSchema.safeParse(value))),
      { numRuns: RUNS },
    );
  });

  it('/register never answers 500 and never stores an invalid redirect URI', async () => {
    const body = fc.oneof(
      { arbitrary: metadata.map((m) => JSON.stringify(m)), weight: 6 },
      { arbitrary: fc.jsonValue().map((v) => JSON.stringify(v)), weight: 1 },
      { arbitrary: fc.string(), weight: 1 },
    );
    let created = 0;
    await fc.assert(
      fc.asyncProperty(
        body,
        fc.constantFrom('/register', '/aiagent/register'),
        counted('metadata: /register', async (text: string, path: string) => {
          const res = await app.request(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
          assert.ok(res.status < 500, `${res.status} for ${path} ${text}`);
          const json = (await res.json()) as Record<string, unknown>;
          if (res.status !== 201 && res.status !== 200) {
            assert.equal(typeof json.error, 'string');
            return;
          }
          created++;
          const record = (await as.store.clients.find(json.client_id as string))!;
          assert.ok(record, 'a registered client is stored');
          for (const source of [json, record.metadata as Record<string, unknown>]) {
            for (const uri of source.redirect_uris as string[]) assertValidRedirectUri(uri);
            for (const grant of source.grant_types as string[]) assert.ok((GRANT_TYPES as readonly string[]).includes(grant), grant);
            assert.ok((TOKEN_ENDPOINT_AUTH_METHODS as readonly string[]).includes(source.token_endpoint_auth_method as string));
            assert.ok((source.response_types as string[] | undefined ?? []).every((r) => r === 'code'));
            assert.equal(source.authentication_policy, undefined, 'a registrant cannot pick an authentication policy');
          }
          if (path === '/register') assert.ok(!(record.metadata.grant_types as string[]).includes('client_credentials'), 'client_credentials is off by default');
          assert.notEqual(json.client_id, JSON.parse(text)?.client_id ?? Symbol('none'), 'the server chooses the client_id');
        }),
      ),
      // One valid registration always runs, so the check below cannot fail on a random draw that
      // happened to hold none (the random ones are mostly refusals).
      { numRuns: ENDPOINT_RUNS, examples: [[JSON.stringify({ client_name: 'fuzz', redirect_uris: ['https://client.example/cb'] }), '/register']] },
    );
    assert.ok(created > 0, 'some inputs are valid registrations');
  });
});
