/**
 * A web session ended (sign-out, back-channel logout) while a request that read it before is still
 * running stays ended: that request's touch or refresh is a `renew`, which replaces a session only if
 * it is still stored (security review of issue 16). The Node stores here (memory, Redis); the
 * Durable Object one in test/edge/web-state.test.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { Redis } from 'ioredis';
import { RedisWebSessions } from '../../src/gateway/node/redis-web-sessions.ts';
import { MemoryWebSessions, type WebSession, type WebSessionStore } from '../../src/gateway/web/store.ts';
import { needsRedis, redisUrl } from '../helpers/services.ts';

const session = (overrides: Partial<WebSession> = {}): WebSession => {
  const now = Math.floor(Date.now() / 1000);
  return { route: '/app/', sub: 'user-1', sid: 'as-session-1', claims: { sub: 'user-1' }, idToken: 'i', accessToken: 'a', refreshToken: 'r', createdAt: now, lastSeenAt: now, expiresAt: now + 3600, ...overrides };
};

function renewSemantics(name: string, make: () => WebSessionStore) {
  it(`${name}: renew replaces a stored session, and brings back none ended by sign-out or back-channel logout`, async () => {
    const store = make();
    await store.save('s1', session(), 600);
    const read = (await store.get('s1'))!;
    assert.equal(await store.renew('s1', { ...read, accessToken: 'a2' }, 600), true);
    assert.equal((await store.get('s1'))!.accessToken, 'a2');
    // Signed out through another instance, after this request read it.
    await store.delete('s1');
    assert.equal(await store.renew('s1', { ...read, accessToken: 'a3' }, 600), false);
    assert.equal(await store.get('s1'), undefined, 'the sign-out holds');
    // Back-channel logout by sid, then the late write of a request that read it before.
    await store.save('s2', session(), 600);
    const before = (await store.get('s2'))!;
    assert.equal(await store.endMatching('/app/', { sid: 'as-session-1' }), 1);
    assert.equal(await store.renew('s2', before, 600), false);
    assert.equal(await store.get('s2'), undefined, 'the logout holds');
    assert.equal(await store.endMatching('/app/', { sid: 'as-session-1' }), 0, 'nothing re-indexed to end');
    assert.equal(await store.renew('never-saved', session(), 600), false);
  });
}

describe('WebSessionStore.renew (Node stores)', () => {
  renewSemantics('MemoryWebSessions', () => new MemoryWebSessions());
});

describe('WebSessionStore.renew in Redis', needsRedis(), () => {
  const clients: Redis[] = [];
  after(async () => {
    for (const client of clients) await client.quit();
  });
  renewSemantics('RedisWebSessions', () => {
    const redis = new Redis(redisUrl!);
    clients.push(redis);
    return new RedisWebSessions(redis, `test-renew-${randomUUID()}`);
  });
});
