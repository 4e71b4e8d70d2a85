/**
 * What the server children share: a free loopback port, the "ready" line the parent waits
 * for, and a shutdown on SIGTERM/SIGINT that exits the process normally (so `--cpu-prof` can write
 * its profile) and never hangs.
 */
import { readdirSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import { findSourceMap } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { freePort } from './ports.ts';

export const READY_PREFIX = 'BENCH_READY ';

/** The benchmark's one resource, scope and client (the same for every server). */
/** The audience of the exchange scenario's subject tokens. */
export const BENCH_UPSTREAM_RESOURCE = 'https://mcp.bench.test/mcp';
export const BENCH_RESOURCE = 'https://api.bench.test';
export const BENCH_SCOPE = 'api:read';
export const BENCH_CLIENT_ID = 'bench';
export const ACCESS_TOKEN_TTL = 900;
/** The gateway scenario: the tool called through it, and the scope its rule asks for. */
export const GATEWAY_TOOL = 'echo';
export const GATEWAY_SCOPE = 'bench:call';

export { freePort };

/** Listens on 127.0.0.1, at BENCH_PORT or a free port (keep-alive 65 s); resolves to `http://127.0.0.1:<port>`. */
export async function listenLoopback(server: Server): Promise<string> {
  server.keepAliveTimeout = 65_000;
  const port = Number(process.env.BENCH_PORT) || (await freePort());
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  return `http://127.0.0.1:${port}`;
}

/** Stops accepting, closes every connection (idle keep-alive ones too); resolves once closed. */
export function closeServer(server: Server): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

/**
 * `tokenEndpoint` is the URL the load goes to (an MCP endpoint in the gateway scenario); `body` and
 * `headers`, when given, are the request body and extra request headers to load it with.
 */
export function announceReady(info: { name: string; url: string; tokenEndpoint: string; body?: string; headers?: Record<string, string> }): void {
  process.stdout.write(`${READY_PREFIX}${JSON.stringify({ ...info, pid: process.pid })}\n`);
}

/**
 * tsx compiles each TypeScript file to a single line, so a CPU profile's positions need the
 * source maps to name lines. When BENCH_SOURCEMAPS_OUT is set, write the maps of the repository's
 * loaded files there (tsx turns source maps on, so `findSourceMap` has them).
 */
function dumpSourceMaps(out: string): void {
  const benchRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
  const mandateRoot = resolve(process.env.BENCH_MANDATE_ROOT ?? benchRoot);
  const maps: Record<string, unknown> = {};
  const walk = (dir: string) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.name.endsWith('.ts')) {
        const url = pathToFileURL(path).href;
        const map = findSourceMap(url);
        if (map) maps[url] = map.payload;
      }
    }
  };
  walk(join(mandateRoot, 'src'));
  walk(join(benchRoot, 'bench'));
  writeFileSync(out, JSON.stringify(maps));
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
      .then(() => {
        if (process.env.BENCH_SOURCEMAPS_OUT) dumpSourceMaps(process.env.BENCH_SOURCEMAPS_OUT);
      })
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
