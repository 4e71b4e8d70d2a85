import type { TtlCache } from './types.ts';

/** In-process short-lived state: the embedded default. Entries expire lazily and on a sweep. */
export function memoryCache(options: { maxEntries?: number } = {}): TtlCache & { close(): Promise<void> } {
  const max = options.maxEntries ?? 100_000;
  const entries = new Map<string, { value: unknown; expiresAt: number }>();
  const now = () => Date.now();
  const live = (key: string) => {
    const entry = entries.get(key);
    if (entry && entry.expiresAt <= now()) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  };
  const put = (key: string, value: unknown, ttlSeconds: number) => {
    entries.delete(key);
    // Bounded: the oldest insertion goes first (Map keeps insertion order).
    if (entries.size >= max) entries.delete(entries.keys().next().value as string);
    entries.set(key, { value, expiresAt: now() + ttlSeconds * 1000 });
  };
  const sweeper = setInterval(() => {
    const t = now();
    for (const [key, entry] of entries) if (entry.expiresAt <= t) entries.delete(key);
  }, 30_000);
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
