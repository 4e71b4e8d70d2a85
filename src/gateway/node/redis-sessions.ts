import { createHash } from 'node:crypto';
import type { Redis } from 'ioredis';
import { DEFAULT_SESSION_IDLE_SECONDS, SessionStoreUnavailable, sessionVerdict, type SessionOwner, type SessionStore, type SessionVerdict } from '../sessions.ts';

/**
 * Bindings shared by every gateway with the same Redis and key prefix, so a session opened through
 * one instance is its opener's on all of them and survives restarts. Keys hold a hash of the
 * session id (it is a bearer secret for the upstream); the TTL is the idle lifetime, renewed on
 * each use. Redis errors are `SessionStoreUnavailable`: the caller fails closed.
 */
export class RedisSessionBindings implements SessionStore {
  constructor(
    private readonly redis: Redis,
    private readonly prefix: string,
    private readonly idleMs = DEFAULT_SESSION_IDLE_SECONDS * 1000,
  ) {}

  private key(sessionId: string): string {
    return `${this.prefix}:session:${createHash('sha256').update(sessionId).digest('base64url')}`;
  }

  private async run<T>(command: () => Promise<T>): Promise<T> {
    try {
      return await command();
    } catch (error) {
      throw new SessionStoreUnavailable(error);
    }
  }

  async bind(sessionId: string, owner: SessionOwner): Promise<void> {
    // NX: the first owner keeps the session, whatever an upstream hands out later.
    await this.run(() => this.redis.set(this.key(sessionId), JSON.stringify({ sub: owner.sub, clientId: owner.clientId }), 'PX', this.idleMs, 'NX'));
  }

  async check(sessionId: string, owner: SessionOwner): Promise<SessionVerdict> {
    // One round trip: read and renew. Renewing someone else's binding only keeps it theirs.
    const stored = await this.run(() => this.redis.getex(this.key(sessionId), 'PX', this.idleMs));
    if (stored === null) return 'unknown';
    let parsed: SessionOwner;
    try {
      parsed = JSON.parse(stored) as SessionOwner;
    } catch (error) {
      throw new SessionStoreUnavailable(error);
    }
    return typeof parsed?.sub === 'string' ? sessionVerdict(parsed, owner) : 'other_subject';
  }

  async end(sessionId: string): Promise<void> {
    await this.run(() => this.redis.del(this.key(sessionId)));
  }
}
