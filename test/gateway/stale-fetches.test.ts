/**
 * A fetch that never settles is never joined past its timeout (issue 16): in workerd, work a
 * request left running when it answered is cancelled and its promise never settles. The key set
 * (`RemoteJwks`) and the revocation list (`RevocationList`) abandon such a fetch 6 s after it began
 * (its 5 s timeout + 1 s) and start another; what the abandoned one brings, if it ever does, is
 * dropped. The clock is Node's mocked `Date`; the hung fetch is a promise nobody resolves.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { exportJWK, generateKeyPair, type JWK } from 'jose';
import { RemoteJwks } from '../../src/gateway/jwks.ts';
import { RevocationList } from '../../src/gateway/revocation-list.ts';
import { issuerMetadata } from '../../src/gateway/token-validator.ts';

/** A fetch whose first `hang` calls never answer (their resolvers kept, to answer late), the rest answering `body()`. */
function scriptedFetch(body: () => unknown, hang = 1) {
  const late: ((response: Response) => void)[] = [];
  let calls = 0;
  const fetchImpl = (() => {
    calls++;
    if (calls <= hang) return new Promise<Response>((resolve) => late.push(resolve));
    return Promise.resolve(Response.json(body()));
  }) as typeof fetch;
  return { fetchImpl, late, calls: () => calls };
}

const publicJwk = async (kid: string): Promise<JWK> => ({ ...(await exportJWK((await generateKeyPair('ES256', { extractable: true })).publicKey)), kid, alg: 'ES256', use: 'sig' });

describe('fetches pending past their timeout are abandoned, not joined', () => {
  it('the key set: joined while young, a new fetch once stale; the abandoned one installs nothing when it answers late', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    const [k1, k2] = [await publicJwk('k1'), await publicJwk('k2')];
    const script = scriptedFetch(() => ({ keys: [k2] }));
    const jwks = new RemoteJwks({ jwksUri: 'https://as.test/jwks', refreshMs: 300_000, minRefreshMs: 0, fetch: script.fetchImpl, schedule: 'on-use' });
    const waited: Promise<unknown>[] = [];
    const hung = jwks.refresh({ waitUntil: (promise) => void waited.push(promise) });
    assert.equal(waited[0], hung, 'handed to waitUntil');
    t.mock.timers.setTime(1_000_000 + 5_999);
    assert.equal(jwks.refresh(), hung, 'younger than its timeout + 1 s: joined');
    assert.equal(script.calls(), 1);
    t.mock.timers.setTime(1_000_000 + 6_000);
    await jwks.refresh();
    assert.equal(script.calls(), 2, 'stale: a new fetch');
    assert.ok(jwks.holds('k2'));
    // The abandoned fetch answers at last, with an older set: ignored.
    script.late[0]!(Response.json({ keys: [k1] }));
    await hung;
    assert.ok(jwks.holds('k2') && !jwks.holds('k1'), 'the newer fetch decides');
  });

  it('the key set: a first load that never settled is begun again by a use after 6 s, not awaited forever', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 2_000_000 });
    const k1 = await publicJwk('k1');
    const script = scriptedFetch(() => ({ keys: [k1] }));
    const jwks = new RemoteJwks({ jwksUri: 'https://as.test/jwks', refreshMs: 300_000, minRefreshMs: 0, fetch: script.fetchImpl, schedule: 'on-use' });
    jwks.start();
    void jwks.byKid('k1'); // its request was cancelled: this load never settles
    t.mock.timers.setTime(2_000_000 + 6_000);
    assert.equal((await jwks.byKid('k1'))?.kid, 'k1');
    assert.equal(script.calls(), 2);
  });

  it('the revocation list: a poll pending for 6 s is abandoned; on use, the first verdict waits for a new poll; a late answer of the old one is dropped', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 3_000_000 });
    const exp = 3_000_000 / 1000 + 600;
    const script = scriptedFetch(() => ({ tokens: [{ jti: 'revoked', exp }], grants: [], clients: [] }));
    const list = new RevocationList({ endpoint: 'https://as.test/revocations', clientId: 'gw', clientSecret: 's', pollMs: 60_000, fetch: script.fetchImpl, startOnUse: true });
    const hung = list.refresh();
    t.mock.timers.setTime(3_000_000 + 5_999);
    assert.equal(list.refresh(), hung, 'joined while young');
    t.mock.timers.setTime(3_000_000 + 6_000);
    const waited: Promise<unknown>[] = [];
    assert.deepEqual(await list.verdictFor({ jti: 'revoked' }, { waitUntil: (promise) => void waited.push(promise) }), { refuse: 'revoked', reason: 'the token was revoked' });
    assert.equal(waited.length, 1, 'the poll handed to waitUntil');
    assert.equal(script.calls(), 2);
    script.late[0]!(Response.json({ tokens: [], grants: [], clients: [] }));
    await hung;
    assert.equal(list.reason({ jti: 'revoked' }), 'the token was revoked', 'the abandoned poll changed nothing');
  });

  it('issuer discovery: a pending one is joined while young, begun again after 11 s; a success is kept', async (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 4_000_000 });
    const issuer = 'https://as.test';
    const script = scriptedFetch(() => ({ issuer, jwks_uri: `${issuer}/jwks` }));
    const metadata = issuerMetadata(issuer, script.fetchImpl);
    const hung = metadata();
    t.mock.timers.setTime(4_000_000 + 10_999);
    assert.equal(metadata(), hung, 'younger than two timeouts + 1 s: joined');
    t.mock.timers.setTime(4_000_000 + 11_000);
    const fresh = metadata();
    assert.notEqual(fresh, hung, 'stale: a new discovery');
    assert.equal((await fresh).jwks_uri, `${issuer}/jwks`);
    t.mock.timers.setTime(4_000_000 + 60_000);
    assert.equal(metadata(), fresh, 'a settled discovery is remembered');
    assert.equal(script.calls(), 2);
    // The abandoned discovery fails late: the remembered metadata stays.
    script.late[0]!(new Response('down', { status: 500 }));
    await hung.catch(() => undefined);
    assert.equal(metadata(), fresh);
  });
});
