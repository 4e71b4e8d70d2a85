/**
 * DPoP at the gateway (RFC 9449 §7, issue 17), black box on the Node gateway and on the Worker in
 * workerd: the table of ISSUE17 §3.2 row by row — status, the WWW-Authenticate challenge exactly,
 * and the audit event's rejection and reason. Proofs are made here with jose, independently of
 * src/core/dpop.ts, so that a bad proof can be made in every way.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, it, mock } from 'node:test';
import { SignJWT, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from 'jose';
import { freePort } from '../helpers/auth-server.ts';
import { listedTools, mcpPost, startFakeIssuer, startTestGateway, toolCall } from '../helpers/gateway.ts';
import { startBlackboxUpstream } from '../helpers/blackbox-upstream.ts';
import { DpopReplayUnavailable, MemoryDpopReplay } from '../../src/gateway/dpop.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type TargetGateway } from '../helpers/gateway-targets.ts';

const ALGS = 'ES256 ES384 PS256 RS256 EdDSA';
const UNAUTHORIZED = -32001;
const sha256 = (text: string) => createHash('sha256').update(text).digest('base64url');
const digestOf = (body: string) => `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;

interface ProofKey {
  privateKey: CryptoKey;
  jwk: JWK;
  jkt: string;
}
async function proofKey(): Promise<ProofKey> {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
}

interface ProofOptions {
  htu: string;
  htm?: string;
  token?: string;
  nonce?: string;
  iat?: number;
  jti?: string;
  typ?: string;
  body?: string;
  digest?: string;
  header?: Record<string, unknown>;
  claims?: Record<string, unknown>;
}
async function proof(key: ProofKey, o: ProofOptions): Promise<string> {
  const claims: Record<string, unknown> = { jti: o.jti ?? crypto.randomUUID(), htm: o.htm ?? 'POST', htu: o.htu, iat: o.iat ?? Math.floor(Date.now() / 1000) };
  if (o.token !== undefined) claims.ath = sha256(o.token);
  if (o.nonce !== undefined) claims.nonce = o.nonce;
  if (o.digest !== undefined) claims.content_digest = o.digest;
  else if (o.body !== undefined) claims.content_digest = digestOf(o.body);
  return new SignJWT({ ...claims, ...o.claims }).setProtectedHeader({ alg: 'ES256', typ: o.typ ?? 'dpop+jwt', jwk: key.jwk, ...o.header }).sign(key.privateKey);
}

const call = toolCall('read_balance');
const callBody = JSON.stringify(call);

for (const target of targets) {
  describe(`gateway DPoP [${target}] (RFC 9449 §7)`, onTarget(target), () => {
    let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
    let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
    let gateway: TargetGateway;
    let key: ProofKey;
    const url = (path: string) => `${gateway.url}${path}`;
    const prm = (path: string) => `${gateway.url}/.well-known/oauth-protected-resource${path}`;

    before(async () => {
      issuer = await startFakeIssuer();
      upstream = await startBlackboxUpstream();
      key = await proofKey();
      const route = (origin: string, path: string, extra: Record<string, unknown> = {}) => ({
        path,
        upstream: upstream.url,
        resource: `${origin}${path}`,
        authorization_servers: [issuer.issuer],
        scopes: ['banking:read'],
        tools: { ...listedTools(['read_balance', 'echo']), transfer: { scopes: ['banking:transfer'] } },
        ...extra,
      });
      gateway = await startGatewayOn(
        target,
        (origin) => [
          route(origin, '/allow', { dpop: { mode: 'allow' } }),
          route(origin, '/require', { dpop: { mode: 'require' } }),
          route(origin, '/off'),
          route(origin, '/nonce', { dpop: { mode: 'allow', require_nonce: true } }),
          route(origin, '/digest', { dpop: { mode: 'allow', content_digest: 'require' } }),
        ],
        { secrets: { MANDATE_GATEWAY_DPOP_NONCE_KEY: 'a-test-nonce-key-of-at-least-32-characters' } },
      );
    });
    after(async () => {
      await gateway?.stop();
      await upstream?.close();
      await issuer?.close();
    });

    const token = (path: string, extra: Record<string, unknown> = {}, jkt: string | null = key.jkt) =>
      issuer.sign({ sub: 'alice', aud: url(path), client_id: 'agent-1', scope: 'banking:read', ...(jkt ? { cnf: { jkt } } : {}), ...extra });
    const dpopCall = async (path: string, o: { token?: string; proof?: string | string[]; proofOptions?: Partial<ProofOptions>; message?: unknown } = {}) => {
      const t = o.token ?? (await token(path));
      const body = o.message === undefined ? callBody : JSON.stringify(o.message);
      const p = o.proof ?? (await proof(key, { htu: url(path), token: t, body, ...o.proofOptions }));
      const headers: Record<string, string> = { authorization: `DPoP ${t}`, ...(Array.isArray(p) ? { dpop: p.join(', ') } : { dpop: p }) };
      return mcpPost(url(path), body, headers);
    };
    const challengeOf = (path: string, error: string, scopes = 'banking:read') => `DPoP algs="${ALGS}", resource_metadata="${prm(path)}", scope="${scopes}", error="${error}"`;
    const refusedProof = async (res: Awaited<ReturnType<typeof mcpPost>>, path: string, reason: string | RegExp, rejection = 'invalid_dpop_proof', error = 'invalid_dpop_proof') => {
      assert.equal(res.headers.get('www-authenticate'), challengeOf(path, error), `${target}: ${res.text}`);
      return assertRefused(gateway, res, { status: 401, code: UNAUTHORIZED, rejection, reason });
    };

    it('publishes the DPoP fields of RFC 9728 §2 by mode', async () => {
      const allow = (await (await fetch(prm('/allow'))).json()) as Record<string, unknown>;
      assert.deepEqual(allow.dpop_signing_alg_values_supported, ALGS.split(' '));
      assert.equal(allow.dpop_bound_access_tokens_required, undefined);
      const required = (await (await fetch(prm('/require'))).json()) as Record<string, unknown>;
      assert.equal(required.dpop_bound_access_tokens_required, true);
      const off = (await (await fetch(prm('/off'))).json()) as Record<string, unknown>;
      assert.equal(off.dpop_signing_alg_values_supported, undefined);
      assert.equal(off.dpop_bound_access_tokens_required, undefined);
    });

    it('no credentials: Bearer challenge first then DPoP, no error (§7.2); require: DPoP only; off: Bearer only', async () => {
      const allow = await mcpPost(url('/allow'), call);
      assert.equal(allow.headers.get('www-authenticate'), `Bearer resource_metadata="${prm('/allow')}", scope="banking:read", DPoP algs="${ALGS}", resource_metadata="${prm('/allow')}", scope="banking:read"`);
      await assertRefused(gateway, allow, { status: 401, code: UNAUTHORIZED, rejection: 'no_token', reason: 'no Authorization header' });
      const required = await mcpPost(url('/require'), call);
      assert.equal(required.headers.get('www-authenticate'), `DPoP algs="${ALGS}", resource_metadata="${prm('/require')}", scope="banking:read"`);
      const off = await mcpPost(url('/off'), call);
      assert.equal(off.headers.get('www-authenticate'), `Bearer resource_metadata="${prm('/off')}", scope="banking:read"`);
    });

    it('a DPoP-bound token with a valid proof is forwarded; the caller token never reaches the upstream', async () => {
      const before = upstream.requests.length;
      const res = await dpopCall('/allow');
      assert.equal(res.status, 200, res.text);
      const forwarded = upstream.requests.slice(before).find((r) => r.body.includes('read_balance'));
      assert.ok(forwarded);
      assert.equal(forwarded.headers.authorization, undefined);
      const event = await gateway.waitForAudit((e) => e.request_id === res.headers.get('x-request-id'));
      assert.equal(event.decision, 'allow');
      // The scheme is case-insensitive (RFC 9110 §11.1).
      const t = await token('/allow');
      const lower = await mcpPost(url('/allow'), callBody, { authorization: `dpop ${t}`, dpop: await proof(key, { htu: url('/allow'), token: t, body: callBody }) });
      assert.equal(lower.status, 200, lower.text);
    });

    it('Bearer traffic with an unbound token is unchanged under mode allow', async () => {
      const res = await mcpPost(url('/allow'), call, { authorization: `Bearer ${await token('/allow', {}, null)}` });
      assert.equal(res.status, 200, res.text);
    });

    for (const path of ['/allow', '/off']) {
      it(`a DPoP-bound token sent as Bearer is refused (${path}): dpop_downgrade (§7.2)`, async () => {
        const res = await mcpPost(url(path), call, { authorization: `Bearer ${await token(path)}` });
        assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${prm(path)}", scope="banking:read", error="invalid_token", error_description="the access token is DPoP-bound: present it with the DPoP scheme and a proof"`);
        await assertRefused(gateway, res, { status: 401, code: UNAUTHORIZED, rejection: 'dpop_downgrade', reason: 'a DPoP-bound access token (cnf.jkt) was presented with the Bearer scheme' });
      });
    }

    it('mode require: an unbound Bearer token is refused with a DPoP challenge: dpop_required', async () => {
      const res = await mcpPost(url('/require'), call, { authorization: `Bearer ${await token('/require', {}, null)}` });
      assert.equal(res.headers.get('www-authenticate'), `DPoP algs="${ALGS}", resource_metadata="${prm('/require')}", scope="banking:read", error="invalid_token", error_description="this resource requires a DPoP-bound access token"`);
      await assertRefused(gateway, res, { status: 401, code: UNAUTHORIZED, rejection: 'dpop_required', reason: 'this route accepts DPoP-bound access tokens only' });
      const ok = await dpopCall('/require');
      assert.equal(ok.status, 200, ok.text);
    });

    it('mode off: the DPoP scheme is not accepted (invalid_request)', async () => {
      const res = await dpopCall('/off');
      assert.equal(res.headers.get('www-authenticate'), `Bearer resource_metadata="${prm('/off')}", scope="banking:read", error="invalid_request"`);
      await assertRefused(gateway, res, { status: 401, code: UNAUTHORIZED, rejection: 'invalid_token', reason: 'Authorization is not a Bearer token' });
    });

    it('an invalid token presented with DPoP gets a DPoP challenge (invalid_token)', async () => {
      const expired = await token('/allow', { exp: Math.floor(Date.now() / 1000) - 600, iat: Math.floor(Date.now() / 1000) - 900 });
      const res = await dpopCall('/allow', { token: expired });
      assert.equal(res.headers.get('www-authenticate'), challengeOf('/allow', 'invalid_token'));
      await assertRefused(gateway, res, { status: 401, code: UNAUTHORIZED, rejection: 'invalid_token', reason: 'ERR_JWT_EXPIRED' });
    });

    it('DPoP scheme without a proof: invalid_dpop_proof', async () => {
      const t = await token('/allow');
      const res = await mcpPost(url('/allow'), call, { authorization: `DPoP ${t}` });
      await refusedProof(res, '/allow', 'no DPoP proof');
    });

    const now = () => Math.floor(Date.now() / 1000);
    const badProofs: [string, (t: string) => Promise<string | string[]>, string][] = [
      ['two DPoP headers (§4.3 (1))', async (t) => [await proof(key, { htu: url('/allow'), token: t, body: callBody }), await proof(key, { htu: url('/allow'), token: t, body: callBody })], 'more than one DPoP header'],
      ['not a JWT (2)', async () => 'not-a-jwt', 'the DPoP proof is not a JWT'],
      ['no jti (3)', async (t) => proof(key, { htu: url('/allow'), token: t, body: callBody, claims: { jti: undefined } }), 'the DPoP proof has no jti'],
      ['typ JWT (4)', async (t) => proof(key, { htu: url('/allow'), token: t, body: callBody, typ: 'JWT' }), 'the DPoP proof typ is not dpop+jwt'],
      ['a private jwk (7)', async (t) => proof(key, { htu: url('/allow'), token: t, body: callBody, header: { jwk: { ...key.jwk, d: 'AAAA' } } }), 'the DPoP proof jwk has private key members'],
      [
        'a signature by another key (6)',
        async (t) => {
          const other = await proofKey();
          return proof({ ...other, jwk: key.jwk }, { htu: url('/allow'), token: t, body: callBody });
        },
        'the DPoP proof signature does not verify with its jwk',
      ],
      ['htm GET (8)', async (t) => proof(key, { htu: url('/allow'), token: t, body: callBody, htm: 'GET' }), 'the DPoP proof htm GET is not POST'],
      ['htu of another route (9)', async (t) => proof(key, { htu: url('/require'), token: t, body: callBody }), 'the DPoP proof htu does not match the request URL'],
      ['htu with a query (9)', async (t) => proof(key, { htu: `${url('/allow')}?a=1`, token: t, body: callBody }), 'the DPoP proof htu has a query or fragment'],
      ['iat 301 s old (11)', async (t) => proof(key, { htu: url('/allow'), token: t, body: callBody, iat: now() - 301 }), 'the DPoP proof iat is outside the acceptable window'],
      ['iat 301 s ahead (11)', async (t) => proof(key, { htu: url('/allow'), token: t, body: callBody, iat: now() + 301 }), 'the DPoP proof iat is outside the acceptable window'],
      ['no ath', async () => proof(key, { htu: url('/allow'), body: callBody }), 'the DPoP proof has no ath'],
      ['ath of another token', async () => proof(key, { htu: url('/allow'), token: 'another-token', body: callBody }), 'the DPoP proof ath does not match the access token'],
      ['content_digest of another body (verify by default)', async (t) => proof(key, { htu: url('/allow'), token: t, body: '{"other":1}' }), 'the DPoP proof content_digest does not match the body'],
    ];
    for (const [name, make, reason] of badProofs) {
      it(`an invalid proof is refused: ${name}`, async () => {
        const t = await token('/allow');
        const res = await dpopCall('/allow', { token: t, proof: await make(t) });
        await refusedProof(res, '/allow', reason);
      });
    }

    it('a proof whose key is not the token’s cnf.jkt: invalid_token, dpop_binding_mismatch (§7.1)', async () => {
      const other = await proofKey();
      const t = await token('/allow');
      const res = await dpopCall('/allow', { token: t, proof: await proof(other, { htu: url('/allow'), token: t, body: callBody }) });
      await refusedProof(res, '/allow', "the proof's key is not the key the access token is bound to (cnf.jkt)", 'dpop_binding_mismatch', 'invalid_token');
    });

    it('an unbound token presented with the DPoP scheme: dpop_binding_mismatch', async () => {
      const res = await dpopCall('/allow', { token: await token('/allow', {}, null) });
      await refusedProof(res, '/allow', 'the access token is not DPoP-bound (no cnf.jkt) but was presented with the DPoP scheme', 'dpop_binding_mismatch', 'invalid_token');
    });

    it('a proof used twice: the second is refused, dpop_replay (§11.1)', async () => {
      const t = await token('/allow');
      const p = await proof(key, { htu: url('/allow'), token: t, body: callBody });
      const first = await dpopCall('/allow', { token: t, proof: p });
      assert.equal(first.status, 200, first.text);
      const second = await dpopCall('/allow', { token: t, proof: p });
      await refusedProof(second, '/allow', 'the DPoP proof jti was used before', 'dpop_replay');
    });

    it('require_nonce: 401 use_dpop_nonce with a DPoP-Nonce, the retry with it passes; a forged nonce is refused (§9)', async () => {
      const t = await token('/nonce');
      const first = await dpopCall('/nonce', { token: t });
      await refusedProof(first, '/nonce', 'the DPoP proof has no server nonce', 'use_dpop_nonce', 'use_dpop_nonce');
      const nonce = first.headers.get('dpop-nonce');
      assert.match(nonce ?? '', /^[A-Za-z0-9_-]+$/);
      const retry = await dpopCall('/nonce', { token: t, proofOptions: { nonce: nonce! } });
      assert.equal(retry.status, 200, retry.text);
      const forged = await dpopCall('/nonce', { token: t, proofOptions: { nonce: 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA' } });
      await refusedProof(forged, '/nonce', 'the DPoP proof nonce is stale or not ours', 'use_dpop_nonce', 'use_dpop_nonce');
      assert.ok(forged.headers.get('dpop-nonce'));
    });

    it('content_digest require: a proof without one is refused, with the right one it passes (SEP-1932)', async () => {
      const t = await token('/digest');
      const missing = await dpopCall('/digest', { token: t, proof: await proof(key, { htu: url('/digest'), token: t }) });
      await refusedProof(missing, '/digest', 'the DPoP proof has no content_digest');
      const ok = await dpopCall('/digest', { token: t });
      assert.equal(ok.status, 200, ok.text);
    });

    it('the digest covers the bytes the client sent, not the re-serialised message', async () => {
      const t = await token('/digest');
      const spaced = `{ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "read_balance", "arguments": {} } }`;
      const res = await mcpPost(url('/digest'), spaced, { authorization: `DPoP ${t}`, dpop: await proof(key, { htu: url('/digest'), token: t, body: spaced }) });
      assert.equal(res.status, 200, res.text);
    });

    it('insufficient scope with a DPoP token: 403 with a DPoP challenge', async () => {
      const res = await dpopCall('/allow', { message: toolCall('transfer') });
      assert.equal(res.headers.get('www-authenticate'), challengeOf('/allow', 'insufficient_scope', 'banking:read banking:transfer'));
      await assertRefused(gateway, res, { status: 403, code: -32003, rejection: 'insufficient_scope', reason: 'missing scope banking:transfer' });
    });
  });
}

describe('gateway DPoP replay store (Node): shared through Redis, fail closed', () => {
  let issuer: Awaited<ReturnType<typeof startFakeIssuer>>;
  let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
  let key: ProofKey;
  // Both gateways serve one public resource (as behind one address): a proof is valid at either.
  const resource = 'https://mcp.example.test/mcp';
  const routes = () => [{ path: '/mcp', upstream: upstream.url, resource, authorization_servers: [issuer.issuer], tools: listedTools(['read_balance']), dpop: { mode: 'allow' as const } }];

  before(async () => {
    issuer = await startFakeIssuer();
    upstream = await startBlackboxUpstream();
    key = await proofKey();
  });
  after(async () => {
    await upstream?.close();
    await issuer?.close();
  });

  const bound = () => issuer.sign({ sub: 'alice', aud: resource, client_id: 'agent-1', cnf: { jkt: key.jkt } });

  it('a proof accepted by one gateway is refused by another sharing the Redis (dpop_replay)', { skip: process.env.REDIS_URL ? false : 'needs REDIS_URL' }, async () => {
    // The same key prefix: gateways that share budgets, sessions and proofs.
    const shared = { rate_limit_prefix: `mandate-test:${crypto.randomUUID()}` };
    const a = await startTestGateway(routes, shared);
    const b = await startTestGateway(routes, shared);
    try {
      const t = await bound();
      const p = await proof(key, { htu: resource, token: t, body: callBody });
      const first = await mcpPost(`${a.url}/mcp`, callBody, { authorization: `DPoP ${t}`, dpop: p });
      assert.equal(first.status, 200, first.text);
      const second = await mcpPost(`${b.url}/mcp`, callBody, { authorization: `DPoP ${t}`, dpop: p });
      assert.equal(second.status, 401, second.text);
      const event = (await b.auditEvents()).find((e) => e.request_id === second.headers.get('x-request-id'));
      assert.equal(event?.rejection, 'dpop_replay');
      assert.equal(event?.reason, 'the DPoP proof jti was used before');
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('the replay store cannot be reached: 503, dpop_replay_unavailable (never let through)', async () => {
    const gateway = await startGatewayOn('node', routes, { secrets: { REDIS_URL: `redis://127.0.0.1:${await freePort()}` } });
    try {
      const t = await bound();
      const res = await mcpPost(`${gateway.url}/mcp`, callBody, { authorization: `DPoP ${t}`, dpop: await proof(key, { htu: resource, token: t, body: callBody }) });
      assert.equal(res.headers.get('retry-after'), '1');
      await assertRefused(gateway, res, { status: 503, code: -32603, rejection: 'dpop_replay_unavailable', reason: /^the DPoP replay store \(Redis\) cannot be reached/ });
    } finally {
      await gateway.stop();
    }
  });
});

describe('gateway DPoP replay memory (no Redis): bounded, fail closed, one key cannot fill it', () => {
  const k = (jkt: string, n: number) => `dpop:${jkt}:${n}`;

  it('one key holding its share is refused alone (DpopReplayUnavailable); other keys go on; expiry frees the share', async () => {
    mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    try {
      const memory = new MemoryDpopReplay(100, 10);
      for (let n = 0; n < 10; n++) assert.equal(await memory.claim(k('flood', n), 60), true);
      await assert.rejects(memory.claim(k('flood', 10), 60), (e: Error) => e instanceof DpopReplayUnavailable && /one DPoP key holds 10 live proofs/.test(e.message));
      assert.equal(await memory.claim(k('other', 0), 60), true, 'another key is not refused');
      assert.equal(await memory.claim(k('flood', 3), 60), false, 'a proof seen is still a replay');
      mock.timers.tick(61_000);
      assert.equal(await memory.claim(k('flood', 10), 60), true, 'expired proofs no longer count');
      assert.equal(await memory.claim(k('flood', 3), 60), true, 'an expired jti is forgotten (its proof is too old by then)');
    } finally {
      mock.timers.reset();
    }
  });

  it('full of live proofs: refused, never an old entry forgotten; room again once they expire', async () => {
    mock.timers.enable({ apis: ['Date'], now: 1_000_000 });
    try {
      const memory = new MemoryDpopReplay(20, 20);
      for (let n = 0; n < 20; n++) assert.equal(await memory.claim(k(`key${n}`, n), 60), true);
      await assert.rejects(memory.claim(k('late', 0), 60), (e: Error) => e instanceof DpopReplayUnavailable && /full \(20 live proofs\)/.test(e.message));
      assert.equal(await memory.claim(k('key0', 0), 60), false, 'the oldest entry is still remembered');
      mock.timers.tick(60_001);
      assert.equal(await memory.claim(k('late', 0), 60), true);
    } finally {
      mock.timers.reset();
    }
  });
});
