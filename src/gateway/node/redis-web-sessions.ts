import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { sessionMatches, type PendingSignIn, type WebSession, type WebSessionStore } from '../web/store.ts';

const hash = (value: string) => createHash('sha256').update(value).digest('base64url');

/**
 * Web sessions shared by every gateway with the same Redis and key prefix (issue 15), so a browser
 * signed in through one instance is signed in on all of them, and a back-channel logout received
 * by one ends the session everywhere. Keys hold SHA-256 hashes of the session ids and states; each
 * session is also listed under its route's `sid` and `sub` index sets for back-channel logout.
 */
export class RedisWebSessions implements WebSessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
  ) {}

  private sessionKey(digest: string): string {
    return `${this.prefix}:web:session:${digest}`;
  }

  private indexKey(route: string, kind: 'sid' | 'sub', value: string): string {
    return `${this.prefix}:web:${kind}:${hash(`${route}\n${value}`)}`;
  }

  async save(id: string, session: WebSession, ttlSeconds: number): Promise<void> {
    const digest = hash(id);
    const ttlMs = ttlSeconds * 1000;
    const keepIndexMs = Math.max(ttlMs, (session.expiresAt - Math.floor(Date.now() / 1000)) * 1000);
    const multi = this.redis.multi().set(this.sessionKey(digest), JSON.stringify(session), 'PX', ttlMs);
    for (const [kind, value] of [['sub', session.sub], ['sid', session.sid]] as const) {
      if (value === undefined) continue;
      const key = this.indexKey(session.route, kind, value);
      multi.sadd(key, digest).pexpire(key, keepIndexMs);
    }
    await multi.exec();
  }

  /** `SET … XX`: only an existing session is replaced (its indexes, set at sign-in, already outlive it). */
  async renew(id: string, session: WebSession, ttlSeconds: number): Promise<boolean> {
    return (await this.redis.set(this.sessionKey(hash(id)), JSON.stringify(session), 'PX', ttlSeconds * 1000, 'XX')) === 'OK';
  }

  async get(id: string): Promise<WebSession | undefined> {
    const stored = await this.redis.get(this.sessionKey(hash(id)));
    return stored === null ? undefined : (JSON.parse(stored) as WebSession);
  }

  async delete(id: string): Promise<void> {
    await this.redis.del(this.sessionKey(hash(id)));
  }

  async endMatching(route: string, match: { sid?: string; sub?: string }): Promise<number> {
    const index = match.sid !== undefined ? this.indexKey(route, 'sid', match.sid) : match.sub !== undefined ? this.indexKey(route, 'sub', match.sub) : undefined;
    if (!index) return 0;
    let ended = 0;
    for (const digest of await this.redis.smembers(index)) {
      const stored = await this.redis.get(this.sessionKey(digest));
      if (stored === null) continue;
      const session = JSON.parse(stored) as WebSession;
      if (session.route === route && sessionMatches(session, match)) ended += await this.redis.del(this.sessionKey(digest));
    }
    return ended;
  }

  async putPending(state: string, pending: PendingSignIn, ttlSeconds: number): Promise<void> {
    await this.redis.set(`${this.prefix}:web:pending:${hash(state)}`, JSON.stringify(pending), 'EX', ttlSeconds);
  }

  async takePending(state: string): Promise<PendingSignIn | undefined> {
    const stored = await this.redis.getdel(`${this.prefix}:web:pending:${hash(state)}`);
    return stored === null ? undefined : (JSON.parse(stored) as PendingSignIn);
  }

  async firstUse(key: string, ttlSeconds: number): Promise<boolean> {
    return (await this.redis.set(`${this.prefix}:web:seen:${hash(key)}`, '1', 'EX', ttlSeconds, 'NX')) === 'OK';
  }
}

/**
 * Key material every gateway sharing the Redis must agree on (the identity assertion key, the
 * default cookie key): the first instance to start writes it, the others read it. Redis already
 * holds the sessions' refresh tokens, so it is trusted with these too.
 */
export async function sharedWebSecret(redis: Redis, prefix: string, name: string, make: () => string | Promise<string>): Promise<string> {
  const key = `${prefix}:web:${name}`;
  const found = await redis.get(key);
  if (found !== null) return found;
  await redis.set(key, await make(), 'NX');
  return (await redis.get(key))!;
}
