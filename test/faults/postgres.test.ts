import assert from 'node:assert/strict';
import { after, afterEach, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { postForm } from '../helpers/auth-server.ts';
import { hashSecret } from '../../src/auth-server/hash.ts';
import { FAULT_APP, freshCode, isUnavailable, redeem, refresh, startFaultAuthServer, processCrashes, type FaultAuthServer } from '../helpers/fault-servers.ts';
import { postgresAvailable, startPrivatePostgres, until, type PrivatePostgres } from '../helpers/private-services.ts';
import { skipUnless } from '../helpers/services.ts';

/**
 * Issue 11, items 8 and 9: PostgreSQL restarted, crashed and down under a bounded load of refresh
 * rotations and code redemptions. No crash, no lost or half-written grant, 503 (never 500) while
 * it is down, and recovery on its own once it is back.
 */
describe('fault suite: PostgreSQL restarts and outages', skipUnless(postgresAvailable(), 'fault suite: PostgreSQL server binaries (initdb, pg_ctl) are not installed'), () => {
  let pg: PrivatePostgres;
  let as: FaultAuthServer;

  before(async () => {
    pg = await startPrivatePostgres();
    as = await startFaultAuthServer({ driver: 'postgres', env: { DATABASE_URL: pg.url } });
  });
  after(async () => {
    await as?.close();
    as?.remove();
    await pg?.close();
  });
  // Whatever would have killed a service process fails the test that caused it.
  afterEach(() => assert.deepEqual(processCrashes(), []));

  const alive = async (server = as) => (await fetch(`${server.issuer}/.well-known/oauth-authorization-server`)).status === 200;
  const unhandled = (server = as) => server.logs.filter((line) => line.msg === 'unhandled error');

  it('idle connections cut by a restart: logged, no crash, the next request reconnects', async () => {
    // Several requests at once leave several idle connections in the pool.
    await Promise.all(Array.from({ length: 6 }, () => refresh(as, 'unknown-refresh-token')));
    const lost = as.logs.filter((line) => line.msg === 'database connection lost').length;
    await pg.stop('fast');
    await until(async () => as.logs.filter((line) => line.msg === 'database connection lost').length > lost, 10_000, 'the lost connections noticed');
    assert.ok(await alive());
    await pg.start();
    await until(async () => (await refresh(as, 'unknown-refresh-token')).status === 400, 15_000, 'queries working again');
  });

  it('a restart and a crash under load: every grant survives, 503 while down, recovery on its own', async () => {
    const signIn = new FormBrowser(as.issuer);
    const grants: { refreshToken: string }[] = [];
    for (let i = 0; i < 8; i++) {
      const res = await redeem(as, await freshCode(as, signIn));
      assert.equal(res.status, 200, res.text);
      grants.push({ refreshToken: res.json.refresh_token as string });
    }
    const codes = await Promise.all(Array.from({ length: 4 }, () => freshCode(as, signIn)));
    // Codes the load redeems one after the other, through the outages.
    const queued = await Promise.all(Array.from({ length: 12 }, () => freshCode(as, signIn)));

    // The load: each grant refreshed in a loop; a 503 keeps the token it had, as a client would.
    const seen = { ok: 0, unavailable: 0, other: [] as string[] };
    let running = true;
    const workers = grants.map(async (grant) => {
      while (running) {
        const res = await refresh(as, grant.refreshToken);
        if (res.status === 200) {
          grant.refreshToken = res.json.refresh_token as string;
          seen.ok++;
        } else if (isUnavailable(res)) seen.unavailable++;
        else seen.other.push(`${res.status} ${res.text}`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    });
    const redeemed: { refreshToken: string }[] = [];
    const codeWorker = (async () => {
      for (const code of queued) {
        for (;;) {
          const res = await redeem(as, code);
          if (res.status === 200) {
            redeemed.push({ refreshToken: res.json.refresh_token as string });
            break;
          }
          if (!isUnavailable(res)) {
            seen.other.push(`code: ${res.status} ${res.text}`);
            break;
          }
          seen.unavailable++;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
        // Spread over the run, so that redemptions meet the outages.
        if (running) await new Promise((resolve) => setTimeout(resolve, 100));
      }
    })();
    const okAfter = async (count: number) => {
      const target = seen.ok + count;
      return until(async () => seen.ok >= target, 20_000, 'refreshes succeeding again', 20);
    };
    try {
      await okAfter(40);

      // 1. A clean restart (clients disconnected with 57P01).
      await pg.stop('fast');
      const unavailableAtStop = seen.unavailable;
      await until(async () => seen.unavailable >= unavailableAtStop + 8, 10_000, '503s while the database is down', 20);
      const duringRestart = await redeem(as, codes[0]!);
      assert.ok(isUnavailable(duringRestart), `a code redeemed while the database is down: ${duringRestart.status} ${duringRestart.text}`);
      assert.ok(await alive(), 'metadata is served while the database is down');
      await pg.start();
      const restartRecovery = await okAfter(8);

      // 2. A crash (no shutdown: connections just drop), then an outage with requests failing.
      await pg.stop('immediate');
      const unavailableBefore = seen.unavailable;
      await until(async () => seen.unavailable >= unavailableBefore + 16, 10_000, '503s while the database is down', 20);
      assert.ok(isUnavailable(await redeem(as, codes[1]!)));
      await pg.start();
      const crashRecovery = await okAfter(8);
      console.log(`# PostgreSQL faults: ${seen.ok} refreshes and ${redeemed.length} code redemptions by then, ${seen.unavailable} requests answered 503 while down; recovery after restart ${restartRecovery} ms, after crash ${crashRecovery} ms`);
    } finally {
      running = false;
      await Promise.all([...workers, codeWorker]);
    }

    assert.deepEqual(seen.other, [], 'no refresh was refused for another reason than the outage');
    assert.ok(seen.unavailable > 0, 'the outage was seen by the load');
    // No lost or half-written grant: every grant's last refresh token still works.
    for (const grant of grants) {
      const res = await refresh(as, grant.refreshToken);
      assert.equal(res.status, 200, res.text);
    }
    assert.equal(redeemed.length, queued.length, 'every code of the load redeemed, once');
    for (const grant of redeemed) {
      const res = await refresh(as, grant.refreshToken);
      assert.equal(res.status, 200, res.text);
    }
    // A code refused during the outage was not spent: it redeems now, once.
    for (const code of codes) {
      const res = await redeem(as, code);
      assert.equal(res.status, 200, res.text);
    }
    assert.deepEqual(unhandled(), [], 'no request ended in an unhandled error');
    assert.ok(as.logs.some((line) => line.msg === 'a dependency is unavailable; answered 503'), 'the 503s are logged with their reason');
  });

  it('a revocation racing refreshes leaves nothing alive: every token of the grant is revoked', async () => {
    const signIn = new FormBrowser(as.issuer);
    const tokens: string[] = [];
    for (let i = 0; i < 6; i++) {
      const res = await redeem(as, await freshCode(as, signIn));
      assert.equal(res.status, 200, res.text);
      tokens.push(res.json.refresh_token as string);
    }
    const issued: string[] = [...tokens];
    await Promise.all(
      tokens.map(async (token) => {
        const revoke = postForm(`${as.issuer}/revoke`, { token, client_id: FAULT_APP.client_id });
        const refreshes = [refresh(as, token), refresh(as, token), refresh(as, token)];
        assert.equal((await revoke).status, 200);
        for (const res of await Promise.all(refreshes)) {
          if (res.status === 200) issued.push(res.json.refresh_token as string);
          else assert.equal(res.json.error, 'invalid_grant', res.text);
        }
      }),
    );
    for (const token of issued) {
      const record = await as.store.grants.findRefreshToken(hashSecret(token));
      assert.ok(record?.revokedAt, 'no refresh token of a revoked grant is left alive');
      assert.equal((await refresh(as, token)).json.error, 'invalid_grant');
    }
  });

  it('starts while the database is down, answers 503 but serves its keys, and recovers by itself', async () => {
    await pg.stop('fast');
    let second: FaultAuthServer | undefined;
    try {
      second = await startFaultAuthServer({ driver: 'postgres', env: { DATABASE_URL: pg.url } });
      assert.ok(await alive(second));
      assert.equal((await fetch(`${second.issuer}/jwks`)).status, 200, 'gateways can fetch the keys');
      const res = await refresh(second, 'unknown-refresh-token');
      assert.ok(isUnavailable(res), `${res.status} ${res.text}`);
      assert.ok(second.logs.some((line) => line.msg === 'database unavailable at start; answering 503 and retrying in the background'));
      await pg.start();
      const started = Date.now();
      const server = second;
      await until(async () => (await refresh(server, 'unknown-refresh-token')).status === 400, 15_000, 'the AS serving once the database is back');
      console.log(`# PostgreSQL down at start: serving ${Date.now() - started} ms after it came back`);
      const signed = await redeem(second, await freshCode(second, new FormBrowser(second.issuer)));
      assert.equal(signed.status, 200, signed.text);
      assert.equal((await refresh(second, 'unknown-refresh-token')).json.error, 'invalid_grant');
    } finally {
      await second?.close();
      second?.remove();
    }
  });
});
