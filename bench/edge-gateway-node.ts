/**
 * The Node gateway for the edge section of `npm run bench` (bench/edge.ts): `startGateway` with the
 * route given as JSON in BENCH_GATEWAY_ROUTE (the one the Worker runs, so both do the same work),
 * on BENCH_PORT, its audit log on (a JSONL file in a temporary dir, removed on exit). The tokens
 * come from the benchmark's own issuer: this process signs none.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { gatewayConfigSchema } from '../src/config/gateway-schema.ts';
import { startGateway, type GatewayHandle } from '../src/gateway/node/server.ts';
import { announceReady, exitOnSignal } from './lib/child.ts';

const route = process.env.BENCH_GATEWAY_ROUTE;
const port = Number(process.env.BENCH_PORT);
if (!route || !port) throw new Error('BENCH_GATEWAY_ROUTE and BENCH_PORT must be set');
process.env.LOG_LEVEL = 'silent';
const dir = mkdtempSync(join(tmpdir(), 'mandate-bench-edge-node-'));
const config = gatewayConfigSchema.parse({
  listen: { host: '127.0.0.1', port },
  admin: { listen: { host: '127.0.0.1', port: 0 } },
  audit: { file: join(dir, 'audit.jsonl'), keep: 1 },
  routes: [JSON.parse(route) as unknown],
});

let handle: GatewayHandle | undefined;
exitOnSignal(async () => {
  try {
    await handle?.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
try {
  handle = await startGateway(config, { log: pino({ level: 'silent' }), env: {} });
} catch (error) {
  rmSync(dir, { recursive: true, force: true });
  throw error;
}
const url = `http://127.0.0.1:${port}`;
announceReady({ name: 'mandate gateway (node)', url, tokenEndpoint: `${url}/mcp` });
