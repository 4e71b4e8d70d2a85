import type { TtlCache } from '../store/types.ts';

/**
 * Each user's sign-in sessions, indexed beside the sessions themselves (in the short-lived cache,
 * shared through Redis when configured), so an admin can list them and sign a user out. The
 * entries hold the sessions' cookie ids, which are secret: they never leave the server.
 */
export interface SessionEntry {
  /** The cookie value (`session:<id>` in the cache). */
  id: string;
  /** The public session id, which tokens and grants carry as `sid`. */
  sid: string;
  authTime: number;
  /** When the session began, if not at `authTime` (a remembered sign-in keeps an older `authTime`). */
  startedAt?: number;
  /** The hash of the browser's device cookie, when it had one. */
  device?: string;
}

/**
 * A user's sessions at most: a new one beyond this ends the oldest. An unindexed session could not
 * be signed out (admin sign-out, a password change), so a thief with the password could otherwise
 * sign in this many times more to keep one session out of every sign-out's reach.
 */
export const MAX_INDEXED = 50;

const key = (sub: string) => `user-sessions:${sub}`;

/** Adds a session to its user's index; read-modify-write with compare-and-set, retried on a race. */
export async function indexSession(cache: TtlCache, sub: string, entry: SessionEntry, ttlSeconds: number, now: number): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await cache.get<SessionEntry[]>(key(sub));
    // A continued session (signed in again in the same browser) replaces its entry.
    const all = [...(current ?? []).filter((s) => (s.startedAt ?? s.authTime) + ttlSeconds > now && s.sid !== entry.sid), entry];
    const next = all.slice(-MAX_INDEXED);
    const written = current === undefined ? await cache.add(key(sub), next, ttlSeconds) : await cache.swap(key(sub), current, next, ttlSeconds);
    if (written) {
      for (const evicted of all.slice(0, -MAX_INDEXED)) await cache.delete(`session:${evicted.id}`);
      return;
    }
  }
}

/** The user's sessions that still exist (signed-out and expired ones are left out). */
export async function userSessions(cache: TtlCache, sub: string): Promise<SessionEntry[]> {
  const entries = (await cache.get<SessionEntry[]>(key(sub))) ?? [];
  const alive = await Promise.all(entries.map(async (e) => ((await cache.get(`session:${e.id}`)) ? e : undefined)));
  return alive.filter((e): e is SessionEntry => e !== undefined);
}

/**
 * Ends the user's sessions (those with `sid`, or all): the browser must sign in again. Returns those
 * ended. They leave the index too. To also tell the clients (back-channel logout) and revoke what was
 * granted in them, call `endSessionsAndNotify` (sign-out.ts) instead.
 */
export async function endSessions(cache: TtlCache, sub: string, sid?: string, indexTtlSeconds = 30 * 86_400, device?: string): Promise<SessionEntry[]> {
  const ended = (await userSessions(cache, sub)).filter((e) => sid === undefined || e.sid === sid || (device !== undefined && e.device === device));
  for (const entry of ended) await cache.delete(`session:${entry.id}`);
  if (ended.length > 0) await unindexSessions(cache, sub, new Set(ended.map((e) => e.id)), indexTtlSeconds);
  return ended;
}

/** Removes entries from the user's index (compare-and-set, retried on a race), which lives `ttlSeconds` more (the session lifetime). */
async function unindexSessions(cache: TtlCache, sub: string, ids: Set<string>, ttlSeconds: number): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const current = await cache.get<SessionEntry[]>(key(sub));
    if (current === undefined) return;
    const next = current.filter((e) => !ids.has(e.id));
    if (next.length === current.length) return;
    if (await cache.swap(key(sub), current, next.length > 0 ? next : undefined, ttlSeconds)) return;
  }
}
