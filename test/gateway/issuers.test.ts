/**
 * Several authorization servers per route (issue 18 part 3): the configuration rules that keep
 * the choice of issuer unambiguous, the single-issuer form as a list of one, the choice of an
 * introspection issuer for opaque tokens (by token_prefix: one AS per token), and per-issuer
 * revocation lists. The HTTP behaviour on both runtimes is in blackbox/issuers.test.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { routeAuthorizationServers, routeIssuers, routeSchema, type RouteConfig } from '../../src/config/gateway-schema.ts';
import { compileRoute } from '../../src/gateway/route.ts';
import { UnknownIssuerError, unverifiedIssuer } from '../../src/gateway/issuers.ts';
import { compileEdgeConfig } from '../../src/cli/edge-config.ts';
import { startFakeIssuer } from '../helpers/gateway.ts';

const base = { path: '/mcp', upstream: 'http://127.0.0.1:1/', resource: 'https://gw.example/mcp' };
const A = 'https://a.example';
const B = 'https://b.example';
const introspection = { client_id: 'gw', client_secret_env: 'SECRET' };

/** The messages of the schema's refusal, as `path: message`. */
function refusals(input: Record<string, unknown>): string[] {
  const result = routeSchema.safeParse({ ...base, ...input });
  assert.equal(result.success, false, 'refused');
  return result.error!.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
}

describe('several authorization servers: configuration', () => {
  it('the single-issuer form is a list of one: token.issuer or the first authorization server, the route resource as audience, no subject prefix', () => {
    const route = routeSchema.parse({ ...base, authorization_servers: [A, B] });
    const [only, ...rest] = routeIssuers(route);
    assert.equal(rest.length, 0);
    assert.deepEqual([only!.issuer, only!.audience, only!.mode, only!.subject_prefix], [A, base.resource, 'jwt', '']);
    assert.deepEqual(routeAuthorizationServers(route), [A, B], 'published as written');
    assert.equal(routeIssuers(routeSchema.parse({ ...base, authorization_servers: [A], token: { issuer: B } }))[0]!.issuer, B);
  });

  it('issuers: defaults (audience = the resource, mode jwt, subjects "<issuer>#" with several); authorization_servers derived in order', () => {
    const route = routeSchema.parse({ ...base, issuers: [{ issuer: B, audience: 'https://b.example/aud' }, { issuer: A, subject_prefix: '' }] });
    assert.deepEqual(
      routeIssuers(route).map((entry) => [entry.issuer, entry.audience, entry.mode, entry.subject_prefix]),
      [
        [B, 'https://b.example/aud', 'jwt', `${B}#`],
        [A, base.resource, 'jwt', ''],
      ],
    );
    assert.deepEqual(routeAuthorizationServers(route), [B, A]);
    // One issuer in the list: no prefix, as in the single-issuer form.
    assert.equal(routeIssuers(routeSchema.parse({ ...base, issuers: [{ issuer: A }] }))[0]!.subject_prefix, '');
    // authorization_servers may restate them, in another order: that order is published.
    assert.deepEqual(routeAuthorizationServers(routeSchema.parse({ ...base, issuers: [{ issuer: A }, { issuer: B }], authorization_servers: [B, A] })), [B, A]);
  });

  it('refuses what would make the choice ambiguous or silently ignored, naming the fix', () => {
    assert.deepEqual(refusals({}), ['authorization_servers: a route needs authorization_servers (one issuer, validated as `token` says) or issuers (several)']);
    assert.deepEqual(refusals({ issuers: [{ issuer: A }], token: { mode: 'introspection' } }), ['token: a route with issuers sets token validation per issuer: move these token keys into the issuers entries']);
    assert.deepEqual(refusals({ issuers: [{ issuer: A }, { issuer: A }] }), ['issuers.1.issuer: issuer https://a.example is listed twice', 'issuers.1.subject_prefix: issuers 0 and 1 have the same subject_prefix "https://a.example#": their users would share subjects']);
    assert.deepEqual(refusals({ issuers: [{ issuer: A }, { issuer: B }], authorization_servers: [A] }), ['authorization_servers: with issuers, authorization_servers must list the same issuers (in the order to publish), or be left out']);
    assert.deepEqual(refusals({ issuers: [{ issuer: A }, { issuer: B }], authorization_servers: [A, 'https://c.example'] }), ['authorization_servers: with issuers, authorization_servers must list the same issuers (in the order to publish), or be left out']);
    assert.deepEqual(refusals({ issuers: [{ issuer: A, subject_prefix: '' }, { issuer: B, subject_prefix: '' }] }), ['issuers.1.subject_prefix: issuers 0 and 1 have the same subject_prefix "": their users would share subjects']);
    assert.deepEqual(refusals({ issuers: [{ issuer: A, mode: 'introspection' }] }), ['issuers.0.introspection: mode introspection needs introspection (client_id, client_secret_env)']);
    assert.deepEqual(refusals({ issuers: [{ issuer: A, mode: 'introspection', introspection, revocation_list: introspection }] }), ['issuers.0.revocation_list: revocation_list is for jwt mode: introspection already tells revoked tokens']);
    assert.deepEqual(refusals({ issuers: [{ issuer: A, token_prefix: 'a_' }] }), ['issuers.0.token_prefix: token_prefix is for introspection mode (opaque tokens); JWTs are chosen by their iss']);
    assert.deepEqual(refusals({ issuers: [{ issuer: A, mode: 'introspection', introspection }, { issuer: B, mode: 'introspection', introspection }] }), [
      'issuers.1.token_prefix: issuers 0, 1 introspect opaque tokens without token_prefix: give all of them but one a token_prefix, so that each opaque token goes to one authorization server only',
    ]);
    assert.deepEqual(refusals({ issuers: [{ issuer: A, mode: 'introspection', introspection, token_prefix: 'tok_' }, { issuer: B, mode: 'introspection', introspection, token_prefix: 'tok_b_' }] }), [
      'issuers.1.token_prefix: token_prefix "tok_b_" overlaps issuers[0]\'s "tok_": a token would match both',
    ]);
    assert.deepEqual(refusals({ issuers: [{ issuer: A }], mediation: { client_id: 'gw', client_secret_env: 'S', resource: 'https://up.example/', issuer: B } }), ["mediation.issuer: mediation.issuer https://b.example is not one of the route's issuers"]);
    assert.deepEqual(refusals({ authorization_servers: [A], mediation: { client_id: 'gw', client_secret_env: 'S', resource: 'https://up.example/', issuer: B } }), ["mediation.issuer: mediation.issuer must be the route's issuer (https://a.example)"]);
  });

  it('mandate gateway edge-config lists the secrets of every issuer (revocation lists, introspection clients)', () => {
    const edge = compileEdgeConfig(
      {
        routes: [
          {
            ...base,
            issuers: [
              { issuer: A, revocation_list: { client_id: 'gw', client_secret_env: 'A_FEED_SECRET' } },
              { issuer: B, mode: 'introspection', introspection: { client_id: 'gw', client_secret_env: 'B_INTROSPECTION_SECRET' } },
            ],
          },
        ],
      },
      'test',
    );
    assert.deepEqual(edge.secrets, ['A_FEED_SECRET', 'B_INTROSPECTION_SECRET']);
  });

  it("reads a JWT's iss without verifying it, and tells opaque tokens apart", () => {
    const jwt = (payload: unknown) => `${Buffer.from('{"alg":"ES256"}').toString('base64url')}.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.c2ln`;
    assert.equal(unverifiedIssuer(jwt({ iss: A, sub: 'x' })), A);
    assert.equal(unverifiedIssuer(jwt({ sub: 'x' })), null, 'a JWT without iss');
    assert.equal(unverifiedIssuer(jwt({ iss: 42 })), null, 'a non-string iss is no issuer');
    assert.equal(unverifiedIssuer(jwt([A])), undefined, 'not a claims object');
    assert.equal(unverifiedIssuer('opaque-token'), undefined);
    assert.equal(unverifiedIssuer('not.a.jwt'), undefined, 'three parts, but the payload is not JSON');
    assert.equal(unverifiedIssuer(`${jwt({ iss: A })}.extra`), undefined, 'four parts');
  });
});

describe('several authorization servers: choosing the introspection issuer of an opaque token', () => {
  let a: Awaited<ReturnType<typeof startFakeIssuer>>;
  let b: Awaited<ReturnType<typeof startFakeIssuer>>;
  let route: ReturnType<typeof compileRoute>;
  const exp = () => Math.floor(Date.now() / 1000) + 60;

  before(async () => {
    [a, b] = await Promise.all([startFakeIssuer(), startFakeIssuer()]);
    const config: RouteConfig = routeSchema.parse({
      ...base,
      issuers: [
        { issuer: a.issuer, mode: 'introspection', introspection: { ...introspection, client_secret_env: 'A_SECRET' }, token_prefix: 'ata_' },
        { issuer: b.issuer, mode: 'introspection', introspection: { ...introspection, client_secret_env: 'B_SECRET' }, token_prefix: 'btb_' },
      ],
    });
    route = compileRoute(config, 0, { env: { A_SECRET: 'a', B_SECRET: 'b' } });
  });
  after(async () => {
    route?.close();
    await Promise.all([a?.close(), b?.close()]);
  });

  it('each prefix goes to its own issuer, and only there', async () => {
    a.introspection.set('ata_1', { active: true, iss: a.issuer, sub: 'u', aud: base.resource, exp: exp() });
    b.introspection.set('btb_1', { active: true, iss: b.issuer, sub: 'u', aud: base.resource, exp: exp() });
    const claimsA = await route.validator.validate('ata_1');
    assert.equal(route.validator.issuerOf(claimsA)?.issuer, a.issuer);
    assert.deepEqual([a.introspectionHits, b.introspectionHits], [1, 0]);
    const claimsB = await route.validator.validate('btb_1');
    assert.equal(route.validator.issuerOf(claimsB)?.subjectPrefix, `${b.issuer}#`);
    assert.deepEqual([a.introspectionHits, b.introspectionHits], [1, 1]);
    // Cached by its issuer: no second call.
    assert.equal(await route.validator.validate('ata_1'), claimsA);
    assert.deepEqual([a.introspectionHits, b.introspectionHits], [1, 1]);
  });

  it("a token of B's prefix that A would accept is still asked of B only (and B says inactive)", async () => {
    a.introspection.set('btb_stolen', { active: true, iss: a.issuer, sub: 'u', aud: base.resource, exp: exp() });
    const before = [a.introspectionHits, b.introspectionHits];
    await assert.rejects(route.validator.validate('btb_stolen'), { code: 'invalid_token', reason: 'inactive' });
    assert.deepEqual([a.introspectionHits, b.introspectionHits], [before[0], before[1]! + 1]);
  });

  it('an opaque token no prefix claims, with no issuer taking the rest: invalid_token, no introspection call anywhere', async () => {
    const before = [a.introspectionHits, b.introspectionHits];
    await assert.rejects(route.validator.validate('zzz_1'), (error: unknown) => {
      assert.ok(!(error instanceof UnknownIssuerError));
      assert.deepEqual([(error as { code: string }).code, (error as { reason: string }).reason], ['invalid_token', 'not a JWT, and no issuer of this route introspects opaque tokens']);
      return true;
    });
    assert.deepEqual([a.introspectionHits, b.introspectionHits], before);
  });

  it('a JWT naming another issuer is refused as unknown_issuer (UnknownIssuerError), with no call', async () => {
    const before = [a.introspectionHits, b.introspectionHits];
    const foreign = await startFakeIssuer();
    try {
      const token = await foreign.sign({ sub: 'u', aud: base.resource });
      await assert.rejects(route.validator.validate(token), (error: unknown) => error instanceof UnknownIssuerError && error.reason === `iss "${foreign.issuer}" is not a trusted issuer of this route`);
      // A JWT naming B goes to B's introspection (its iss chooses), whatever its prefix.
      const named = await b.sign({ sub: 'u', aud: base.resource });
      await assert.rejects(route.validator.validate(named), { code: 'invalid_token', reason: 'inactive' });
      assert.deepEqual([a.introspectionHits, b.introspectionHits], [before[0], before[1]! + 1]);
    } finally {
      await foreign.close();
    }
  });
});

describe('several authorization servers: revocation lists per issuer', () => {
  it('each JWT issuer with a revocation_list gets its own list; a missing secret names the issuer entry', () => {
    const config: RouteConfig = routeSchema.parse({
      ...base,
      issuers: [
        { issuer: A, revocation_list: { client_id: 'gw', client_secret_env: 'SECRET' } },
        { issuer: B, revocation_list: { client_id: 'gw', client_secret_env: 'SECRET', endpoint: 'https://b.example/feed' } },
      ],
    });
    const route = compileRoute(config, 0, {
      env: { SECRET: 's' },
      fetch: async () => new Response(null, { status: 503 }),
    });
    try {
      const [first, second] = route.validator.issuers;
      assert.ok(first!.revocations && second!.revocations && first!.revocations !== second!.revocations);
      assert.equal(route.revocations, first!.revocations, "the route's list is its first issuer's");
      assert.equal(first!.revocations.loaded, false, 'fails closed until its first load');
    } finally {
      route.close();
    }
    assert.throws(() => compileRoute(config, 0, { env: {} }), /routes\[0\] \(\/mcp\) issuers\[0\] revocation_list: environment variable SECRET is not set/);
  });
});
