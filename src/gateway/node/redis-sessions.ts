import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import { DEFAULT_SESSION_IDLE_SECONDS, SessionStoreUnavailable, sessionVerdict, type SessionOwner, type SessionStore, type SessionVerdict, type UpstreamSessions } from '../sessions.ts';

/**
 * Bindings shared by every gateway with the same Redis and key prefix, so a session opened through
 * one instance is its opener's on all of them and survives restarts. Keys hold a hash of the
 * session id (it is a bearer secret for the upstream); the TTL is the idle lifetime, renewed on
 * each use. Redis errors are `SessionStoreUnavailable`: the caller fails closed. The upstream
 * session ids of a multiplexed route's session are kept in the same record as its owner (so one
 * renewal keeps both, and one delete ends both), sealed (AES-256-GCM) with a key derived from the
 * gateway's session id, which Redis never holds: whoever reads Redis cannot ride them.
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

  private static sealKey(sessionId: string): Buffer {
    return createHash('sha256').update('mandate mux upstream sessions\0').update(sessionId).digest();
  }

  /**
   * Adds the sealed upstream sessions to the binding's record, keeping its TTL, in one atomic step.
   * Throws when the binding is gone: a session whose upstreams cannot be kept must not be handed out.
   */
  async setUpstreams(sessionId: string, upstreams: UpstreamSessions): Promise<void> {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', RedisSessionBindings.sealKey(sessionId), iv);
    const sealed = Buffer.concat([iv, cipher.update(JSON.stringify(upstreams), 'utf8'), cipher.final(), cipher.getAuthTag()]).toString('base64url');
    const kept = await this.run(() => this.redis.eval(SET_UPSTREAMS, 1, this.key(sessionId), sealed));
    if (kept !== 1) throw new SessionStoreUnavailable(new Error('the session binding is gone'));
  }

  /** The session's upstream sessions (undefined: none kept, or no such session); renews the record, as `check` does. */
  async upstreams(sessionId: string): Promise<UpstreamSessions | undefined> {
    const stored = await this.run(() => this.redis.getex(this.key(sessionId), 'PX', this.idleMs));
    if (stored === null) return undefined;
    try {
      const sealed = (JSON.parse(stored) as { upstreams?: unknown }).upstreams;
      if (typeof sealed !== 'string') return undefined;
      const bytes = Buffer.from(sealed, 'base64url');
      const decipher = createDecipheriv('aes-256-gcm', RedisSessionBindings.sealKey(sessionId), bytes.subarray(0, 12));
      decipher.setAuthTag(bytes.subarray(bytes.length - 16));
      return JSON.parse(Buffer.concat([decipher.update(bytes.subarray(12, bytes.length - 16)), decipher.final()]).toString('utf8')) as UpstreamSessions;
    } catch (error) {
      throw new SessionStoreUnavailable(error);
    }
  }
}

/** KEYS[1] the binding, ARGV[1] the sealed upstream sessions: 1 once added (TTL kept), 0 when there is no binding. */
const SET_UPSTREAMS = `
local stored = redis.call('GET', KEYS[1])
if not stored then return 0 end
local record = cjson.decode(stored)
record.upstreams = ARGV[1]
redis.call('SET', KEYS[1], cjson.encode(record), 'KEEPTTL')
return 1
`;
