/**
 * Whether an error means a dependency (PostgreSQL, SQLite, Redis) cannot serve right now, rather
 * than a bug or bad input: the request is then answered 503 `temporarily_unavailable` with
 * `Retry-After` (RFC 6749 §4.1.2.1, RFC 9110 §10.2.3) and the client tries again, instead of a 500
 * that tells it nothing, or a crash. Returns a short reason for the log, or undefined.
 */
export function unavailableReason(error: unknown): string | undefined {
  for (let e = error, depth = 0; e && typeof e === 'object' && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const { code, name, message } = e as { code?: unknown; name?: unknown; message?: unknown };
    if (typeof code === 'string') {
      if (NETWORK_CODES.has(code)) return `connection: ${code}`;
      // PostgreSQL SQLSTATE class 08 (connection exception), 57P01-03 (shutdown, crash, starting
      // up) and 53300 (too many connections): PostgreSQL manual, appendix A.
      if (/^08[0-9A-Z]{3}$/.test(code) || code === '57P01' || code === '57P02' || code === '57P03' || code === '53300') return `postgres: ${code}`;
      // Another writer holds the SQLite file longer than busy_timeout.
      if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED')) return `sqlite: ${code}`;
    }
    if (name === 'MaxRetriesPerRequestError') return 'redis: unreachable';
    if (typeof message === 'string' && PATTERNS.some((p) => p.test(message))) return message;
  }
  return undefined;
}

const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);

/** node-postgres and ioredis say these without a code. */
const PATTERNS = [
  /^Connection terminated/,
  /^timeout exceeded when trying to connect$/,
  /^Client has encountered a connection error and is not queryable$/,
  /^Connection is closed\.?$/,
  /enableOfflineQueue options is false/,
];

/** Seconds a client should wait before retrying while a dependency is down. */
export const UNAVAILABLE_RETRY_AFTER_SECONDS = 2;
