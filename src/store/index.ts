export * from './types.ts';
export * from './pin-store.ts';
export { openSqlStore, type SqlStore } from './sql-store.ts';
export { memoryCache } from './memory-cache.ts';
export { redisCache } from './redis-cache.ts';
export type { Driver } from './db.ts';
export { cachedClientStore } from './cached-clients.ts';
