/**
 * What the two server children share: a free loopback port, the "ready" line the parent waits
 * for, and a shutdown on SIGTERM/SIGINT that exits the process normally (so `--cpu-prof` can write
 * its profile) and never hangs.
 */
import { createServer } from 'node:net';

export const READY_PREFIX = 'BENCH_READY ';

/** The benchmark's one resource, scope and client (the same for every server). */
export const BENCH_RESOURCE = 'https://api.bench.test';
export const BENCH_SCOPE = 'api:read';
export const BENCH_CLIENT_ID = 'bench';
export const ACCESS_TOKEN_TTL = 900;

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

export function announceReady(info: { name: string; url: string; tokenEndpoint: string }): void {
  process.stdout.write(`${READY_PREFIX}${JSON.stringify({ ...info, pid: process.pid })}\n`);
}

/** Runs `close` once on SIGTERM/SIGINT (or when the parent goes away), then exits 0. */
export function exitOnSignal(close: () => Promise<void> | void): void {
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    const force = setTimeout(() => process.exit(0), 3000);
    force.unref();
    Promise.resolve()
      .then(close)
      .catch((error: unknown) => console.error('bench child: close failed', error))
      .finally(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  if (process.env.BENCH_WATCH_STDIN === '1') {
    // bench/run.ts holds our stdin open; when it dies (even by SIGKILL) stdin ends and we leave too.
    process.stdin.on('end', stop);
    process.stdin.on('error', stop);
    process.stdin.resume();
  }
}
