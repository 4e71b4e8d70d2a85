import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { endSessions, indexSession, MAX_INDEXED } from '../../src/auth-server/session-index.ts';
import { memoryCache } from '../../src/store/memory-cache.ts';

/**
 * Security review of issue 15: "sign out everywhere" (admin sessions.revoke, a password change)
 * reaches every session of the user. A thief who signs in more than the index holds must not keep
 * the oldest session out of its reach: beyond the cap, the oldest session ends.
 */
describe('session index: no session out of a sign-out\'s reach', () => {
  it(`a session pushed out of the index by ${MAX_INDEXED} newer ones ends; signing out everywhere then leaves none`, async () => {
    const cache = memoryCache();
    try {
      const ttl = 28_800;
      const now = 1_000_000;
      for (let i = 0; i <= MAX_INDEXED; i++) {
        await cache.set(`session:cookie-${i}`, { id: `cookie-${i}`, sid: `sid-${i}`, sub: 'u1' }, ttl);
        await indexSession(cache, 'u1', { id: `cookie-${i}`, sid: `sid-${i}`, authTime: now + i }, ttl, now + i);
      }
      assert.equal(await cache.get('session:cookie-0'), undefined, 'the oldest (the thief\'s first) ended');
      assert.ok(await cache.get('session:cookie-1'), 'the others live');
      const ended = await endSessions(cache, 'u1');
      assert.equal(ended.length, MAX_INDEXED);
      for (let i = 0; i <= MAX_INDEXED; i++) assert.equal(await cache.get(`session:cookie-${i}`), undefined, `session ${i} is over`);
    } finally {
      await cache.close();
    }
  });
});
