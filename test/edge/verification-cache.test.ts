/**
 * The verification caches shared by a gateway's instances (issue 16), on Node: the JWT validator
 * with a `SharedVerificationCache` (what it stores, for how long, under which key, and what it
 * takes back), `RemoteJwks` with a `KeySetCache`, and the Worker entry with a KV-shaped
 * `VERIFIED_TOKENS`: a token taken from KV still meets the revocation list. The same in workerd:
 * verification-cache-workerd.test.ts.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { readFileSync } from 'node:fs';
import { after, before, describe, it, mock } from 'node:test';
import type { JWK } from 'jose';
import { isOAuthError } from '../../src/core/errors.ts';
import { RemoteJwks } from '../../src/gateway/jwks.ts';
import { jwtValidator, issuerMetadata, type TokenValidator } from '../../src/gateway/token-validator.ts';
import { type KeySetCache, type SharedVerificationCache, type StoredKeySet, type VerifiedTokenKeyParts } from '../../src/gateway/verification-cache.ts';
import { EdgeCacheMac, parseEdgeCacheKey } from '../../src/gateway/workers/edge-cache-key.ts';
import { cacheApiKeySets, type CacheLike } from '../../src/gateway/workers/key-set-cache.ts';
import worker from '../../src/gateway/workers/index.ts';
import { DEFAULT_VERIFIED_TOKENS_MAX_TTL_SECONDS, kvVerifiedTokens, verifiedTokensMaxTtl, type KvNamespace } from '../../src/gateway/workers/verified-tokens.ts';
import { freePort } from '../helpers/auth-server.ts';
import { listedTools, MCP_HEADERS, startFakeIssuer, toolCall } from '../helpers/gateway.ts';

type Issuer = Awaited<ReturnType<typeof startFakeIssuer>>;
const AUDIENCE = 'https://gateway.test/mcp';
/** A test MANDATE_EDGE_CACHE_KEY (32 bytes, base64url), and another one. */
const CACHE_KEY = Buffer.alloc(32, 7).toString('base64url');
const OTHER_CACHE_KEY = Buffer.alloc(32, 8).toString('base64url');
const macOf = (secret = CACHE_KEY) => new EdgeCacheMac(parseEdgeCacheKey(secret)!);
/** The route's check as the validator below names it. */
const partsOf = (token: string, overrides: Partial<VerifiedTokenKeyParts> = {}): VerifiedTokenKeyParts => ({ issuer: '', audience: AUDIENCE, typ: 'at+jwt', algorithms: ['ES256'], token, ...overrides });

/** A shared cache in memory that records what it is asked, and can be made to fail. */
function memoryShared(options: { maxTtlSeconds?: number; fail?: boolean } = {}) {
  const entries = new Map<string, unknown>();
  const puts: { key: string; claims: Record<string, unknown>; ttl: number }[] = [];
  let gets = 0;
  const cache: SharedVerificationCache = {
    maxTtlSeconds: options.maxTtlSeconds ?? 300,
    minTtlSeconds: 60,
    key: (parts) => macOf().sign(['test', parts.issuer, parts.audience, parts.typ, parts.algorithms, parts.token]),
    get: (key) => {
      gets++;
      return options.fail ? Promise.reject(new Error('KV down')) : Promise.resolve(entries.get(key));
    },
    put: (key, claims, ttl) => {
      puts.push({ key, claims, ttl });
      if (options.fail) return Promise.reject(new Error('KV down'));
      entries.set(key, JSON.parse(JSON.stringify(claims)));
      return Promise.resolve();
    },
  };
  return { cache, entries, puts, gets: () => gets };
}

function validatorFor(issuer: Issuer, shared: SharedVerificationCache): TokenValidator {
  return jwtValidator({
    issuer: issuer.issuer,
    audience: AUDIENCE,
    jwksUri: `${issuer.issuer}/jwks`,
    metadata: issuerMetadata(issuer.issuer),
    algorithms: ['ES256'],
    typ: 'at+jwt',
    clockSkewSeconds: 5,
    refreshSeconds: 300,
    minRefreshSeconds: 10,
    cacheEntries: 100,
    schedule: 'on-use',
    shared,
  });
}

describe('the JWT validator with a shared verification cache', () => {
  let issuer: Issuer;
  before(async () => {
    issuer = await startFakeIssuer();
  });
  after(async () => {
    await issuer?.close();
  });

  const sign = (claims: Record<string, unknown> = {}) => issuer.sign({ sub: 'alice', aud: AUDIENCE, client_id: 'agent-1', ...claims });
  const now = () => Math.floor(Date.now() / 1000);

  it('puts a verified token under the key of (issuer, audience, typ, algorithms, token), for its remaining life at most the cap, through waitUntil', async () => {
    const shared = memoryShared({ maxTtlSeconds: 600 });
    const validator = validatorFor(issuer, shared.cache);
    const token = await sign({ exp: now() + 200 });
    const deferred: Promise<unknown>[] = [];
    const claims = await validator.validate(token, { waitUntil: (promise) => void deferred.push(promise) });
    assert.equal(claims.sub, 'alice');
    assert.equal(deferred.length, 2, "the key set's first load and the write are handed to waitUntil");
    await Promise.all(deferred);
    assert.equal(shared.puts.length, 1);
    const [put] = shared.puts as [(typeof shared.puts)[number]];
    assert.equal(put.key, await shared.cache.key(partsOf(token, { issuer: issuer.issuer })));
    assert.ok(!JSON.stringify(put).includes(token.split('.')[2]!), 'the token (its signature) is nowhere in the store');
    assert.ok(put.ttl >= 198 && put.ttl <= 200, `the token's remaining life (${put.ttl})`);
    assert.equal(put.claims.sub, 'alice');
    validator.close();
  });

  it('caps the entry at maxTtlSeconds, and puts nothing for a token with less than 60 s left', async () => {
    const shared = memoryShared({ maxTtlSeconds: 120 });
    const validator = validatorFor(issuer, shared.cache);
    await validator.validate(await sign({ exp: now() + 3600 }));
    assert.deepEqual(shared.puts.map((p) => p.ttl), [120]);
    await validator.validate(await sign({ exp: now() + 50 }));
    assert.equal(shared.puts.length, 1, 'the short-lived token is not put');
    validator.close();
  });

  it('an entry in the store stands for a verification: no key fetched, the stored claims returned', async () => {
    const shared = memoryShared();
    const validator = validatorFor(issuer, shared.cache);
    const token = await sign();
    shared.entries.set(await shared.cache.key(partsOf(token, { issuer: issuer.issuer })), { iss: issuer.issuer, aud: AUDIENCE, sub: 'from-store', exp: now() + 100 });
    const hits = issuer.jwksHits;
    assert.equal((await validator.validate(token)).sub, 'from-store');
    assert.equal(issuer.jwksHits, hits, 'no JWKS fetch: no signature was checked');
    assert.equal(shared.puts.length, 0);
    // Then it is in the validator's memory: the store is not asked again.
    await validator.validate(token);
    assert.equal(shared.gets(), 1);
    validator.close();
  });

  for (const [name, entry] of [
    ['expired', { exp: -1 }],
    ['expiring now', { exp: 0 }],
    ['not yet valid (nbf past the clock skew)', { nbf: 60 }],
    ['for another audience', { aud: 'https://other.test/mcp' }],
    ['from another issuer', { iss: 'https://other-issuer.test' }],
    ['without exp', { exp: undefined }],
    ['not an object', 'a string'],
  ] as const) {
    it(`an entry ${name} is not taken: the token is verified, its own claims returned`, async () => {
      const shared = memoryShared();
      const validator = validatorFor(issuer, shared.cache);
      const token = await sign();
      const base = { iss: issuer.issuer, aud: AUDIENCE, sub: 'from-store', exp: 100 };
      const value = typeof entry === 'string' ? entry : Object.fromEntries(Object.entries({ ...base, ...entry }).filter(([, v]) => v !== undefined).map(([k, v]) => [k, k === 'exp' || k === 'nbf' ? now() + (v as number) : v]));
      shared.entries.set(await shared.cache.key(partsOf(token, { issuer: issuer.issuer })), value);
      assert.equal((await validator.validate(token)).sub, 'alice');
      assert.equal(shared.puts.length, 1, 'the verification is put again');
      validator.close();
    });
  }

  it('a store that fails to read or write costs a verification, never a refusal', async () => {
    const shared = memoryShared({ fail: true });
    const validator = validatorFor(issuer, shared.cache);
    const deferred: Promise<unknown>[] = [];
    const claims = await validator.validate(await sign({ sub: 'bob' }), { waitUntil: (promise) => void deferred.push(promise) });
    assert.equal(claims.sub, 'bob');
    assert.equal(shared.gets(), 1);
    assert.equal(shared.puts.length, 1);
    await assert.doesNotReject(Promise.all(deferred), 'the failed write is not an unhandled rejection');
    validator.close();
  });

  // Security review of issue 16: whoever could write the store could mint an identity with a token of
  // their own making (unknown kid, so the store is read; typ JWT; a junk signature). The entry's key
  // now needs the Worker's secret (below); the header is checked again on a hit, whatever the store says.
  for (const [name, header] of [
    ['typ JWT (the route wants at+jwt)', { alg: 'ES256', kid: 'attacker', typ: 'JWT' }],
    ['no typ', { alg: 'ES256', kid: 'attacker' }],
    ['alg HS256 (not in the route\'s algorithms)', { alg: 'HS256', kid: 'attacker', typ: 'at+jwt' }],
  ] as const) {
    it(`a store vouching for a token whose header has ${name} is not believed: the token is verified and refused`, async () => {
      const shared = memoryShared();
      const lying: SharedVerificationCache = { ...shared.cache, get: () => Promise.resolve({ iss: issuer.issuer, aud: AUDIENCE, sub: 'admin', scope: 'banking:write', client_id: 'x', exp: now() + 3600 }) };
      const validator = validatorFor(issuer, lying);
      const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
      const token = `${b64(header)}.${b64({ sub: 'admin' })}.AAAA`;
      await assert.rejects(validator.validate(token), (error) => isOAuthError(error) && error.code === 'invalid_token');
      validator.close();
    });
  }

  it('a token the verification refuses is not put', async () => {
    const shared = memoryShared();
    const validator = validatorFor(issuer, shared.cache);
    const token = await sign({ exp: now() - 60 });
    await assert.rejects(validator.validate(token), (error) => isOAuthError(error) && error.code === 'invalid_token');
    assert.equal(shared.puts.length, 0);
    validator.close();
  });

  it('a token that is not a compact JWS is refused without a store read', async () => {
    const shared = memoryShared();
    const validator = validatorFor(issuer, shared.cache);
    await assert.rejects(validator.validate('not-a-jwt'), (error) => isOAuthError(error) && error.code === 'invalid_token');
    assert.equal(shared.gets(), 0);
    validator.close();
  });
});

/** A key set cache in memory that records what it is asked, and can be made to fail. */
function memoryKeySets(fail = false) {
  const sets = new Map<string, StoredKeySet>();
  const puts: { source: string; set: StoredKeySet; ttl: number }[] = [];
  const cache: KeySetCache = {
    get: (source) => (fail ? Promise.reject(new Error('cache down')) : Promise.resolve(sets.get(source))),
    put: (source, set, ttl) => {
      puts.push({ source, set, ttl });
      if (fail) return Promise.reject(new Error('cache down'));
      sets.set(source, set);
      return Promise.resolve();
    },
  };
  return { cache, sets, puts };
}

describe('RemoteJwks with a shared key set cache', () => {
  let issuer: Issuer;
  before(async () => {
    issuer = await startFakeIssuer();
  });
  after(async () => {
    await issuer?.close();
  });

  const jwksOf = (cache: KeySetCache, minRefreshMs = 0) => {
    const jwks = new RemoteJwks({ jwksUri: `${issuer.issuer}/jwks`, refreshMs: 300_000, minRefreshMs, schedule: 'on-use', shared: { cache, source: issuer.issuer } });
    jwks.start();
    return jwks;
  };
  const publicKeys = () => issuer.keys.map((key) => key.jwk) as JWK[];

  it('a cold set with a fresh stored set fetches nothing; a fetch writes the set with max-age = the refresh interval', async () => {
    const shared = memoryKeySets();
    const hits = issuer.jwksHits;
    const first = jwksOf(shared.cache);
    assert.ok(await first.byKid('k1'));
    assert.equal(issuer.jwksHits, hits + 1);
    assert.equal(shared.puts.length, 1);
    assert.equal(shared.puts[0]!.source, issuer.issuer);
    assert.equal(shared.puts[0]!.ttl, 300);
    assert.deepEqual(shared.puts[0]!.set.keys.map((k) => k.kid), ['k1']);
    const second = jwksOf(shared.cache);
    assert.ok(await second.byKid('k1'));
    assert.equal(issuer.jwksHits, hits + 1, 'the second set read the cache');
    first.stop();
    second.stop();
  });

  it('a stored set older than the refresh interval is fetched again', async () => {
    const shared = memoryKeySets();
    shared.sets.set(issuer.issuer, { keys: publicKeys(), fetchedAt: Date.now() - 301_000 });
    const hits = issuer.jwksHits;
    const jwks = jwksOf(shared.cache);
    assert.ok(await jwks.byKid('k1'));
    assert.equal(issuer.jwksHits, hits + 1);
    jwks.stop();
  });

  it('an unknown kid is fetched (not taken as absent from the stored set), and the new set replaces the stored one', async () => {
    const shared = memoryKeySets();
    shared.sets.set(issuer.issuer, { keys: publicKeys(), fetchedAt: Date.now() });
    await issuer.addKey('k-new');
    const hits = issuer.jwksHits;
    const jwks = jwksOf(shared.cache);
    assert.ok(await jwks.byKid('k1'));
    assert.equal(issuer.jwksHits, hits, 'k1 from the stored set');
    assert.ok(await jwks.byKid('k-new'));
    assert.equal(issuer.jwksHits, hits + 1);
    assert.deepEqual(shared.sets.get(issuer.issuer)!.keys.map((k) => k.kid), ['k1', 'k-new']);
    jwks.stop();
  });

  it('an unknown kid is fetched at most every minRefreshMs, counted from the stored set\'s own fetch', async () => {
    const shared = memoryKeySets();
    // Fetched (by another instance) just now: made-up kids fetch nothing for minRefreshMs.
    shared.sets.set(issuer.issuer, { keys: publicKeys(), fetchedAt: Date.now() });
    const hits = issuer.jwksHits;
    const fresh = jwksOf(shared.cache, 60_000);
    assert.ok(await fresh.byKid('k1'));
    assert.equal(await fresh.byKid('made-up-1'), undefined);
    assert.equal(issuer.jwksHits, hits, 'within minRefreshMs of the stored set\'s fetch');
    fresh.stop();
    // Fetched two minutes ago: the first made-up kid fetches, the next one waits.
    shared.sets.set(issuer.issuer, { keys: publicKeys(), fetchedAt: Date.now() - 120_000 });
    const older = jwksOf(shared.cache, 60_000);
    assert.ok(await older.byKid('k1'));
    assert.equal(issuer.jwksHits, hits, 'k1 from the stored set');
    assert.equal(await older.byKid('made-up-2'), undefined);
    assert.equal(await older.byKid('made-up-3'), undefined);
    assert.equal(issuer.jwksHits, hits + 1, 'one fetch for two made-up kids');
    older.stop();
  });

  it('a cache that fails is a miss: the set is fetched', async () => {
    const shared = memoryKeySets(true);
    const hits = issuer.jwksHits;
    const jwks = jwksOf(shared.cache);
    assert.ok(await jwks.byKid('k1'));
    assert.equal(issuer.jwksHits, hits + 1);
    assert.equal(shared.puts.length, 1);
    jwks.stop();
  });
});

/** A KV namespace in memory (the part the Worker uses). */
function memoryKv(): KvNamespace & { entries: Map<string, { value: string; ttl: number }> } {
  const entries = new Map<string, { value: string; ttl: number }>();
  return {
    entries,
    get: (key) => Promise.resolve(entries.has(key) ? entries.get(key)!.value : null),
    put: (key, value, options) => {
      entries.set(key, { value, ttl: options.expirationTtl });
      return Promise.resolve();
    },
  };
}

describe('kvVerifiedTokens: entries authenticated with MANDATE_EDGE_CACHE_KEY', () => {
  const claims = { iss: 'https://as.test', aud: AUDIENCE, sub: 'alice', exp: 2_000_000_000 };
  before(() => void mock.method(console, 'warn', () => undefined));
  after(() => mock.restoreAll());

  it('the key is a MAC that changes with the secret, the issuer, the audience, typ and the algorithms', async () => {
    const kv = kvVerifiedTokens(memoryKv(), { maxTtlSeconds: 300, mac: macOf() });
    const base = partsOf('a.b.c', { issuer: 'https://as.test' });
    const key = await kv.key(base);
    assert.match(key, /^[A-Za-z0-9_-]{43}$/);
    const others = [
      await kvVerifiedTokens(memoryKv(), { maxTtlSeconds: 300, mac: macOf(OTHER_CACHE_KEY) }).key(base),
      await kv.key({ ...base, issuer: 'https://other.test' }),
      await kv.key({ ...base, audience: 'https://other.test/mcp' }),
      await kv.key({ ...base, typ: 'JWT' }),
      await kv.key({ ...base, typ: null }),
      await kv.key({ ...base, algorithms: ['ES256', 'RS256'] }),
      await kv.key({ ...base, token: 'a.b.d' }),
    ];
    assert.equal(new Set([key, ...others]).size, others.length + 1, 'every change gives another key');
    assert.equal(await kv.key({ ...base, algorithms: ['ES256'] }), key, 'deterministic');
  });

  it('a value written by put is read back; a value planted without the MAC, under another secret, or altered is a miss', async () => {
    const store = memoryKv();
    const kv = kvVerifiedTokens(store, { maxTtlSeconds: 300, mac: macOf() });
    const key = await kv.key(partsOf('a.b.c', { issuer: 'https://as.test' }));
    await kv.put(key, claims, 120);
    assert.deepEqual(await kv.get(key), claims);
    assert.equal(store.entries.get(key)!.ttl, 120);
    const written = store.entries.get(key)!.value;
    // Planted by a KV editor: the claims alone (the old format), or with a MAC of their own making.
    store.entries.set(key, { value: JSON.stringify(claims), ttl: 120 });
    assert.equal(await kv.get(key), undefined, 'claims without a MAC');
    store.entries.set(key, { value: JSON.stringify({ claims: JSON.stringify(claims), mac: 'A'.repeat(43) }), ttl: 120 });
    assert.equal(await kv.get(key), undefined, 'a made-up MAC');
    const otherSecret = kvVerifiedTokens(memoryKv(), { maxTtlSeconds: 300, mac: macOf(OTHER_CACHE_KEY) });
    const otherStore = memoryKv();
    await kvVerifiedTokens(otherStore, { maxTtlSeconds: 300, mac: macOf(OTHER_CACHE_KEY) }).put(key, claims, 120);
    store.entries.set(key, otherStore.entries.get(key)!);
    assert.equal(await kv.get(key), undefined, 'a MAC under another secret');
    assert.ok(otherSecret);
    // Altered: the sub changed, the MAC kept.
    const parsed = JSON.parse(written) as { claims: string; mac: string };
    store.entries.set(key, { value: JSON.stringify({ claims: parsed.claims.replace('alice', 'admin'), mac: parsed.mac }), ttl: 120 });
    assert.equal(await kv.get(key), undefined, 'claims altered');
    // Moved: a genuine value copied under another token's key.
    const otherKey = await kv.key(partsOf('x.y.z', { issuer: 'https://as.test' }));
    store.entries.set(otherKey, { value: written, ttl: 120 });
    assert.equal(await kv.get(otherKey), undefined, 'a value moved to another key');
  });

  it('MANDATE_EDGE_CACHE_KEY: base64url of at least 32 bytes, absent → undefined, anything else refused', () => {
    assert.equal(parseEdgeCacheKey(undefined), undefined);
    assert.equal(parseEdgeCacheKey(''), undefined);
    assert.equal(parseEdgeCacheKey(CACHE_KEY)!.length, 32);
    assert.equal(parseEdgeCacheKey(Buffer.alloc(48, 1).toString('base64'))!.length, 48);
    assert.throws(() => parseEdgeCacheKey(Buffer.alloc(31, 1).toString('base64url')), /at least 32 bytes; it holds 31/);
    assert.throws(() => parseEdgeCacheKey('not base64url!'), /base64url/);
  });
});

/** A Cache API in memory (the part the Worker uses). */
function memoryCache(): CacheLike & { bodies: Map<string, string>; calls: number } {
  const bodies = new Map<string, string>();
  const cache = {
    bodies,
    calls: 0,
    match: async (request: string) => {
      cache.calls++;
      return bodies.has(request) ? new Response(bodies.get(request)) : undefined;
    },
    put: async (request: string, response: Response) => {
      cache.calls++;
      bodies.set(request, await response.text());
    },
  };
  return cache;
}

describe('cacheApiKeySets: the key set authenticated with MANDATE_EDGE_CACHE_KEY', () => {
  const set: StoredKeySet = { keys: [{ kty: 'EC', crv: 'P-256', x: 'x', y: 'y', kid: 'k1' }], fetchedAt: 1_700_000_000_000 };
  const source = 'https://as.test';
  before(() => void mock.method(console, 'warn', () => undefined));
  after(() => mock.restoreAll());

  it('a set it wrote is read back; one planted by another Worker of the zone (no MAC, another secret, altered, another source\'s) is a miss', async () => {
    const cache = memoryCache();
    const sets = cacheApiKeySets(cache, macOf());
    await sets.put(source, set, 300);
    assert.deepEqual(await sets.get(source), set);
    const [url, written] = [...cache.bodies][0]!;
    // The old format: the set alone.
    cache.bodies.set(url, JSON.stringify({ keys: [{ kty: 'EC', kid: 'attacker' }], fetched_at: Date.now() }));
    assert.equal(await sets.get(source), undefined, 'a set without a MAC');
    const other = memoryCache();
    await cacheApiKeySets(other, macOf(OTHER_CACHE_KEY)).put(source, set, 300);
    cache.bodies.set(url, [...other.bodies.values()][0]!);
    assert.equal(await sets.get(source), undefined, 'a MAC under another secret');
    const parsed = JSON.parse(written) as { set: string; mac: string };
    cache.bodies.set(url, JSON.stringify({ set: parsed.set.replace('"k1"', '"attacker"'), mac: parsed.mac }));
    assert.equal(await sets.get(source), undefined, 'the set altered');
    // A genuine set of another source, copied under this source's URL.
    await sets.put('https://other-as.test', set, 300);
    const otherUrl = [...cache.bodies.keys()].find((key) => key !== url)!;
    cache.bodies.set(url, cache.bodies.get(otherUrl)!);
    assert.equal(await sets.get(source), undefined, 'another source\'s set');
  });
});

describe('the Worker without MANDATE_EDGE_CACHE_KEY: neither shared cache is used', () => {
  it('KV is neither read nor written, the Cache API not called, and the reason is logged once', async (t) => {
    const issuer = await startFakeIssuer();
    t.after(() => issuer.close());
    const warnings: string[] = [];
    mock.method(console, 'warn', (line: string) => void warnings.push(line));
    mock.method(console, 'log', () => undefined);
    const cache = memoryCache();
    const globals = globalThis as { caches?: unknown };
    const saved = globals.caches;
    globals.caches = { default: cache };
    t.after(() => {
      globals.caches = saved;
      mock.restoreAll();
    });
    const resource = 'https://edge-nokey.test/mcp';
    const kv = memoryKv();
    let reads = 0;
    const counting: KvNamespace = { get: (key, type) => (reads++, kv.get(key, type)), put: (key, value, options) => kv.put(key, value, options) };
    const env = { MANDATE_GATEWAY_CONFIG: JSON.stringify({ routes: [{ path: '/mcp', upstream: 'http://127.0.0.1:9/never', resource, authorization_servers: [issuer.issuer], tools: listedTools() }] }), VERIFIED_TOKENS: counting };
    const deferred: Promise<unknown>[] = [];
    const call = async (token: string) => worker.fetch(new Request(resource, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: JSON.stringify(toolCall('echo')) }), env, { waitUntil: (p) => void deferred.push(p) });
    // The review's forged token: unknown kid (a KV read would come first), typ JWT, junk signature.
    const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const forged = `${b64({ alg: 'ES256', kid: 'attacker', typ: 'JWT' })}.${b64({ sub: 'admin' })}.AAAA`;
    assert.equal((await call(forged)).status, 401);
    const good = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1' });
    await call(good);
    await Promise.all(deferred);
    assert.equal(reads, 0, 'KV never read');
    assert.equal(kv.entries.size, 0, 'KV never written');
    assert.equal(cache.calls, 0, 'the Cache API never called');
    const off = warnings.filter((line) => line.includes('MANDATE_EDGE_CACHE_KEY'));
    assert.equal(off.length, 1, warnings.join('\n'));
    assert.match(off[0]!, /the shared caches are off: the verified-token cache \(VERIFIED_TOKENS\) and the key set cache \(Cache API\) need MANDATE_EDGE_CACHE_KEY/);
  });

  it('a malformed MANDATE_EDGE_CACHE_KEY fails the build: 500, the reason logged', async (t) => {
    const errors: string[] = [];
    mock.method(console, 'error', (line: string) => void errors.push(line));
    mock.method(console, 'warn', () => undefined);
    t.after(() => mock.restoreAll());
    const env = { MANDATE_GATEWAY_CONFIG: JSON.stringify({ routes: [{ path: '/mcp', upstream: 'http://127.0.0.1:9/never', resource: 'https://edge-badkey.test/mcp', authorization_servers: ['https://as.test'], tools: listedTools() }] }), MANDATE_EDGE_CACHE_KEY: 'c2hvcnQ' };
    const response = await worker.fetch(new Request('https://edge-badkey.test/mcp', { method: 'POST', headers: MCP_HEADERS, body: '{}' }), env, { waitUntil: () => undefined });
    assert.equal(response.status, 500);
    assert.ok(errors.some((line) => line.includes('MANDATE_EDGE_CACHE_KEY must hold at least 32 bytes')), errors.join('\n'));
  });
});

describe('the Worker with VERIFIED_TOKENS: a token taken from KV still meets the revocation list', () => {
  let issuer: Issuer;
  let revocations: Server;
  let revoked = '';
  const lines: string[] = [];
  const resource = 'https://edge.test/mcp';
  let config: string;

  before(async () => {
    issuer = await startFakeIssuer();
    // The AS's revocation list (Mandate's /revocations), revoking one jti.
    revocations = createServer((_req, res) => void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ next_since: 1, tokens: [{ jti: revoked, exp: Math.floor(Date.now() / 1000) + 600 }] })));
    const port = await freePort();
    await new Promise<void>((r) => revocations.listen(port, '127.0.0.1', r));
    config = JSON.stringify({
      routes: [
        {
          path: '/mcp',
          upstream: 'http://127.0.0.1:9/never',
          resource,
          resource_name: 'kv-revocations',
          authorization_servers: [issuer.issuer],
          tools: listedTools(),
          token: { revocation_list: { endpoint: `http://127.0.0.1:${port}/revocations`, client_id: 'gw', client_secret_env: 'REVOCATIONS_SECRET', poll_seconds: 60 } },
        },
      ],
    });
    mock.method(console, 'log', (line: string) => void lines.push(line));
    mock.method(console, 'warn', () => undefined);
  });
  after(async () => {
    mock.restoreAll();
    revocations?.close();
    await issuer?.close();
  });

  it('the revoked token, in KV and the issuer down, is refused 401 with the revocation as the audited reason', async () => {
    const token = await issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1' });
    const claims = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    revoked = claims.jti as string;
    const kv = memoryKv();
    // Written as the Worker writes it (authenticated with the same MANDATE_EDGE_CACHE_KEY).
    const written = kvVerifiedTokens(kv, { maxTtlSeconds: 300, mac: macOf() });
    await written.put(await written.key({ issuer: issuer.issuer, audience: resource, typ: 'at+jwt', algorithms: ['ES256', 'RS256', 'PS256', 'EdDSA'], token }), claims, 300);
    // Only KV can vouch for the token: without it the answer would be 503 (no keys).
    issuer.setUp(false);
    const env = { MANDATE_GATEWAY_CONFIG: config, VERIFIED_TOKENS: kv, REVOCATIONS_SECRET: 's3cret', MANDATE_EDGE_CACHE_KEY: CACHE_KEY };
    const call = () => worker.fetch(new Request(resource, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: JSON.stringify(toolCall('echo')) }), env, { waitUntil: () => undefined });
    // The first check waits for the first poll of the list (polled on use, without GATEWAY_STATE).
    let response = await call();
    for (let i = 0; i < 50 && response.status === 503; i++) {
      await new Promise((r) => setTimeout(r, 20));
      response = await call();
    }
    assert.equal(response.status, 401, await response.clone().text());
    assert.match(response.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
    const requestId = response.headers.get('x-request-id');
    // Written once the response is complete: waited for, bounded.
    let event: Record<string, unknown> | undefined;
    for (let i = 0; i < 100 && !event; i++) {
      await new Promise((r) => setTimeout(r, 20));
      event = lines.map((line) => JSON.parse(line) as Record<string, unknown>).find((e) => e.request_id === requestId);
    }
    assert.ok(event, 'an audit line');
    assert.equal(event.rejection, 'invalid_token');
    assert.match(String(event.reason), /revoked/);
    issuer.setUp(true);
  });
});

describe('VERIFIED_TOKENS_MAX_TTL_SECONDS and examples/edge/wrangler.jsonc', () => {
  it('the cap defaults to 300 s; a value under KV\'s 60 s or not whole is refused', () => {
    assert.equal(verifiedTokensMaxTtl(undefined), DEFAULT_VERIFIED_TOKENS_MAX_TTL_SECONDS);
    assert.equal(DEFAULT_VERIFIED_TOKENS_MAX_TTL_SECONDS, 300);
    assert.equal(verifiedTokensMaxTtl('900'), 900);
    assert.throws(() => verifiedTokensMaxTtl('59'), /at least 60/);
    assert.throws(() => verifiedTokensMaxTtl('1.5'), /whole number/);
    assert.throws(() => verifiedTokensMaxTtl('ten'), /whole number/);
  });

  it('the example binds VERIFIED_TOKENS as a KV namespace', () => {
    // JSONC: whole-line comments only in this file.
    const wrangler = JSON.parse(readFileSync('examples/edge/wrangler.jsonc', 'utf8').replace(/^\s*\/\/.*$/gm, '')) as { kv_namespaces?: { binding: string; id: string }[] };
    assert.deepEqual(wrangler.kv_namespaces?.map((kv) => kv.binding), ['VERIFIED_TOKENS']);
  });
});
