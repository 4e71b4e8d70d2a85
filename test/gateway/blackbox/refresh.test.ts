/**
 * The gateway as a black box, on the Node gateway and on the Worker in workerd (issue 16): what it
 * keeps fresh from the authorization server — the key set (a key the AS adds is accepted, a key it
 * removes is refused) and a route's revocation list — keeps getting fresh. In workerd nothing runs
 * on a timer and work a request leaves running is cancelled when it answers: the key set is fetched
 * again on use (in the background, under the request's `waitUntil`), and without the GATEWAY_STATE
 * Durable Object (run here without it) the revocation list is polled on use by the requests
 * themselves. One gateway per target for the whole file; its AS is a loopback JWKS and
 * `/revocations` whose key set answers can be delayed.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { SignJWT, exportJWK, generateKeyPair, type JWK } from 'jose';
import { startBlackboxUpstream } from '../../helpers/blackbox-upstream.ts';
import { MCP_HEADERS, listedTools, toolCall } from '../../helpers/gateway.ts';
import { assertRefused, onTarget, startGatewayOn, targets, type TargetGateway } from '../../helpers/gateway-targets.ts';
import { until } from '../../helpers/private-services.ts';

const SECRET = 'revocations-client-secret-0123456789';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

for (const target of targets) {
  describe(`black box [${target}]: the key set and the revocation list stay fresh`, onTarget(target), () => {
    const keys: { kid: string; privateKey: CryptoKey; jwk: JWK }[] = [];
    /** Published by the JWKS (a removed key stays here to sign with). */
    const published = new Set<string>();
    let jwksDelayMs = 0;
    let jwksHits = 0;
    const revoked: string[] = [];
    let polls = 0;
    const as = createServer((req, res) => {
      const send = (body: unknown) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (req.url === '/jwks') {
        jwksHits++;
        const body = { keys: keys.filter((key) => published.has(key.kid)).map((key) => key.jwk) };
        setTimeout(() => send(body), jwksDelayMs);
        return;
      }
      if (req.url?.startsWith('/revocations')) {
        polls++;
        return send({ tokens: revoked.map((jti) => ({ jti, exp: Math.floor(Date.now() / 1000) + 600 })), grants: [], clients: [] });
      }
      res.writeHead(404).end();
    });
    let issuer: string;
    let upstream: Awaited<ReturnType<typeof startBlackboxUpstream>>;
    let gateway: TargetGateway;

    const addKey = async (kid: string) => {
      const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
      keys.push({ kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } });
      published.add(kid);
    };
    const sign = (path: string, kid: string, claims: Record<string, unknown> = {}) =>
      new SignJWT({ sub: 'alice', client_id: 'agent-1', scope: 'need', jti: randomUUID(), ...claims })
        .setProtectedHeader({ alg: 'ES256', kid, typ: 'at+jwt' })
        .setIssuer(issuer)
        .setAudience(`${gateway.url}${path}`)
        .setIssuedAt()
        .setExpirationTime('10m')
        .sign(keys.find((key) => key.kid === kid)!.privateKey);
    /** A call bounded in time: a gateway waiting on a fetch that never ends must fail the test, not hang it. */
    const call = async (path: string, token: string) => {
      const response = await fetch(`${gateway.url}${path}`, { method: 'POST', headers: { ...MCP_HEADERS, authorization: `Bearer ${token}` }, body: JSON.stringify(toolCall('echo')), signal: AbortSignal.timeout(10_000) });
      const text = await response.text();
      let json: Record<string, unknown> | undefined;
      try {
        json = JSON.parse(text) as Record<string, unknown>;
      } catch {
        json = undefined;
      }
      return { status: response.status, headers: response.headers, text, json };
    };

    before(async () => {
      await addKey('k1');
      await new Promise<void>((r) => as.listen(0, '127.0.0.1', r));
      issuer = `http://127.0.0.1:${(as.address() as AddressInfo).port}`;
      upstream = await startBlackboxUpstream();
      gateway = await startGatewayOn(
        target,
        (origin) => {
          const route = (path: string, token: Record<string, unknown>) => ({ path, upstream: upstream.url, resource: `${origin}${path}`, authorization_servers: [issuer], scopes: ['need'], tools: listedTools(['echo']), token: { jwks_uri: `${issuer}/jwks`, jwks_refresh_seconds: 1, jwks_min_refresh_seconds: 0, ...token } });
          return [route('/keys', {}), route('/revocable', { revocation_list: { endpoint: `${issuer}/revocations`, client_id: 'gw', client_secret_env: 'REFRESH_REVOCATIONS_SECRET', poll_seconds: 1 } })];
        },
        { secrets: { REFRESH_REVOCATIONS_SECRET: SECRET }, durableState: false },
      );
    });
    after(async () => {
      await gateway?.stop();
      await upstream?.close();
      as.closeAllConnections();
      await new Promise<void>((r) => as.close(() => r()));
    });

    it('a background key set refresh begun by a request that answered at once runs to its end: a key the AS adds next is accepted, one it removes is refused', async () => {
      assert.equal((await call('/keys', await sign('/keys', 'k1'))).status, 200);
      await sleep(1_200); // the set is now older than jwks_refresh_seconds
      // A slow JWKS, and a request refused without waiting for it: its refresh outlives its answer.
      jwksDelayMs = 500;
      const hits = jwksHits;
      const refused = await call('/keys', await sign('/keys', 'k1', { scope: 'other' }));
      await assertRefused(gateway, refused, { status: 403, code: -32003, rejection: 'insufficient_scope', reason: /need/ });
      await until(async () => jwksHits > hits, 5_000, 'the background refresh reaching the AS');
      await sleep(jwksDelayMs + 300); // its answer given
      jwksDelayMs = 0;

      await addKey('k2');
      const rotated = await call('/keys', await sign('/keys', 'k2'));
      assert.equal(rotated.status, 200, rotated.text);

      published.delete('k1');
      await sleep(1_200);
      // workerd: the first call still finds k1 in the (stale) set, served, and fetches the set again behind its answer.
      let res: Awaited<ReturnType<typeof call>> | undefined;
      await until(async () => (res = await call('/keys', await sign('/keys', 'k1'))).status === 401, 5_000, 'the removed key refused');
      await assertRefused(gateway, res!, { status: 401, code: -32001, rejection: 'invalid_token', reason: 'kid=k1' });
      assert.equal((await call('/keys', await sign('/keys', 'k2'))).status, 200);
    });

    it('the revocation list (no GATEWAY_STATE in workerd): served once the first poll is in, and a token revoked at the AS is refused after a later poll', async () => {
      const token = await sign('/revocable', 'k2');
      await until(async () => (await call('/revocable', token)).status === 200, 5_000, 'the first list loaded');
      const before = polls;
      const jti = randomUUID();
      const doomed = await sign('/revocable', 'k2', { jti });
      assert.equal((await call('/revocable', doomed)).status, 200);
      revoked.push(jti);
      let res: Awaited<ReturnType<typeof call>> | undefined;
      await until(async () => (res = await call('/revocable', doomed)).status === 401, 8_000, 'the revocation applied');
      await assertRefused(gateway, res!, { status: 401, code: -32001, rejection: 'invalid_token', reason: 'the token was revoked' });
      assert.ok(polls > before, 'polled again');
      assert.equal((await call('/revocable', token)).status, 200, 'another token still passes');
    });
  });
}
