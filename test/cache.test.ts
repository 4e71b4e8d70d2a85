import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { randomUUID } from 'node:crypto';
import { memoryCache, redisCache, type TtlCache } from '../src/store/index.ts';
import { needsRedis, redisUrl } from './helpers/services.ts';

/** The short-lived state store, on every backend available here. */
function cacheSuite(name: string, options: { skip: string | false }, open: () => TtlCache & { close(): Promise<void> }) {
  describe(`short-lived state in ${name}`, options, () => {
    let cache: TtlCache & { close(): Promise<void> };
    const key = () => `test:${randomUUID()}`;
    before(() => {
      cache = open();
    });
    after(async () => cache?.close());

    it('stores JSON values and deletes them', async () => {
      const k = key();
      await cache.set(k, { sub: 'u1', n: 2 }, 60);
      assert.deepEqual(await cache.get(k), { sub: 'u1', n: 2 });
      await cache.delete(k);
      assert.equal(await cache.get(k), undefined);
    });

    it('add() succeeds once: replay detection', async () => {
      const k = key();
      const results = await Promise.all([cache.add(k, 1, 60), cache.add(k, 1, 60), cache.add(k, 1, 60)]);
      assert.deepEqual(results.sort(), [false, false, true]);
    });

    it('swap() is a compare-and-set: one writer of many wins, a stale read never overwrites', async () => {
      const k = key();
      await cache.set(k, { status: 'pending', n: 1 }, 60);
      const read = await cache.get(k);
      const results = await Promise.all([1, 2, 3].map((n) => cache.swap(k, read, { status: 'pending', n: n + 1 }, 60)));
      assert.deepEqual(results.sort(), [false, false, true]);
      assert.equal(await cache.swap(k, read, { status: 'stale' }, 60), false, 'the value read is no longer there');
      const now = await cache.get(k);
      assert.equal(await cache.swap(k, now, undefined, 60), true, 'an undefined next value deletes');
      assert.equal(await cache.get(k), undefined);
      assert.equal(await cache.swap(k, now, 1, 60), false, 'nothing to compare against');
    });

    it('forgets a value after its TTL', async () => {
      const k = key();
      await cache.set(k, 'x', 1);
      await new Promise((r) => setTimeout(r, 1300));
      assert.equal(await cache.get(k), undefined);
      assert.equal(await cache.add(k, 'y', 1), true, 'and the key can be taken again');
    });
  });
}

cacheSuite('memory', { skip: false }, () => memoryCache());
cacheSuite('Redis', needsRedis(), () => redisCache(redisUrl!, { prefix: `mandate-test:${randomUUID()}:` }));
