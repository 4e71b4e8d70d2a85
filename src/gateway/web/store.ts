import type { SignedIn } from './oidc.ts';
import { digest } from './seal.ts';

/**
 * A signed-in browser at a web route: the checked sign-in (tokens, `sub`, the AS `sid` that
 * back-channel logout names, the ID token + userinfo claims the rules and assertion read), kept
 * server-side; the browser holds only its sealed id. Times in epoch seconds.
 */
export interface WebSession extends SignedIn {
  route: string;
  createdAt: number;
  lastSeenAt: number;
  /** The absolute end. */
  expiresAt: number;
}

/** An authorization request on its way: single-use, found by its `state`. */
export interface PendingSignIn {
  route: string;
  codeVerifier: string;
  nonce: string;
  /** Where the person was going: a path under the route, checked when stored. */
  returnTo: string;
  createdAt: number;
}

/**
 * Where web sessions live: in one process, or in Redis (`node/redis-web-sessions.ts`) so every
 * gateway sharing it knows them. Session ids and states are stored only as SHA-256 hashes.
 */
export interface WebSessionStore {
  /** Stores a new session (sign-in); its `sid`/`sub` indexes are in place no later than the session itself. */
  save(id: string, session: WebSession, ttlSeconds: number): Promise<void>;
  /**
   * Replaces a session (a touch, a refreshed token) only if it is still stored, atomically: false
   * when it has ended meanwhile (sign-out, back-channel logout, expiry — possibly through another
   * instance), so that a request that read it before cannot bring it back.
   */
  renew(id: string, session: WebSession, ttlSeconds: number): Promise<boolean>;
  get(id: string): Promise<WebSession | undefined>;
  delete(id: string): Promise<void>;
  /** Ends the sessions of a route that match the AS session `sid`, or the subject `sub` (back-channel logout). */
  endMatching(route: string, match: { sid?: string; sub?: string }): Promise<number>;
  putPending(state: string, pending: PendingSignIn, ttlSeconds: number): Promise<void>;
  /** Returns and forgets it: a state works once. */
  takePending(state: string): Promise<PendingSignIn | undefined>;
  /** True the first time `key` is seen within `ttlSeconds` (logout token `jti` replay). */
  firstUse(key: string, ttlSeconds: number): Promise<boolean>;
  close?(): Promise<void>;
}

/** Thrown when the shared store cannot answer: the web route then refuses (503), never guesses. */
export class WebSessionStoreUnavailable extends Error {
  constructor(cause: unknown) {
    super(`web session store unavailable: ${(cause as Error)?.message ?? String(cause)}`);
    this.name = 'WebSessionStoreUnavailable';
  }
}

interface Entry<T> {
  value: T;
  until: number;
}

/** Web sessions in this process (no REDIS_URL): a restart signs everyone out. */
export class MemoryWebSessions implements WebSessionStore {
  private readonly sessions = new Map<string, Entry<WebSession>>();
  private readonly pending = new Map<string, Entry<PendingSignIn>>();
  private readonly seen = new Map<string, number>();
  private sweptAt = 0;

  private sweep(now = Date.now()): void {
    if (now - this.sweptAt < 60_000) return;
    this.sweptAt = now;
    for (const map of [this.sessions, this.pending] as Map<string, Entry<unknown>>[]) for (const [key, entry] of map) if (entry.until <= now) map.delete(key);
    for (const [key, until] of this.seen) if (until <= now) this.seen.delete(key);
  }

  async save(id: string, session: WebSession, ttlSeconds: number): Promise<void> {
    this.sweep();
    this.sessions.set(await digest(id), { value: structuredClone(session), until: Date.now() + ttlSeconds * 1000 });
  }

  async renew(id: string, session: WebSession, ttlSeconds: number): Promise<boolean> {
    const key = await digest(id);
    const entry = this.sessions.get(key);
    if (!entry || entry.until <= Date.now()) return false;
    this.sessions.set(key, { value: structuredClone(session), until: Date.now() + ttlSeconds * 1000 });
    return true;
  }

  async get(id: string): Promise<WebSession | undefined> {
    const key = await digest(id);
    const entry = this.sessions.get(key);
    if (!entry) return undefined;
    if (entry.until <= Date.now()) {
      this.sessions.delete(key);
      return undefined;
    }
    return structuredClone(entry.value);
  }

  async delete(id: string): Promise<void> {
    this.sessions.delete(await digest(id));
  }

  async endMatching(route: string, match: { sid?: string; sub?: string }): Promise<number> {
    let ended = 0;
    for (const [key, { value }] of this.sessions) {
      if (value.route !== route) continue;
      if (sessionMatches(value, match)) {
        this.sessions.delete(key);
        ended++;
      }
    }
    return ended;
  }

  async putPending(state: string, pending: PendingSignIn, ttlSeconds: number): Promise<void> {
    this.sweep();
    this.pending.set(await digest(state), { value: pending, until: Date.now() + ttlSeconds * 1000 });
  }

  async takePending(state: string): Promise<PendingSignIn | undefined> {
    const key = await digest(state);
    const entry = this.pending.get(key);
    this.pending.delete(key);
    return entry && entry.until > Date.now() ? entry.value : undefined;
  }

  async firstUse(key: string, ttlSeconds: number): Promise<boolean> {
    this.sweep();
    const until = this.seen.get(key);
    if (until !== undefined && until > Date.now()) return false;
    this.seen.set(key, Date.now() + ttlSeconds * 1000);
    return true;
  }
}

/**
 * OpenID Connect Back-Channel Logout 1.0 §2.7: with a `sid`, the sessions of that AS session (and
 * of that `sub`, when given too); with only a `sub`, every session of the subject.
 */
export function sessionMatches(session: Pick<WebSession, 'sid' | 'sub'>, match: { sid?: string; sub?: string }): boolean {
  if (match.sid !== undefined) return session.sid === match.sid && (match.sub === undefined || session.sub === match.sub);
  return match.sub !== undefined && session.sub === match.sub;
}
