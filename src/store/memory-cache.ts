import type { TtlCache } from './types.ts';

/**
 * The memory cache is full of live entries: the write is refused rather than any live entry
 * forgotten (a forgotten single-use marker — a DPoP, ID-JAG, workload or client assertion `jti` —
 * could then be replayed). The caller answers 503 `temporarily_unavailable`.
 */
export class CacheFullError extends Error {
  override name = 'CacheFullError';
}

/** At most one full scan for expired entries per this many milliseconds while the cache is full. */
const PRUNE_INTERVAL_MS = 1000;

/**
 * In-process short-lived state: the embedded default. Entries expire lazily and on a sweep. Bounded:
 * when `maxEntries` live entries are held, a new key is refused with CacheFullError (fail closed),
 * never stored by evicting another.
 */
export function memoryCache(options: { maxEntries?: number } = {}): TtlCache & { close(): Promise<void> } {
  const max = options.maxEntries ?? 100_000;
  const entries = new Map<string, { value: unknown; expiresAt: number }>();
  const now = () => Date.now();
  let prunedAt = 0;
  const prune = (t: number) => {
    prunedAt = t;
    for (const [key, entry] of entries) if (entry.expiresAt <= t) entries.delete(key);
  };
  const live = (key: string) => {
    const entry = entries.get(key);
    if (entry && entry.expiresAt <= now()) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  };
  const put = (key: string, value: unknown, ttlSeconds: number) => {
    const t = now();
    // Bounded without forgetting: a full cache first drops what expired (one scan a second at
    // most, so a flood costs no scan per request), then refuses a new key.
    if (!entries.has(key) && entries.size >= max && t - prunedAt >= PRUNE_INTERVAL_MS) prune(t);
    if (!entries.has(key) && entries.size >= max) throw new CacheFullError(`the in-memory cache is full (${max} live entries); set REDIS_URL`);
    entries.delete(key);
    entries.set(key, { value, expiresAt: t + ttlSeconds * 1000 });
  };
  const sweeper = setInterval(() => prune(now()), 30_000);
  sweeper.unref();
  return {
    async get<T>(key: string) {
      return live(key)?.value as T | undefined;
    },
    async set(key, value, ttlSeconds) {
      put(key, value, ttlSeconds);
    },
    async delete(key) {
      entries.delete(key);
    },
    async add(key, value, ttlSeconds) {
      if (live(key)) return false;
      put(key, value, ttlSeconds);
      return true;
    },
    async swap(key, expected, next, ttlSeconds) {
      // One synchronous step: nothing else runs in this process between the compare and the write.
      const entry = live(key);
      if (!entry || JSON.stringify(entry.value) !== JSON.stringify(expected)) return false;
      if (next === undefined) entries.delete(key);
      else put(key, next, ttlSeconds);
      return true;
    },
    async close() {
      clearInterval(sweeper);
    },
  };
}

/**
 * The cache with every write refused by a full memory cache (CacheFullError) turned into `refusal`:
 * the server answers it (503 `temporarily_unavailable`) and audits the reason.
 */
export function onCacheFull<C extends TtlCache>(cache: C, refusal: (key: string, error: CacheFullError) => Error): C {
  const guard = async <T>(key: string, write: () => Promise<T>): Promise<T> => {
    try {
      return await write();
    } catch (error) {
      if (error instanceof CacheFullError) throw refusal(key, error);
      throw error;
    }
  };
  return {
    ...cache,
    set: (key, value, ttlSeconds) => guard(key, () => cache.set(key, value, ttlSeconds)),
    add: (key, value, ttlSeconds) => guard(key, () => cache.add(key, value, ttlSeconds)),
    swap: (key, expected, next, ttlSeconds) => guard(key, () => cache.swap(key, expected, next, ttlSeconds)),
  };
}
