import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { FormBrowser } from '../helpers/browser-driver.ts';
import { postForm } from '../helpers/auth-server.ts';
import { R, auth, startDelegationServer } from '../helpers/delegation-server.ts';
import { hashSecret } from '../../src/auth-server/hash.ts';
import { deviceKey } from '../../src/auth-server/device.ts';

const DEVICE = 'urn:ietf:params:oauth:grant-type:device_code';

/**
 * Item 17: the device record is changed by polls and by the person's decision at the same time.
 * The races are forced, not hoped for: the cache's `get` of the device record is held while the
 * competing request runs. The shared Redis is used when REDIS_URL is set (as in CI), else memory.
 */
describe('device grant races (RFC 8628)', () => {
  let as: Awaited<ReturnType<typeof startDelegationServer>>;
  let realGet: typeof as.ctx.cache.get;
  before(async () => {
    as = await startDelegationServer({ tokens: { device_poll_interval: 1 } });
    realGet = as.ctx.cache.get.bind(as.ctx.cache);
  });
  after(async () => {
    as.ctx.cache.get = realGet;
    await as.close();
  });

  const start = async () => {
    const res = await postForm(`${as.issuer}/device_authorization`, { scope: 'banking:read', resource: R.agent }, auth.agent);
    assert.equal(res.status, 200, res.text);
    return res.json as { device_code: string; user_code: string };
  };
  const poll = (deviceCode: string) => postForm(`${as.issuer}/token`, { grant_type: DEVICE, device_code: deviceCode }, auth.agent);

  /** Makes the next `gets` reads of `key` wait (after reading) until `release` resolves. */
  const holdReads = (key: string, gets: number, release: (count: number) => Promise<void> | void) => {
    let held = 0;
    const waiting: (() => void)[] = [];
    as.ctx.cache.get = (async (k: string) => {
      const value = await realGet(k);
      if (k !== key || held >= gets) return value;
      held++;
      await new Promise<void>((resolve) => {
        waiting.push(resolve);
        if (waiting.length === gets) {
          void Promise.resolve(release(held)).then(() => waiting.splice(0).forEach((r) => r()));
        }
      });
      return value;
    }) as typeof realGet;
  };

  it('a poll read before the approval does not write its stale pending record over it', async () => {
    const device = await start();
    const key = deviceKey(hashSecret(device.device_code));
    // The poll reads `pending`; the person approves; only then does the poll write.
    holdReads(key, 1, async () => {
      as.ctx.cache.get = realGet;
      const done = await new FormBrowser(as.issuer).approveDevice(device.user_code);
      assert.match(done.html, /Device connected/);
    });
    const raced = await poll(device.device_code);
    as.ctx.cache.get = realGet;
    // The racing poll may see either state; the approval must survive it.
    assert.ok([200, 400].includes(raced.status), raced.text);
    if (raced.status === 400) {
      const record = await realGet<{ status: string }>(key);
      assert.equal(record?.status, 'approved', 'the approval survived the racing poll');
      let token = await poll(device.device_code);
      for (let i = 0; i < 20 && token.json.error === 'slow_down'; i++) {
        await new Promise((r) => setTimeout(r, 250));
        token = await poll(device.device_code);
      }
      assert.equal(token.status, 200, token.text);
    }
  });

  it('an approved code is redeemed once, however many polls read it at the same time', async () => {
    const device = await start();
    const key = deviceKey(hashSecret(device.device_code));
    const done = await new FormBrowser(as.issuer).approveDevice(device.user_code);
    assert.match(done.html, /Device connected/);
    // Four polls all read `approved` before any of them acts on it.
    holdReads(key, 4, () => undefined);
    const results = await Promise.all([1, 2, 3, 4].map(() => poll(device.device_code)));
    as.ctx.cache.get = realGet;
    const ok = results.filter((r) => r.status === 200);
    assert.equal(ok.length, 1, `exactly one redemption: ${results.map((r) => r.status).join(',')}`);
    const refused = results.filter((r) => r.status !== 200);
    for (const r of refused) {
      assert.equal(r.status, 400);
      assert.equal(r.json.error, 'expired_token');
    }
    await as.ctx.audit.flush();
    const events = await as.store.audit.list({ type: 'token.refused', clientId: 'sample-agent' });
    const concurrent = events.filter((e) => e.reason === 'device code redeemed concurrently' && e.error === 'expired_token');
    assert.ok(concurrent.length >= 1, 'the audit names the concurrent redemption');
    const grants = await as.store.audit.list({ type: 'token.issued', clientId: 'sample-agent' });
    assert.equal(grants.filter((e) => (e.data as { grant_type?: string } | undefined)?.grant_type === DEVICE).length >= 1, true);
  });
});
